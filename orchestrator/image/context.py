"""``python -m orchestrator image build-context DIR [--base IMAGE]``: a complete Docker build
context for the one image that runs MXNet on ModelArts, for training jobs and for
services alike.

Written (atomically: into a temporary sibling, then renamed over ``DIR``):

- ``Dockerfile``: Python 3.11 + ``mxnet==1.9.1`` (CPU), user ``ma-user`` (uid 1000, gid
  100), working directory ``/home/ma-user``, the project's runtime in ``/home/ma-user/app``
  (the ``mms`` and ``moxing`` shims on ``PYTHONPATH``), the boot programs in
  ``/home/ma-user/boot``, port 8080, and the serving boot as the default command.
- ``Dockerfile.cu112``: the same on CUDA 11.2 with ``mxnet-cu112==1.9.1`` for GPU flavours
  (not built or run here: no Docker engine and no GPU).
- ``requirements.txt`` / ``requirements-cu112.txt``: every package the runtime imports and
  their dependencies, pinned ``==`` to the versions this project is tested with.
- ``app/orchestrator/``: this project's runtime; ``boot/run_train.sh``, ``boot/run_serve.sh``;
  ``image.json``: what was written (versions, paths, port).

Refuses (``UserError``) a ``DIR`` that exists and is not a build context this command
wrote, so it never overwrites someone's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from orchestrator.errors import UserError

from . import layout

PACKAGE = Path(__file__).resolve().parents[1]            # the orchestrator package
PYTHON = "{}.{}.{}".format(*sys.version_info[:3])
DEFAULT_BASE = f"python:{PYTHON}-slim-bookworm"
CUDA_BASE = "nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04"
# What the runtime imports in a container: training jobs (mxnet, numpy, opencv, Pillow) and
# the predictor (its own HTTP layer on httptools/uvloop, FastAPI for docs); their dependencies are added and pinned too.
ROOTS = ("mxnet", "numpy", "opencv-python-headless", "Pillow", "fastapi", "uvloop", "httptools",
         "prometheus-client", "python-multipart", "psutil", "requests", "PyYAML")
MARK = "image.json"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def pinned_requirements(roots=ROOTS) -> list[str]:
    """``name==version`` for ``roots`` and everything they need (markers evaluated for
    this interpreter, extras ignored), as installed here: the versions the tests ran."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UserError(f"package {name} is not installed, so the image cannot pin it",
                            hint="install the project first: pip install -e .") from None
        seen[key] = f"{dist.metadata['Name']}=={dist.version}"
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen.values(), key=str.lower)


def dockerfile(base: str, requirements: str, setup: str) -> str:
    h = layout
    return f"""\
# MXNet 1.9.1 for ModelArts custom images (training jobs and AI applications).
# Written by `python -m orchestrator image build-context`; rebuild it rather than editing.
FROM {base}

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \\
    LANG=C.UTF-8 HOME={h.HOME}
{setup}
COPY {requirements} /tmp/requirements.txt
RUN python -m pip install --no-deps -r /tmp/requirements.txt && rm /tmp/requirements.txt

# ModelArts' default user: ma-user (uid {h.UID}) in ma-group (gid {h.GID}), home {h.HOME}
RUN (getent group {h.GID} >/dev/null && groupmod -n {h.GROUP} "$(getent group {h.GID} | cut -d: -f1)" \\
        || groupadd -g {h.GID} {h.GROUP}) \\
    && useradd -m -d {h.HOME} -s /bin/bash -u {h.UID} -g {h.GID} {h.USER} \\
    && mkdir -p {h.JOB_DIR} {h.INPUTS_DIR} {h.OUTPUTS_DIR} {h.MODEL_DIR} \\
    && chown -R {h.UID}:{h.GID} {h.HOME} /home/mind

COPY --chown={h.UID}:{h.GID} app/ {h.APP_DIR}/
COPY --chown={h.UID}:{h.GID} boot/ {h.BOOT_DIR}/
ENV PYTHONPATH={h.APP_DIR}:{h.APP_DIR}/orchestrator/runtime \\
    MA_JOB_DIR={h.JOB_DIR} \\
    {h.MODEL_DIR_ENV}={h.MODEL_DIR} {h.HOST_ENV}=0.0.0.0 {h.PORT_ENV}={h.PORT}

USER {h.USER}
WORKDIR {h.HOME}
EXPOSE {h.PORT}
# SIGTERM: the predictor stops accepting, finishes in-flight requests, then exits
STOPSIGNAL SIGTERM
# services: serve model/ from {h.MODEL_DIR} on port {h.PORT}; training jobs set their own
# command: /bin/sh {h.TRAIN_BOOT} <code folder>/<boot file>
CMD ["/bin/sh", "{h.SERVE_BOOT}"]
"""


