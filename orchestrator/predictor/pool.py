"""Front-side pool of predictor worker processes with per-request dispatch.

Contract (all methods run on the front's event loop, one pool per front):

* ``start()`` spawns ``size`` workers (``worker.py`` subprocesses, one socketpair each)
  and returns once every one reported ``ready``; if any fails to load it raises
  ``LoadFailed`` (``exit_code`` 2 for a malformed package, 1 otherwise; message and the
  worker's traceback attached). The caller then ``close()``s the pool.
* ``submit(payload, timeout)`` -> ``(http_status, json_bytes)`` from the worker. Raises
  ``PoolError`` with the HTTP status to answer: 503 ``OVERLOADED`` (more than
  ``queue_size`` requests queued + running; nothing is queued), 503 ``NOT_READY`` (closing
  or no live worker), 504 ``TIMEOUT`` (queue wait + run over ``timeout``), 500
  ``WORKER_DIED`` (the worker exited while running this request).
* A request is handed to whichever worker is idle (not per connection). A worker that
  overruns the timeout is killed and replaced (it is single-threaded, so it would stay
  stuck); one that dies is replaced too. A replacement that fails to load is not retried.
* ``close()`` asks idle workers to exit, waits up to ``grace`` s for busy ones, then kills.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from orchestrator.predictor import protocol

log = logging.getLogger("orchestrator.predictor")
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PoolError(Exception):
    """A request the pool could not run; ``status``/``code`` say how to answer it."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class LoadFailed(Exception):
    """A worker could not instantiate the service during ``start()``."""

    def __init__(self, exit_code: int, message: str, details: str = ""):
        super().__init__(message)
        self.exit_code, self.message, self.details = exit_code, message, details


class _Job:
    __slots__ = ("id", "payload", "future", "worker", "finished")

    def __init__(self, job_id: int, payload, future: asyncio.Future):
        self.id, self.payload, self.future = job_id, payload, future
        self.worker: _Worker | None = None
        self.finished = False


class _Worker:
    def __init__(self, proc: subprocess.Popen, conn: Connection, initial: bool):
        self.proc, self.conn, self.initial = proc, conn, initial
        self.state = "loading"  # -> idle <-> busy -> dead
        self.job: _Job | None = None
        self.load_error: tuple | None = None
        self.killed_reason: str | None = None


