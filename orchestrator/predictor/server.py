"""Lifecycle of one predictor front: socket, HTTP server, worker pools, ready file, signals.

Contract of ``run(settings) -> exit code``:

* Binds ``settings.host:settings.port`` itself (port 0 = the kernel picks a free port, no
  race) and serves HTTP at once; ``/health`` is 503 until every worker of every config
  has loaded the service and answered a warm-up request.
* Then writes ``settings.ready_file`` atomically (temp file + ``os.replace``) with
  ``{"pid", "host", "port", "url", "name", "workers", "ready_at" (Unix time),
  "generation", "configs": [{"id", "weight", "workers", "pids"}], "error"}``. A stale
  ready file is removed at start and the file is removed again on a clean shutdown.
* SIGHUP (with ``--config``; ignored otherwise): re-read the service file and ``Router.apply`` it; the ready
  file is rewritten with the new ``generation``, or keeps the old one and gets
  ``"error": {"generation", "message"}`` when the new configs are invalid or fail to load
  (the service keeps serving the old ones).
* Load failure at start: the worker's traceback and a one-line reason go to stderr, no
  ready file, exit code 2 (malformed package) or 1 (anything else).
* SIGTERM/SIGINT, or ``settings.ttl`` seconds after it is ready: stop accepting, let
  in-flight requests finish (at most ``request_timeout + 5`` s), stop the workers, exit 0.
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

from orchestrator.childenv import without_secrets
from orchestrator.predictor.app import AccessLog, AppState, Front, docs_app
from orchestrator.predictor.config import ConfigError, read_service
from orchestrator.predictor.http import HttpServer, Limits
from orchestrator.predictor.metrics import Metrics
from orchestrator.predictor.pool import LoadFailed
from orchestrator.predictor.router import Router

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


async def _drain(listener, http: HttpServer, grace: float) -> None:
    """Stop accepting, let requests in progress finish (at most ``grace`` s), close the rest."""
    listener.close()
    http.close_idle()
    deadline = time.monotonic() + grace
    while http.busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(http.connections):
        conn.transport.close()


class _Front:
    """The running front: what SIGHUP and the ready file need to see."""

    def __init__(self, settings, router: Router, url: str, host: str, port: int):
        self.settings, self.router, self.url, self.host, self.port = settings, router, url, host, port
        self.generation, self.error = settings.generation, None
        self._reload_wanted = asyncio.Event()

    def publish(self) -> None:
        if not self.settings.ready_file:
            return
        configs = [{k: row[k] for k in ("id", "weight", "workers", "pids")} for row in self.router.snapshot()]
        write_ready_file(self.settings.ready_file, {
            "pid": os.getpid(), "host": self.host, "port": self.port, "url": self.url, "name": self.settings.name,
            "workers": sum(c["workers"] for c in configs), "ready_at": time.time(),
            "generation": self.generation, "configs": configs, "error": self.error})

    def request_reload(self) -> None:
        if self.settings.config_file:
            self._reload_wanted.set()
        else:
            log.warning("SIGHUP ignored: started with --model-dir, there is no service file to re-read")

    async def reloader(self) -> None:
        """Apply the service file each time SIGHUP asks; one reload at a time, latest file wins."""
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            generation = self.generation
            try:
                generation, configs = read_service(self.settings.config_file)
                await self.router.apply(configs)
            except (ConfigError, LoadFailed) as exc:
                message = exc.message if isinstance(exc, LoadFailed) else str(exc)
                if isinstance(exc, ConfigError):  # unreadable file: the generation it meant is unknown
                    generation = exc.generation if exc.generation is not None else generation
                log.error("reload of generation %d failed, still serving generation %d: %s",
                          generation, self.generation, message)
                self.error = {"generation": generation, "message": message}
            else:
                self.generation, self.error = generation, None
                log.info("reloaded: generation %d", generation)
            self.publish()


async def run(settings) -> int:
    _remove(settings.ready_file)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        sys.stderr.write(f"predictor: cannot listen on {settings.host}:{settings.port}: {exc.strerror}\n")
        return 1
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    router = Router(name=settings.name, base_env=without_secrets(), drop_env=(settings.token_env,),
                    py2_compat=settings.py2_compat, drain_grace=settings.request_timeout + 5)
    metrics = router.metrics = Metrics(router.snapshot)
    state, access = AppState(), AccessLog()
    handler = Front(router, state, metrics, docs_app(router, state, metrics, name=settings.name),
                    request_timeout=settings.request_timeout, token=settings.token, access=access)
    http = HttpServer(handler, Limits(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                                      max_connections=settings.max_connections,
                                      max_body_bytes=settings.max_body_bytes))
    front = _Front(settings, router, url, host, port)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, front.request_reload)

    listener = await loop.create_server(http, sock=sock)
    serving = asyncio.create_task(stopping.wait())
    starting = asyncio.create_task(router.apply(settings.configs))
    await asyncio.wait({serving, starting}, return_when=asyncio.FIRST_COMPLETED)
    code, failure, reloading = 0, None, None
    if not starting.done():
        pass  # stopped (or the server failed) while the model was loading: cancelled below
    elif starting.exception() is not None:
        exc = starting.exception()
        if not isinstance(exc, LoadFailed):  # e.g. the worker could not even be spawned
            exc = LoadFailed(1, f"{type(exc).__name__}: {exc}")
        failure, code = exc, exc.exit_code
        stopping.set()
    else:
        state.started, state.reason = True, ""
        front.publish()
        reloading = asyncio.create_task(front.reloader())
        if settings.ttl:   # the watchdog lives here, so it holds with the orchestrator gone

            def _expire():
                log.info("predictor %s: ttl of %.0fs expired, stopping", settings.name, settings.ttl)
                stopping.set()

            loop.call_later(settings.ttl, _expire)
        log.info("predictor %s ready at %s: %s", settings.name, url,
                 ", ".join(f"{c['id']} weight {c['weight']} pids {c['pids']}" for c in router.snapshot()))
    try:
        await serving
        await _drain(listener, http, grace=settings.request_timeout + 5)
    finally:
        state.started, state.reason = False, "shutting down"
        loop.remove_signal_handler(signal.SIGHUP)   # SIGTERM/SIGINT stay caught: a second one must not kill the cleanup
        for task in (starting, reloading):
            if task is not None and not task.done():
                task.cancel()  # a half-started config set closes its own pools
                await asyncio.gather(task, return_exceptions=True)
        if code == 0:
            _remove(settings.ready_file)
        await router.close(grace=10.0)
        access.flush()
    if failure is not None:
        _report_load_failure(failure)  # last on stderr: callers show the log tail
    else:
        log.info("predictor %s stopped", settings.name)
    return code
