"""The code folder a training job gets: ``code_dir`` plus its includes (folders merged into
it, files copied next to the boot file) and shipped files (placed at a given path inside
it), the same on every backend."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

_PATTERNS = shutil.ignore_patterns("__pycache__", "*.pyc", ".git")


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What not to copy: caches, and anything that is not a file or folder once symlinks
    are followed (a broken symlink, a FIFO that would block the copy, a device)."""
    skipped = set(_PATTERNS(folder, names))
    for name in names:
        try:
            mode = os.stat(os.path.join(folder, name)).st_mode
        except OSError:
            skipped.add(name)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            skipped.add(name)
    return skipped


def stage_code(code_dir: str | Path, includes, target: Path, shipped=()) -> Path:
    """Copy ``code_dir`` to ``target``, merge ``includes`` into it and copy each ``(source,
    relative path)`` of ``shipped`` to that path inside it; returns ``target``."""
    shutil.copytree(code_dir, target, dirs_exist_ok=True, ignore=_ignore)
    for extra in map(Path, includes):   # e.g. the inference code that export_model packs
        if extra.is_dir():
            shutil.copytree(extra, target, dirs_exist_ok=True, ignore=_ignore)
        else:                            # e.g. a module the job shares with another job
            shutil.copy2(extra, target / extra.name)
    for source, relative in shipped:     # e.g. jobs/common, imported as jobs.common by the job
        source, dest = Path(source), target / relative
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True, ignore=_ignore)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    return target