class WorkerPool:
    def __init__(self, model_dir: str, name: str, size: int, queue_size: int,
                 env: dict[str, str], py2_compat: bool = False):
        self.model_dir, self.name, self.size, self.queue_size = model_dir, name, size, queue_size
        self.env, self.py2_compat = env, py2_compat
        self._workers: list[_Worker] = []
        self._pending: collections.deque[_Job] = collections.deque()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        for _ in range(self.size):
            self._spawn(initial=True)
        await self._started

    def live_workers(self) -> int:
        """Workers that are or will be able to serve (loading ones included)."""
        return sum(w.state != "dead" for w in self._workers)

    def ready_workers(self) -> int:
        """Workers with a loaded service (what ``/health`` reports on)."""
        return sum(w.state in ("idle", "busy") for w in self._workers)

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.state != "dead"]

    async def close(self, grace: float = 10.0) -> None:
        self._closing = True
        self._fail_pending(503, protocol.NOT_READY, "predictor is shutting down")
        workers = list(self._workers)
        for w in workers:
            if w.state == "loading":
                w.proc.kill()  # nothing to finish; don't wait for a model load to complete
                continue
            try:
                await asyncio.to_thread(w.conn.send, None)  # queued after any running job
            except OSError:
                pass
        await asyncio.to_thread(self._reap, [w.proc for w in workers], grace)

    @staticmethod
    def _reap(procs: list[subprocess.Popen], grace: float) -> None:
        for proc in procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            grace = 0.5  # the first wait used up the grace period

    # -- requests ------------------------------------------------------------------------
    async def submit(self, payload, timeout: float) -> tuple[int, bytes]:
        if self._closing or not self.live_workers():
            raise PoolError(503, protocol.NOT_READY, "no worker available", retry_after=1)
        if self._in_flight >= self.queue_size:
            raise PoolError(503, protocol.OVERLOADED,
                            f"{self._in_flight} requests in flight (limit {self.queue_size})", retry_after=1)
        job = _Job(next(self._ids), payload, self._loop.create_future())
        self._in_flight += 1
        self._pending.append(job)
        self._dispatch()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.TimeoutError:
            self._abandon(job, kill_reason=f"request {job.id} exceeded {timeout:g} s")
            raise PoolError(504, protocol.TIMEOUT, f"no answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._abandon(job, kill_reason=None)  # client gone: let a running job finish
            raise

    def _abandon(self, job: _Job, kill_reason: str | None) -> None:
        job.future.cancel()
        if job in self._pending:
            self._pending.remove(job)
            self._finish(job)
        elif job.worker is not None and kill_reason and job.worker.job is job:
            job.worker.killed_reason = kill_reason
            job.worker.proc.kill()  # its exit finishes the job and starts a replacement

    def _finish(self, job: _Job) -> None:
        if not job.finished:
            job.finished = True
            self._in_flight -= 1

    def _fail_pending(self, status: int, code: str, message: str) -> None:
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(PoolError(status, code, message, retry_after=1))
            self._finish(job)

    def _dispatch(self) -> None:
        while self._pending:
            worker = next((w for w in self._workers if w.state == "idle"), None)
            if worker is None:
                return
            job = self._pending.popleft()
            worker.state, worker.job, job.worker = "busy", job, worker
            task = self._loop.create_task(self._send(worker, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, worker: _Worker, job: _Job) -> None:
        try:  # in a thread: a 12 MB payload must not stall the event loop
            await asyncio.to_thread(worker.conn.send, ("predict", job.id, job.payload))
        except OSError:
            pass  # the worker is dying; _on_exit fails the job

    # -- worker processes -----------------------------------------------------------------
    def _spawn(self, initial: bool) -> None:
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "orchestrator.predictor.worker", "--fd", str(theirs.fileno()),
               "--model-dir", self.model_dir, "--name", self.name, "--parent-pid", str(os.getpid())]
        if self.py2_compat:
            cmd.append("--py2-compat")
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], cwd=self.model_dir, env=env,
                                    stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        worker = _Worker(proc, Connection(ours.detach()), initial)
        self._workers.append(worker)
        threading.Thread(target=self._read, args=(worker,), name=f"worker-{proc.pid}", daemon=True).start()

    def _read(self, worker: _Worker) -> None:
        """Reader thread: forward messages to the loop; report the exit on EOF."""
        try:
            while True:
                msg = worker.conn.recv()
                self._loop.call_soon_threadsafe(self._on_message, worker, msg)
        except (EOFError, OSError):
            pass
        code = worker.proc.wait()
        try:
            self._loop.call_soon_threadsafe(self._on_exit, worker, code)
        except RuntimeError:
            pass  # loop already closed: the front is exiting anyway

    def _on_message(self, worker: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            worker.state = "idle"
            log.info("worker %d ready (%s-style service)", worker.proc.pid, msg[2])
            if all(w.state in ("idle", "busy") for w in self._workers if w.initial) and not self._started.done():
                self._started.set_result(None)
        elif kind == "load_failed":
            worker.load_error = msg[1:]
        elif kind == "result":
            job, worker.job, worker.state = worker.job, None, "idle"
            if job is not None and job.id == msg[1]:
                if not job.future.done():
                    job.future.set_result((msg[2], msg[3]))
                self._finish(job)
        self._dispatch()

    def _on_exit(self, worker: _Worker, code: int) -> None:
        was, worker.state = worker.state, "dead"
        self._workers.remove(worker)
        worker.conn.close()
        job, worker.job = worker.job, None
        if job is not None:
            if not job.future.done():
                job.future.set_exception(PoolError(
                    500, protocol.WORKER_DIED, f"worker process exited with code {code} while handling the request"))
            self._finish(job)
        if self._closing:
            return
        if not self._started.done():
            exit_code, message, details = worker.load_error or (1, f"worker exited with code {code} while loading", "")
            self._started.set_exception(LoadFailed(exit_code, message, details))
            return
        if was == "loading":
            message = worker.load_error[1] if worker.load_error else f"exit code {code}"
            log.error("replacement worker %d failed to load: %s", worker.proc.pid, message)
        else:
            log.warning("worker %d exited (%s); starting a replacement", worker.proc.pid,
                        worker.killed_reason or f"exit code {code}")
            self._spawn(initial=False)
        if not self.live_workers():
            self._fail_pending(503, protocol.NOT_READY, "no worker could be started")
        self._dispatch()
