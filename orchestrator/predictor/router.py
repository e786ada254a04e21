"""Several model configs behind one predictor: one ``WorkerPool`` each, weighted routing.

Contract (event-loop only):

* ``apply(configs)`` makes the front serve exactly ``configs``. A config whose pool
  settings are unchanged keeps its workers (only its weight changes, at once); a new or
  changed one gets a new pool, and routing switches only after every new pool is warm.
  Pools no longer routed to are drained in the background (queued and running requests
  finish) and then stopped, so no in-flight request is lost. If a new pool fails to load,
  ``LoadFailed`` is raised and routing is left exactly as it was. Calls are serialised.
* ``pick()`` chooses the pool for one request by smooth weighted round-robin (the split
  is exact over every window of ``sum(weights)`` requests, not just on average), among
  pools with weight > 0 and a ready worker; ``None`` when there is none.
* ``readiness()`` -> ``(ready, reason)``: ready when every weighted pool has all its
  workers warm (false while a crashed or hung worker is being replaced).
"""

from __future__ import annotations

import asyncio
import logging

from orchestrator.predictor.config import ModelConfig, worker_env
from orchestrator.predictor.pool import LoadFailed, WorkerPool

log = logging.getLogger("orchestrator.predictor")


class Router:
    def __init__(self, *, name: str, base_env: dict, drop_env: tuple[str, ...] = (), py2_compat: bool = False,
                 drain_grace: float = 45.0, metrics=None):
        self.name, self.base_env, self.drop_env = name, base_env, drop_env
        self.py2_compat, self.drain_grace, self.metrics = py2_compat, drain_grace, metrics
        self.pools: dict[str, WorkerPool] = {}
        self.weights: dict[str, int] = {}
        self._current: dict[str, int] = {}
        self._retiring: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def apply(self, configs: tuple[ModelConfig, ...]) -> None:
        async with self._lock:
            total = sum(c.workers for c in configs)
            kept = {c.id: self.pools[c.id] for c in configs
                    if c.id in self.pools and self.pools[c.id].config.same_pool(c)}
            fresh = {c.id: WorkerPool(c, name=self.name, env=worker_env(self.base_env, c, total, self.drop_env),
                                      py2_compat=self.py2_compat, metrics=self.metrics)
                     for c in configs if c.id not in kept}
            try:
                await asyncio.gather(*(pool.start() for pool in fresh.values()))
            except BaseException:  # LoadFailed, or cancelled by a shutdown: routing unchanged
                await asyncio.gather(*(pool.close(grace=1.0) for pool in fresh.values()))
                raise
            old = [pool for pool in self.pools.values() if pool not in kept.values()]
            self.pools = {c.id: kept.get(c.id) or fresh[c.id] for c in configs}
            self.weights = {c.id: c.weight for c in configs}
            self._current = dict.fromkeys(self.pools, 0)
            for pool in old:
                task = asyncio.get_running_loop().create_task(pool.drain(self.drain_grace))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            log.info("serving %s", ", ".join(f"{c.id} (weight {c.weight}, {c.workers} worker(s))" for c in configs))

    def pick(self) -> WorkerPool | None:
        best, total = None, 0
        for key, pool in self.pools.items():
            weight = self.weights[key]
            if weight <= 0 or not pool.accepting():
                continue
            self._current[key] += weight
            total += weight
            if best is None or self._current[key] > self._current[best]:
                best = key
        if best is None:
            return None
        self._current[best] -= total
        return self.pools[best]

    def readiness(self) -> tuple[bool, str]:
        if not self.pools:
            return False, "loading the model"
        short = [f"model config {key}: {pool.ready_workers()}/{pool.config.workers} workers ready"
                 for key, pool in self.pools.items()
                 if self.weights[key] > 0 and pool.ready_workers() < pool.config.workers]
        return (False, "; ".join(short) + " (a worker is being replaced)") if short else (True, "")

    def snapshot(self) -> list[dict]:
        """Per config: id, weight, workers, ready, waiting, running, pids (for metrics and the ready file)."""
        out = []
        for key, pool in self.pools.items():
            waiting, running = pool.load()
            out.append({"id": key, "weight": self.weights[key], "workers": pool.config.workers,
                        "ready": pool.ready_workers(), "waiting": waiting, "running": running,
                        "pids": pool.worker_pids()})
        return out

    async def close(self, grace: float) -> None:
        pools, self.pools = list(self.pools.values()), {}
        await asyncio.gather(*(pool.close(grace) for pool in pools), *list(self._retiring))


__all__ = ["Router", "LoadFailed"]
