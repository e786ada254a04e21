"""Lifecycle of one predictor front: socket, uvicorn, worker pool, ready file, shutdown.

Contract of ``run(settings) -> exit code``:

* Binds ``settings.host:settings.port`` itself (port 0 = the kernel picks a free port, no
  race) and serves HTTP at once; ``/health`` is 503 until every worker has instantiated
  the service.
* Then writes ``settings.ready_file`` atomically (temp file + ``os.replace``) with
  ``{"pid", "host", "port", "url", "workers", "ready_at", "name"}`` (``ready_at``: Unix
  time). A stale ready file is removed at start and the file is removed again on shutdown.
* Load failure: the worker's traceback and a one-line reason go to stderr, no ready file,
  exit code 2 (malformed package) or 1 (anything else).
* SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most
  ``request_timeout + 5`` s), stop the workers, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time

import uvicorn

from orchestrator.predictor.app import AppState, create_app
from orchestrator.predictor.pool import LoadFailed, WorkerPool

log = logging.getLogger("orchestrator.predictor")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets
    # that say so, and without it every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # from here on connections queue instead of being refused
    return sock


def write_ready_file(path: str, info: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # readers see no file or the whole file, never half of it


def _remove(path: str | None) -> None:
    if path:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _report_load_failure(exc: LoadFailed) -> None:
    if exc.details:
        sys.stderr.write(exc.details if exc.details.endswith("\n") else exc.details + "\n")
    sys.stderr.write(f"predictor: failed to load the model service: {exc.message}\n")
    sys.stderr.flush()


async def run(settings) -> int:
    _remove(settings.ready_file)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    pool = WorkerPool(settings.model_dir, settings.name, settings.workers, settings.queue_size,
                      env=settings.worker_env, py2_compat=settings.py2_compat)
    state = AppState()
    app = create_app(pool, state, name=settings.name, request_timeout=settings.request_timeout,
                     max_body_bytes=settings.max_body_bytes)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_keep_alive=200,  # ModelArts asks for long keep-alive
                            timeout_graceful_shutdown=int(settings.request_timeout) + 5)
    server = uvicorn.Server(config)

    # uvicorn swaps in its own handlers while serving and re-raises the signal afterwards;
    # ours (restored then) turns that re-raise, and any signal outside serve(), into a
    # graceful stop instead of the default "die".
    def _stop(_sig, _frame):
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)

    serving = asyncio.create_task(server.serve(sockets=[sock]))
    starting = asyncio.create_task(pool.start())
    await asyncio.wait({serving, starting}, return_when=asyncio.FIRST_COMPLETED)
    code, failure = 0, None
    if not starting.done():
        starting.cancel()  # stopped (or the server failed) while the model was loading
    elif starting.exception() is not None:
        exc = starting.exception()
        if not isinstance(exc, LoadFailed):  # e.g. the worker could not even be spawned
            exc = LoadFailed(1, f"{type(exc).__name__}: {exc}")
        failure, code = exc, exc.exit_code
        server.should_exit = True
    else:
        state.ready, state.reason = True, ""
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        if settings.ready_file:
            write_ready_file(settings.ready_file, {
                "pid": os.getpid(), "host": host, "port": port, "url": url,
                "workers": settings.workers, "ready_at": time.time(), "name": settings.name})
        log.info("predictor %s ready at %s with %d worker(s) %s", settings.name, url,
                 settings.workers, pool.worker_pids())
    try:
        await serving
    finally:
        state.ready, state.reason = False, "shutting down"
        if code == 0:
            _remove(settings.ready_file)
        await pool.close()
    if failure is not None:
        _report_load_failure(failure)  # last on stderr: callers show the log tail
    else:
        log.info("predictor %s stopped", settings.name)
    return code
