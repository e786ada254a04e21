"""Worker processes of one model config, with per-request dispatch (and optional batching).

Contract (every method runs on the front's event loop; no threads):

* ``start()`` spawns ``config.workers`` workers (``worker.py``, one socketpair each) and
  returns once every one loaded the service AND answered a warm-up request; if one fails
  to load it raises ``LoadFailed`` (``exit_code`` 2 malformed package, 1 otherwise). The
  caller then ``close()``s the pool.
* ``enqueue(payload, timeout, done) -> job``: queues one request and calls
  ``done((http_status, json_bytes))`` or ``done(PoolError)`` exactly once, later, on the
  loop. Raises ``PoolError`` at once (nothing queued): 503 ``OVERLOADED`` when
  ``config.waiting_limit`` requests already wait for a worker (``retry_after`` = the
  seconds the queue needs to drain at the recent service time, ``retry_after_seconds``),
  503 ``NOT_READY`` (closing, or no worker ready: all restarting). Later failures go to
  ``done``: 504 ``TIMEOUT`` (queue wait + run over ``timeout``), 500 ``WORKER_DIED``, 400
  ``BAD_REQUEST`` for a payload that cannot be sent to a worker (e.g. too deeply nested
  to pickle): nothing between taking a request off the queue and sending it can strand
  the request or leave its worker marked busy.
* ``cancel(job)`` (the client went away): a request that still waits is dropped, never
  run, and ``done`` is not called. One already running finishes (its worker is
  single-threaded) and its answer is discarded.
* ``submit(payload, timeout)``: the same as a coroutine, ``(http_status, json_bytes)`` or
  ``PoolError``; cancelling it cancels the job.
* Every dispatched request has a deadline (its ``timeout`` from arrival) kept by the
  pool itself, not only by the caller: a worker still holding a request past it is
  killed and replaced even when the client is gone, so a hung request cannot wedge it.
* ``reserve()`` / ``unreserve()``: a place for a request whose body is still being read,
  so the front answers 503 ``OVERLOADED`` before reading when every place is taken.
* A request goes to whichever worker is idle (per request, not per connection), oldest
  first. With ``batch_size`` > 1 (``config.batch_size``; ``AUTO``: ``AUTO_BATCH`` once
  the first worker said its service supports batching, else 1) an idle worker takes up to that many waiting
  requests at once; it waits for more only when the measured batch costs say that pays,
  and at most ``batch_delay_ms`` after the oldest waiting request came
  (``batching.AdaptiveWindow``).
* A worker that overruns the timeout is killed (it is single-threaded, so it would stay
  stuck; the other requests of its batch fail with 500) and, like one that dies, replaced;
  a replacement that fails to load is retried with back-off (1 s doubling to 30 s).
* ``drain(grace)`` stops taking requests, lets queued and running ones finish, then
  closes. ``close(grace)`` fails waiting requests with 503, lets running ones finish for at
  most ``grace`` s, then kills.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import os
import sys

from orchestrator.predictor import channel, protocol
from orchestrator.predictor.batching import AdaptiveWindow
from orchestrator.predictor.config import AUTO, AUTO_BATCH, ModelConfig
from orchestrator.predictor.jobs import Job, LoadFailed, PoolError, Worker, retry_after_seconds, serialisable

log = logging.getLogger("orchestrator.predictor")
__all__ = ["LoadFailed", "PoolError", "WorkerPool", "retry_after_seconds"]


class WorkerPool:
    def __init__(self, config: ModelConfig, *, name: str, env: dict, py2_compat: bool = False, metrics=None):
        self.config, self.name, self.env, self.py2_compat, self.metrics = config, name, env, py2_compat, metrics
        self.model_header = config.id.encode()
        self._workers: list[Worker] = []
        self._pending: collections.deque[Job] = collections.deque()
        self._jobs_open = 0
        self._ids = itertools.count(1)
        self._closing = self._retiring = False
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        self._idle_event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._backoff = 1.0
        self._service_s = 0.0  # moving average of recent requests' run time (dispatch to answer)
        # batch_size "auto" is settled by the first worker's Loaded (does the service batch?)
        self.batch_size = 1 if config.batch_size == AUTO else config.batch_size
        self._window = AdaptiveWindow(self.batch_size, config.batch_delay_ms / 1000.0)
        self._reading = 0  # requests admitted whose body is still being read

    # -- state ----------------------------------------------------------------------------
    def ready_workers(self) -> int:
        return sum(w.state in ("idle", "busy") for w in self._workers)

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.state != "dead"]

    def accepting(self) -> bool:
        return not (self._closing or self._retiring) and self.ready_workers() > 0

    def reserve(self) -> None:
        """Hold a place for a request before its body is read; raises ``overloaded()``
        when the queue and the workers are full (answer without reading). Pair with
        ``unreserve()``."""
        if self._jobs_open + self._reading >= self.config.waiting_limit + self.config.workers * self.batch_size:
            raise self.overloaded()
        self._reading += 1

    def unreserve(self) -> None:
        self._reading -= 1

    def overloaded(self) -> PoolError:
        retry = retry_after_seconds(self._jobs_open, self.config.workers, self._service_s)
        return PoolError(503, protocol.OVERLOADED, f"{len(self._pending)} requests already wait for a worker "
                         f"(queue size {self.config.waiting_limit}); retry in {retry} s", retry_after=retry)

    def load(self) -> tuple[int, int]:
        """``(requests waiting, requests running)``."""
        return len(self._pending), self._jobs_open - len(self._pending)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        for _ in range(self.config.workers):
            await self._spawn(initial=True)
        await self._started

    async def drain(self, grace: float) -> None:
        self._retiring = True
        try:
            await asyncio.wait_for(self._until_empty(), grace)
        except asyncio.TimeoutError:
            log.warning("config %s: requests still running after %g s of draining", self.config.id, grace)
        await self.close(grace=1.0)

    async def _until_empty(self) -> None:
        while self._jobs_open:
            self._idle_event.clear()
            await self._idle_event.wait()

    async def close(self, grace: float = 10.0) -> None:
        self._closing = True
        self._fail_pending(503, protocol.NOT_READY, "predictor is shutting down")
        workers = list(self._workers)
        for w in workers:
            if w.state in ("loading", "warming"):
                w.proc.kill()  # nothing to finish; don't wait for a model load to complete
            else:
                w.send(None)  # queued after any running job
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), grace)
            except asyncio.TimeoutError:
                w.proc.kill()
                await w.proc.wait()
            grace = 0.5  # the first wait used up the grace period
        for task in list(self._tasks):
            task.cancel()

    # -- requests -------------------------------------------------------------------------
    def enqueue(self, payload, timeout: float, done) -> Job:
        if not self.accepting():
            raise PoolError(503, protocol.NOT_READY, f"model config {self.config.id} has no ready worker", 1)
        if len(self._pending) >= self.config.waiting_limit and not self._idle_worker():
            raise self.overloaded()
        job = Job(next(self._ids), payload, done, self._loop.time(), timeout)
        self._window.arrived(job.queued_at)
        job.timer = self._loop.call_at(job.deadline, self._expire, job)
        self._jobs_open += 1
        self._pending.append(job)
        self._dispatch()
        return job

    async def submit(self, payload, timeout: float) -> tuple[int, bytes]:
        future = self._loop.create_future()

        def done(outcome) -> None:
            if not future.done():
                future.set_exception(outcome) if isinstance(outcome, PoolError) else future.set_result(outcome)

        job = self.enqueue(payload, timeout, done)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def cancel(self, job: Job) -> None:
        """The client went away: drop the request if it waits; a running one finishes."""
        self._settle(job, None)
        self._abandon(job, kill_reason=None)

    def _settle(self, job: Job, outcome) -> None:
        """Call ``job.done(outcome)`` unless it was called or the client left (outcome None: quietly)."""
        if job.settled:
            return
        job.settled = True
        if job.timer is not None:
            job.timer.cancel()
        if outcome is not None:
            try:
                job.done(outcome)
            except Exception:   # the caller's bug must not corrupt the pool's bookkeeping
                log.exception("answering request %d failed", job.id)

    def _expire(self, job: Job) -> None:
        job.timer = None
        if not job.settled:
            self._abandon(job, kill_reason=f"request {job.id} exceeded {job.timeout:g} s")
            self._settle(job, PoolError(504, protocol.TIMEOUT, f"no answer within {job.timeout:g} s"))

    def _abandon(self, job: Job, kill_reason: str | None) -> None:
        if job in self._pending:
            self._pending.remove(job)
            self._finish(job)
        elif job.worker is not None and kill_reason and job.id in job.worker.jobs:
            job.worker.kill(kill_reason)

    def _finish(self, job: Job, status: int | None = None, timings: dict | None = None) -> None:
        self._jobs_open -= 1
        if not self._jobs_open:
            self._idle_event.set()
        if self.metrics is not None and status is not None:
            self.metrics.observe_stages(self.config.id, job.started_at - job.queued_at, timings or {})

    def _fail_pending(self, status: int, code: str, message: str) -> None:
        while self._pending:
            job = self._pending.popleft()
            self._settle(job, PoolError(status, code, message, retry_after=1))
            self._finish(job)

    def _idle_worker(self) -> Worker | None:
        return next((w for w in self._workers if w.state == "idle"), None)

    def _dispatch(self) -> None:
        while self._pending and (worker := self._idle_worker()) is not None:
            take, wake_at = 1, None
            if self.batch_size > 1:
                idle = sum(w.state == "idle" for w in self._workers)
                take, wake_at = self._window.decide(len(self._pending), self._pending[0].queued_at,
                                                    self._loop.time(), idle, self.ready_workers())
            if not take:
                if self._timer is None:
                    self._timer = self._loop.call_at(wake_at, self._on_timer)
                return
            jobs = self._send(worker, [self._pending.popleft() for _ in range(take)])
            if not jobs:
                continue  # every request of this batch was refused; the worker is still idle
            now = self._loop.time()
            for job in jobs:
                job.worker, job.started_at = worker, now
                worker.jobs[job.id] = job
            worker.state, worker.batch_started, worker.batch_n = "busy", now, len(jobs)
            worker.watchdog = self._loop.call_at(max(job.deadline for job in jobs), self._overdue, worker)
            if self.metrics is not None and self.batch_size > 1:
                self.metrics.observe_batch(self.config.id, len(jobs))

    def _send(self, worker: Worker, jobs: list[Job]) -> list[Job]:
        """Send ``jobs`` to ``worker``; return those sent. A request that cannot be
        serialised is failed on its own (400) and the rest of its batch is still sent."""
        try:
            worker.process.send_jobs([(job.id, job.payload) for job in jobs])
            return jobs
        except Exception as exc:  # RecursionError, PicklingError, ...
            failure = exc
        sendable = [job for job in jobs if serialisable(job.payload)]
        for job in jobs:
            if job not in sendable or len(sendable) == len(jobs):  # no culprit found: fail them all
                self._refuse(job, failure)
        return self._send(worker, sendable) if 0 < len(sendable) < len(jobs) else []

    def _refuse(self, job: Job, exc: Exception) -> None:
        self._settle(job, PoolError(400, protocol.BAD_REQUEST, "the request cannot be passed to a worker "
                                    f"({type(exc).__name__}); send a less deeply nested document"))
        self._finish(job)

    def _overdue(self, worker: Worker) -> None:
        worker.watchdog = None
        if worker.jobs:
            worker.kill(f"request(s) {', '.join(map(str, worker.jobs))} still running past their deadline")

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    # -- worker processes -----------------------------------------------------------------
    async def _spawn(self, initial: bool) -> None:
        cmd = [sys.executable, "-m", "orchestrator.predictor.worker",
               "--model-dir", self.config.model_dir, "--name", self.name, "--parent-pid", str(os.getpid()),
               "--batch-size", str(self.config.batch_size)] + (["--py2-compat"] if self.py2_compat else []) + (
               ["--runtime", self.config.runtime] if self.config.runtime else [])
        worker = Worker(initial)
        worker.process = await channel.spawn(
            cmd, env=self.env, cwd=self.config.model_dir, on_message=functools.partial(self._on_message, worker),
            on_closed=lambda: self._track(self._reap(worker)))
        self._workers.append(worker)

    def _track(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap(self, worker: Worker) -> None:
        """The worker's channel closed: wait for its exit code, then account for it."""
        worker.process.close()
        was, worker.state = worker.state, "exiting"  # gets no more work while we wait for the exit code
        self._on_exit(worker, was, await worker.proc.wait())

    def _on_message(self, worker: Worker, msg: tuple) -> None:
        if isinstance(msg, protocol.Loaded):
            if self.config.batch_size == AUTO and msg.batching and self.batch_size == 1:
                self.batch_size = AUTO_BATCH
                self._window = AdaptiveWindow(AUTO_BATCH, self.config.batch_delay_ms / 1000.0)
            worker.state = "warming"
            worker.send(protocol.Warmup())
        elif isinstance(msg, protocol.Warm):
            worker.state, self._backoff = "idle", 1.0
            log.info("config %s: worker %d ready (warm-up answered %d)", self.config.id, worker.proc.pid, msg.status)
            if not self._started.done() and all(w.state == "idle" for w in self._workers if w.initial):
                self._started.set_result(None)
        elif isinstance(msg, protocol.LoadFailed):
            worker.load_error = msg
        elif isinstance(msg, protocol.Result):
            job = worker.jobs.pop(msg.job_id, None)
            if not worker.jobs:
                worker.state = "idle"
                worker.disarm()
                if self.batch_size > 1:
                    self._window.served(worker.batch_n, self._loop.time() - worker.batch_started)
            if job is not None:
                took = self._loop.time() - job.started_at
                self._service_s = took if not self._service_s else self._service_s + 0.2 * (took - self._service_s)
                self._settle(job, (msg.status, msg.body))
                self._finish(job, msg.status, msg.timings)
        self._dispatch()

    def _on_exit(self, worker: Worker, was: str, code: int) -> None:
        worker.state = "dead"
        worker.disarm()
        self._workers.remove(worker)
        for job in worker.jobs.values():
            self._settle(job, PoolError(500, protocol.WORKER_DIED,
                                        f"worker process exited with code {code} while handling the request"))
            self._finish(job)
        worker.jobs.clear()
        if self._closing:
            return
        if not self._started.done():
            exit_code, message, details = worker.load_error or (1, f"worker exited with code {code} while loading", "")
            self._started.set_exception(LoadFailed(exit_code, f"model config {self.config.id}: {message}", details))
            return
        if was in ("loading", "warming"):
            message = worker.load_error.message if worker.load_error else f"exit code {code}"
            log.error("config %s: replacement worker %d failed to load (%s); retrying in %g s",
                      self.config.id, worker.proc.pid, message, self._backoff)
            self._loop.call_later(self._backoff, lambda: self._closing or self._track(self._spawn(initial=False)))
            self._backoff = min(30.0, self._backoff * 2)
        else:
            log.warning("config %s: worker %d exited (%s); starting a replacement", self.config.id,
                        worker.proc.pid, worker.killed_reason or f"exit code {code}")
            if self.metrics is not None:
                self.metrics.worker_restarted(self.config.id)
            self._track(self._spawn(initial=False))
        if not self.ready_workers():
            self._fail_pending(503, protocol.NOT_READY, f"model config {self.config.id}: no worker ready (restarting)")
        self._dispatch()
