"""Step keys: a hash per step of what decides its result (its normalised spec, the content
of its inputs, its code, and the key of the step before it), so ``run --resume`` can tell
a finished step whose outputs are still valid from one that must run again."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict
from pathlib import Path

from .backends.base import JobSpec, ModelSpec, ServiceSpec

SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}


def digest(*parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tree(path: Path | str, content: bool, skipped: list[str] | None = None) -> str:
    """Hash of a folder: file names and bytes (``content``), or names, sizes and mtimes
    (cheap enough for large image folders); of a single file: its bytes. Only regular
    files are read: a symlink counts by its target's name (never followed: it may be
    broken or lead anywhere), a FIFO, socket or device by its name alone, and the
    relative paths of these go to ``skipped`` for the plan to report."""
    h = hashlib.sha256()
    root = Path(path)
    if root.is_file():
        return _file_digest(root).hex()[:16]
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            if name.endswith(".pyc"):
                continue
            file = Path(folder) / name
            rel = str(file.relative_to(root))
            h.update(rel.encode() + b"\0")
            try:
                st = file.lstat()
            except OSError:      # vanished while we walked
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
                link = os.readlink(file) if stat.S_ISLNK(st.st_mode) else ""
                h.update(f"{stat.S_IFMT(st.st_mode)}:{link}".encode())
                if skipped is not None:
                    skipped.append(f"{rel} -> {link}" if link else rel)
            elif content:
                h.update(_file_digest(file))
            else:
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def step_keys(data, tools_dir: Path, job: JobSpec, model: ModelSpec, service: ServiceSpec,
              predict, model_code: Path | None = None, skipped: list[str] | None = None,
              optimize=None) -> dict[str, str]:
    """{step: key} for the data plan, job, model, service and predict plan of one run, and
    the ``OptimizePlan`` of the import step (``model.optimize`` and its calibration and
    thresholds decide the imported package; under fp32 they are not read); entries of the
    training code that are not regular files go to ``skipped``."""
    source = tree(data.source_dir, content=False) if data.source_dir else None
    generate = data.generate.model_dump() if data.generate else None
    prepare = digest("prepare", data.task, data.mode, generate, source, data.val_ratio, data.test_ratio,
                     data.resize, data.quality, tree(tools_dir, content=True))
    upload = digest("upload", prepare, data.data_uri, data.labels)   # data.labels may add labels.txt
    code = [tree(path, content=True, skipped=skipped)
            for path in (job.code_dir, *job.include_dirs, *(source for source, _ in job.shipped))]
    train = digest("train", upload, asdict(job), code)
    converted = asdict(optimize) if optimize is not None and optimize.mode != "fp32" else "fp32"
    imported = digest("import_model", train, asdict(model), tree(model_code, content=True) if model_code else None,
                      converted)
    deploy = digest("deploy", imported, asdict(service))
    return {"prepare": prepare, "upload": upload, "train": train, "import_model": imported, "deploy": deploy,
            "predict": digest("predict", deploy, asdict(predict))}
