"""The code folder a training job gets: ``code_dir`` plus its includes (folders merged into
it, files copied next to the boot file), the same on every backend."""

from __future__ import annotations

import shutil
from pathlib import Path

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git")


def stage_code(code_dir: str | Path, includes, target: Path) -> Path:
    """Copy ``code_dir`` to ``target`` and merge ``includes`` into it; returns ``target``."""
    shutil.copytree(code_dir, target, dirs_exist_ok=True, ignore=IGNORE)
    for extra in map(Path, includes):   # e.g. the inference code that export_model packs
        if extra.is_dir():
            shutil.copytree(extra, target, dirs_exist_ok=True, ignore=IGNORE)
        else:                            # e.g. a module the job shares with another job
            shutil.copy2(extra, target / extra.name)
    return target
