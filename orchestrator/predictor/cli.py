"""Command line of the predictor process (``python -m orchestrator.predictor``).

``main(argv) -> exit code``: 0 after a clean shutdown, 1 when a service failed to load,
2 for bad arguments, a malformed service file or a malformed model package. Heavy
modules (FastAPI, the HTTP layer) are imported only after the arguments are valid; mxnet is
never imported in this process. The bearer token is read from an environment variable
(never from the command line, which ``ps`` shows) and is never logged.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from orchestrator.predictor.config import (AUTO, AUTO_BATCH, DEFAULT_BATCH_SIZE, ConfigError, ModelConfig,
                                          parse_config, read_service)
from orchestrator.predictor.loader import SERVICE_FILE
from orchestrator.version import VersionAction

TOKEN_ENV = "PREDICTOR_AUTH_TOKEN"


@dataclasses.dataclass(frozen=True)
class Settings:
    configs: tuple[ModelConfig, ...]
    generation: int
    config_file: str | None        # re-read on SIGHUP
    host: str
    port: int
    ready_file: str | None
    name: str
    request_timeout: float
    max_body_bytes: int
    py2_compat: bool
    token_env: str
    ttl: float | None = None       # stop by itself this long after it is ready (the service's ttl)
    header_timeout: float = 10.0   # slow-header (slowloris) and idle-new-connection bound
    body_timeout: float = 30.0     # slow-body bound, from the end of the headers
    max_connections: int = 512     # open connections; more get 503 and are closed
    token: str | None = dataclasses.field(default=None, repr=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.predictor",
                                description="Serve ModelArts MXNet model packages over HTTP.")
    p.add_argument("--version", action=VersionAction)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="one package: folder with customize_service.py")
    src.add_argument("--config", help="service file: several packages with weights (JSON, see config.py); "
                                      "SIGHUP re-reads it")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--ready-file", help="write the address here as JSON once ready")
    p.add_argument("--name", help="service name (default: the package folder name)")
    p.add_argument("--request-timeout", type=float, default=40.0, help="seconds per request (504 after)")
    p.add_argument("--max-body-mb", type=float, default=12.0, help="body limit in MiB (413 above)")
    p.add_argument("--auth-token-env", default=TOKEN_ENV,
                   help=f"environment variable holding a bearer token to require (default {TOKEN_ENV}; unset = no auth)")
    p.add_argument("--py2-compat", action="store_true",
                   help="load customize_service.py written for Python 2.7")
    p.add_argument("--ttl", type=float, help="seconds after it is ready when the predictor stops by itself "
                                             "(drains in-flight requests first)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds for a request's line and headers to arrive (408 and close after; default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds for a request's body to arrive after its headers (closed after; default 30)")
    p.add_argument("--max-connections", type=int, default=512,
                   help="open connections at most; more get 503 and are closed (default 512)")
    one = p.add_argument_group("with --model-dir")
    one.add_argument("--model-id", help="id reported in X-Model-Id (default: the service name)")
    one.add_argument("--workers", type=int, default=1, help="model processes (default 1)")
    one.add_argument("--queue-size", type=int, help="requests that may wait for a worker (default 8 x workers)")
    one.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH_SIZE,
                     help=f"dynamic batching: max requests per batch (1 = off; auto = up to {AUTO_BATCH} when the "
                          f"service declares supports_batching; default {_label(DEFAULT_BATCH_SIZE)})")
    one.add_argument("--batch-delay-ms", type=float, default=5.0,
                     help="dynamic batching: longest wait for company, from the oldest queued request (the "
                          "adaptive window waits only when measured batch costs say it pays)")
    one.add_argument("--optimize", choices=("auto", "fp32", "fused", "int8", "bf16"), default="auto",
                     help="network to serve: auto (default) = the converted one the package's optimize.json names, "
                          "else fp32; fp32 = the originals; a mode = that one, which the package must hold "
                          "(worker env MODEL_OPTIMIZE; see docs/predictor.md)")
    return p


def _batch_size(text: str) -> int:
    if text == "auto":
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}")
    return int(text)


def _label(batch_size: int) -> str:
    return "auto" if batch_size == AUTO else str(batch_size)


def default_name(model_dir: str) -> str:
    """``.../flowers/model`` -> ``flowers``; any other folder -> its own name."""
    path = os.path.abspath(model_dir)
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "model" else base


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
    if min(args.request_timeout, args.max_body_mb, args.header_timeout, args.body_timeout, args.max_connections) <= 0 \
            or (args.ttl is not None and args.ttl <= 0):
        parser.error("--request-timeout, --max-body-mb, --header-timeout, --body-timeout, --max-connections "
                     "and --ttl must be positive")
    try:
        if args.config:
            generation, configs = read_service(args.config)
            name = args.name or os.path.splitext(os.path.basename(args.config))[0]
        else:
            if not os.path.isdir(args.model_dir):
                parser.error(f"--model-dir {args.model_dir}: no such folder")
            if not os.path.isfile(os.path.join(args.model_dir, SERVICE_FILE)):
                parser.error(f"--model-dir {args.model_dir}: no {SERVICE_FILE} in it (not a ModelArts model package)")
            if args.workers < 1 or args.batch_delay_ms < 0 or (args.queue_size or 0) < 0:
                parser.error("--workers must be at least 1, --batch-delay-ms and --queue-size >= 0")
            name = args.name or default_name(args.model_dir)
            doc = {"id": args.model_id or name, "model_dir": args.model_dir, "workers": args.workers,
                   "batch_size": "auto" if args.batch_size == AUTO else args.batch_size,
                   "batch_delay_ms": args.batch_delay_ms}
            if args.queue_size is not None:
                doc["queue_size"] = args.queue_size
            if args.optimize != "auto":
                doc["envs"] = {"MODEL_OPTIMIZE": args.optimize}
            generation, configs = 0, (parse_config(doc, "arguments"),)
    except ConfigError as exc:
        parser.error(str(exc))
    return Settings(
        configs=configs, generation=generation, config_file=os.path.abspath(args.config) if args.config else None,
        host=args.host, port=args.port, ready_file=os.path.abspath(args.ready_file) if args.ready_file else None,
        name=name, request_timeout=args.request_timeout, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        py2_compat=args.py2_compat, token_env=args.auth_token_env, token=os.environ.get(args.auth_token_env) or None,
        ttl=args.ttl, header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        max_connections=args.max_connections)


def main(argv=None) -> int:
    settings = parse_settings(argv)  # exits with 2 on bad arguments
    _configure_logging()
    import asyncio

    from orchestrator.predictor.server import run

    try:
        import uvloop
    except ImportError:  # optional: the standard loop works, a little slower
        return asyncio.run(run(settings))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(settings))