# Shared libraries the wheels link without bundling them (``ldd`` of libmxnet.so: OpenMP and
# the quad-precision maths of the bundled libgfortran); tests/test_image.py checks the list.
SYSTEM_PACKAGES = ("libgomp1", "libquadmath0")
CPU_SETUP = f"""RUN apt-get update && apt-get install -y --no-install-recommends {' '.join(SYSTEM_PACKAGES)} \\
    && rm -rf /var/lib/apt/lists/*
"""
# Python 3.11 on Ubuntu 20.04 (CUDA 11.2's runtime images) comes from the deadsnakes PPA.
CUDA_SETUP = f"""RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \\
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \\
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv {' '.join(SYSTEM_PACKAGES)} \\
    && python3.11 -m venv /opt/venv && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH
"""

TRAIN_SH = f"""#!/bin/sh
# ModelArts training boot (the job's command): /bin/sh {layout.TRAIN_BOOT} <code folder>/<boot file> [args]
# ModelArts appends the inputs, outputs and hyperparameters as --name=value arguments.
cd "${{HOME:-{layout.HOME}}}" || exit 1
exec python -m orchestrator.image.train "$@" 2>&1
"""

SERVE_SH = f"""#!/bin/sh
# ModelArts AI application boot (the image's CMD): serves model/ from ${layout.MODEL_DIR_ENV}
# on ${layout.HOST_ENV}:${layout.PORT_ENV} (0.0.0.0:{layout.PORT}); SIGTERM drains, then exits.
cd "${{HOME:-{layout.HOME}}}" || exit 1
exec python -m orchestrator.image.serve "$@" 2>&1
"""


def build_context(target: Path, base: str | None = None) -> dict:
    """Write the build context into ``target``; returns the ``image.json`` manifest."""
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file, not a folder", hint="choose a new or empty folder")
    if target.exists() and any(target.iterdir()) and not (target / MARK).is_file():
        raise UserError(f"{target} exists and is not a build context written by this command",
                        hint="choose a new or empty folder")
    cpu = pinned_requirements()
    gpu = [("mxnet-cu112==" + r.split("==")[1]) if r.lower().startswith("mxnet==") else r for r in cpu]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        shutil.copytree(PACKAGE, tmp / "app" / "orchestrator", ignore=IGNORE)
        (tmp / "boot").mkdir()
        for name, text in (("run_train.sh", TRAIN_SH), ("run_serve.sh", SERVE_SH)):
            (tmp / "boot" / name).write_text(text)
            (tmp / "boot" / name).chmod(0o755)
        (tmp / "requirements.txt").write_text("\n".join(cpu) + "\n")
        (tmp / "requirements-cu112.txt").write_text("\n".join(gpu) + "\n")
        (tmp / "Dockerfile").write_text(dockerfile(base or DEFAULT_BASE, "requirements.txt", CPU_SETUP))
        (tmp / "Dockerfile.cu112").write_text(dockerfile(CUDA_BASE, "requirements-cu112.txt", CUDA_SETUP))
        (tmp / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
        manifest = {"python": PYTHON, "base": base or DEFAULT_BASE, "cuda_base": CUDA_BASE,
                    "mxnet": next(r.split("==")[1] for r in cpu if r.lower().startswith("mxnet==")),
                    "user": layout.USER, "uid": layout.UID, "gid": layout.GID, "home": layout.HOME,
                    "port": layout.PORT, "health": layout.HEALTH_URL, "model_dir": layout.MODEL_DIR,
                    "train_command": layout.train_command("<code folder>/<boot file>"),
                    "dockerfiles": {"cpu": "Dockerfile", "cu112": "Dockerfile.cu112 (untested: no GPU here)"}}
        (tmp / MARK).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
