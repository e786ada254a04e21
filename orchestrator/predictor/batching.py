"""When an idle worker should take a partial batch: the adaptive batching window.

``AdaptiveWindow(size, max_delay)`` learns, per model config, what a batch of ``n``
requests costs a worker (moving average of dispatch-to-answer seconds, ``served``) and how
far apart requests arrive (``arrived``). ``decide(waiting, oldest_at, now, idle_workers,
workers)`` -> ``(take, wake_at)``:

* an idle worker takes its share of the queue, ``ceil(waiting / workers)``, at most
  ``size``: taking more would leave the next worker to free up with nothing to do while
  this one runs a long batch (measured: a batch of 2 on one of two workers at c=4 cost a
  third of the throughput);
* a full batch goes at once;
* a partial batch goes at once unless waiting for the next request is expected to cost the
  worker less time than adding it to the batch saves: ``gap < cost(n) + cost(1) - cost(n+1)``
  (the next arrival, ``gap``, is due sooner than the saving), another worker is not idle,
  and the oldest waiting request has waited less than ``max_delay``. Then ``take`` is 0 and
  ``wake_at`` says when to look again (the next arrival, at most the oldest + ``max_delay``).

So the window is zero where batching does not pay (most CPU models: a batch of n costs n
single requests) or where traffic is light, and batches still form under load, because
requests queue while every worker is busy and an idle worker takes up to ``size`` of them.
Nothing is waited for on the strength of a guess: a batch size whose cost was never
measured counts as no saving.
"""

from __future__ import annotations

_WEIGHT = 0.2   # of a new measurement in the moving averages


class AdaptiveWindow:
    def __init__(self, size: int, max_delay: float):
        self.size, self.max_delay = size, max_delay
        self.cost: dict[int, float] = {}   # batch size -> seconds per batch
        self.gap: float | None = None      # seconds between arrivals
        self._last: float | None = None

    def arrived(self, now: float) -> None:
        if self._last is not None:
            seen = now - self._last
            self.gap = seen if self.gap is None else self.gap + _WEIGHT * (seen - self.gap)
        self._last = now

    def served(self, n: int, seconds: float) -> None:
        old = self.cost.get(n)
        self.cost[n] = seconds if old is None else old + _WEIGHT * (seconds - old)

    def saving(self, n: int) -> float:
        """Seconds of worker time saved by running ``n + 1`` requests as one batch instead of
        ``n`` and then 1 (0 when not measured)."""
        if n + 1 > self.size or not {1, n, n + 1} <= self.cost.keys():
            return 0.0
        return self.cost[n] + self.cost[1] - self.cost[n + 1]

    def decide(self, waiting: int, oldest_at: float, now: float, idle_workers: int = 1,
               workers: int = 1) -> tuple[int, float | None]:
        take = min(self.size, waiting, -(-waiting // max(1, workers)))
        if take in (0, self.size) or idle_workers > 1 or self.gap is None:
            return take, None
        deadline = oldest_at + self.max_delay
        if now >= deadline or self.gap >= self.saving(take):
            return take, None
        return 0, min(deadline, now + self.gap)
