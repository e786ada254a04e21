"""Command line of the predictor process (``python -m orchestrator.predictor``).

``main(argv) -> exit code``: 0 after a clean shutdown, 1 when the service failed to load,
2 for bad arguments or a malformed model package. Heavy modules (FastAPI, uvicorn) are
imported only after the arguments are valid; mxnet is never imported in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from orchestrator.predictor.loader import SERVICE_FILE


@dataclasses.dataclass(frozen=True)
class Settings:
    model_dir: str
    host: str
    port: int
    workers: int
    ready_file: str | None
    name: str
    request_timeout: float
    max_body_bytes: int
    queue_size: int
    py2_compat: bool
    worker_env: dict


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.predictor",
                                description="Serve a ModelArts MXNet model package over HTTP.")
    p.add_argument("--model-dir", required=True, help="folder with config.json and customize_service.py")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--workers", type=int, default=1, help="model processes (default 1)")
    p.add_argument("--ready-file", help="write the address here as JSON once ready")
    p.add_argument("--name", help="service name (default: the package folder name)")
    p.add_argument("--request-timeout", type=float, default=40.0, help="seconds per request (504 after)")
    p.add_argument("--max-body-mb", type=float, default=12.0, help="body limit in MiB (413 above)")
    p.add_argument("--queue-size", type=int, help="requests in flight before 503 (default 4 x workers)")
    p.add_argument("--py2-compat", action="store_true",
                   help="supply Python 2 builtins (xrange, unicode...) to customize_service.py")
    return p


def default_name(model_dir: str) -> str:
    """``.../flowers/model`` -> ``flowers``; any other folder -> its own name."""
    path = os.path.abspath(model_dir)
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "model" else base


def worker_env(workers: int) -> dict:
    """The environment of worker processes: ours (service variables pass through) plus
    ``OMP_NUM_THREADS`` = cores // workers, because oversubscribed OpenMP threads cost
    more than half the throughput on small boxes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(max(1, cores // workers))
    env.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
    return env


def _configure_logging() -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=[errors])
    access = logging.getLogger("orchestrator.predictor.access")
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(asctime)s access %(message)s"))
    access.addHandler(out)
    access.propagate = False


def parse_settings(argv=None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    model_dir = os.path.abspath(args.model_dir)
    if not os.path.isdir(model_dir):
        parser.error(f"--model-dir {args.model_dir}: no such folder")
    if not os.path.isfile(os.path.join(model_dir, SERVICE_FILE)):
        parser.error(f"--model-dir {args.model_dir}: no {SERVICE_FILE} in it (not a ModelArts model package)")
    if args.workers < 1 or args.request_timeout <= 0 or args.max_body_mb <= 0:
        parser.error("--workers, --request-timeout and --max-body-mb must be positive")
    if args.queue_size is not None and args.queue_size < 1:
        parser.error("--queue-size must be at least 1")
    return Settings(
        model_dir=model_dir, host=args.host, port=args.port, workers=args.workers,
        ready_file=os.path.abspath(args.ready_file) if args.ready_file else None,
        name=args.name or default_name(model_dir), request_timeout=args.request_timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        queue_size=args.queue_size or 4 * args.workers, py2_compat=args.py2_compat,
        worker_env=worker_env(args.workers))


def main(argv=None) -> int:
    settings = parse_settings(argv)  # exits with 2 on bad arguments
    _configure_logging()
    import asyncio

    from orchestrator.predictor.server import run

    return asyncio.run(run(settings))
