"""Step keys: a hash per step of what decides its result (its normalised spec, the content
of its inputs, its code, and the key of the step before it), so ``run --resume`` can tell
a finished step whose outputs are still valid from one that must run again."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from .backends.base import JobSpec, ModelSpec, ServiceSpec

SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}


def digest(*parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tree(path: Path | str, content: bool) -> str:
    """Hash of a folder: file names and bytes (``content``), or names, sizes and mtimes
    (cheap enough for large image folders); of a single file: its bytes."""
    h = hashlib.sha256()
    root = Path(path)
    if root.is_file():
        return hashlib.sha256(root.read_bytes()).hexdigest()[:16]
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            file = Path(folder) / name
            h.update(str(file.relative_to(root)).encode() + b"\0")
            if content:
                h.update(hashlib.sha256(file.read_bytes()).digest())
            else:
                st = file.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def step_keys(data, tools_dir: Path, job: JobSpec, model: ModelSpec, service: ServiceSpec,
              predict, model_code: Path | None = None) -> dict[str, str]:
    """{step: key} for the data plan, job, model, service and predict plan of one run."""
    source = tree(data.source_dir, content=False) if data.source_dir else None
    generate = data.generate.model_dump() if data.generate else None
    prepare = digest("prepare", data.task, data.mode, generate, source, data.val_ratio, data.test_ratio,
                     data.resize, data.quality, tree(tools_dir, content=True))
    upload = digest("upload", prepare, data.data_uri)
    code = [tree(job.code_dir, content=True)] + [tree(d, content=True) for d in job.include_dirs]
    train = digest("train", upload, asdict(job), code)
    imported = digest("import_model", train, asdict(model), tree(model_code, content=True) if model_code else None)
    deploy = digest("deploy", imported, asdict(service))
    return {"prepare": prepare, "upload": upload, "train": train, "import_model": imported, "deploy": deploy,
            "predict": digest("predict", deploy, asdict(predict))}
