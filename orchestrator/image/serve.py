"""The image's serving boot, ``run_serve.sh`` (the image's default command):
``python -m orchestrator.image.serve [--model-dir DIR] [--host H] [--port N]``.

Serves the ModelArts model package mounted at ``$MODEL_DIR`` (``/home/mind/model``; the
folder holding ``config.json`` and ``customize_service.py``, or its parent with a
``model/`` folder) with the project's predictor on ``$SERVE_HOST:$SERVE_PORT``: the image
sets ``0.0.0.0:8080``, ModelArts' port; outside a container the defaults are
127.0.0.1:8080. The package is checked first: the ``apis`` of ``config.json`` must be
served at ``/`` and its ``health`` entry, if any, at ``/health`` (what the predictor
answers), else exit 2 with the reason. A ``runtime`` of ``python2.7`` loads the service in
the Python 2.7 compatibility mode. The predictor then replaces this process (``exec``), so
SIGTERM reaches it directly: it stops accepting, finishes in-flight requests and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from orchestrator.predictor.loader import SERVICE_FILE

from . import layout


def package_dir(path: Path) -> Path:
    return path / "model" if not (path / SERVICE_FILE).is_file() and (path / "model").is_dir() else path


def check_package(folder: Path) -> dict:
    """The package's config.json; ``ValueError`` saying what does not fit the image."""
    if not (folder / SERVICE_FILE).is_file():
        raise ValueError(f"no {SERVICE_FILE} in {folder}: mount the model/ folder of a ModelArts model package there")
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"no config.json in {folder}") from None
    except ValueError as exc:
        raise ValueError(f"{folder}/config.json is not valid JSON: {exc}") from None
    urls = sorted({api.get("url", "/") for api in config.get("apis") or []})
    if urls not in ([], ["/"]):
        raise ValueError(f"config.json apis use {urls}; this image serves the model at '/' only")
    health = config.get("health")
    if health is not None and (not isinstance(health, dict) or health.get("url") != layout.HEALTH_URL):
        raise ValueError(f"config.json health is {health!r}; this image answers health checks at "
                         f"'{layout.HEALTH_URL}'")
    return config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="run_serve.sh", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get(layout.MODEL_DIR_ENV) or layout.MODEL_DIR))
    p.add_argument("--host", default=os.environ.get(layout.HOST_ENV) or "127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get(layout.PORT_ENV) or layout.PORT))
    p.add_argument("--workers", type=int, default=int(os.environ.get("SERVE_WORKERS") or 1))
    args = p.parse_args(argv)
    folder = package_dir(args.model_dir)
    try:
        config = check_package(folder)
    except ValueError as exc:
        print(f"[run_serve] error: {exc}", flush=True)
        return 2
    cmd = [sys.executable, "-m", "orchestrator.predictor", "--model-dir", str(folder), "--host", args.host,
           "--port", str(args.port), "--workers", str(args.workers),
           "--name", config.get("model_algorithm") or "model"]
    if str(config.get("runtime", "")).lower().startswith("python2"):
        cmd.append("--py2-compat")
    print(f"[run_serve] serving {folder} on {args.host}:{args.port}", flush=True)
    os.execv(sys.executable, cmd)
    return 0   # not reached


if __name__ == "__main__":
    sys.exit(main())
