"""Prometheus metrics of one predictor front (``GET /metrics``, text format 0.0.4).

Own registry per front (no global state). Label ``model`` is the config id; requests
rejected before a config was chosen (401, 413, ...) carry ``model="-"``.

* ``predictor_requests_total{model,code}``          inference requests by HTTP status
* ``predictor_request_duration_seconds{model}``      end to end, as the front saw it
* ``predictor_stage_duration_seconds{model,stage}``  stage = queue | preprocess | inference | postprocess
* ``predictor_batch_size{model}``                     requests per dispatched batch (batching only)
* ``predictor_worker_restarts_total{model}``         workers replaced after a crash or a timeout
* ``predictor_in_flight{model}``, ``predictor_queue_depth{model}``, ``predictor_workers_ready{model}``,
  ``predictor_workers{model}``, ``predictor_weight{model}``: gauges read at scrape time.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _PoolGauges:
    """Gauges computed from the router's snapshot when Prometheus scrapes."""

    def __init__(self, snapshot: Callable[[], list[dict]]):
        self.snapshot = snapshot

    def collect(self):
        rows = self.snapshot()
        specs = [("predictor_in_flight", "Requests queued or running", lambda r: r["waiting"] + r["running"]),
                 ("predictor_queue_depth", "Requests waiting for a worker", lambda r: r["waiting"]),
                 ("predictor_workers_ready", "Workers loaded and warm", lambda r: r["ready"]),
                 ("predictor_workers", "Workers configured", lambda r: r["workers"]),
                 ("predictor_weight", "Traffic weight", lambda r: r["weight"])]
        for name, doc, value in specs:
            family = GaugeMetricFamily(name, doc, labels=["model"])
            for row in rows:
                family.add_metric([row["id"]], value(row))
            yield family


class Metrics:
    def __init__(self, snapshot: Callable[[], list[dict]]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("predictor_requests", "Inference requests by HTTP status", ["model", "code"], registry=r)
        self.latency = Histogram("predictor_request_duration_seconds", "End-to-end request latency",
                                 ["model"], buckets=BUCKETS, registry=r)
        self.stages = Histogram("predictor_stage_duration_seconds", "Time per stage of a request",
                                ["model", "stage"], buckets=BUCKETS, registry=r)
        self.batches = Histogram("predictor_batch_size", "Requests per dispatched batch", ["model"],
                                 buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.restarts = Counter("predictor_worker_restarts", "Workers replaced after a crash or timeout",
                                ["model"], registry=r)
        r.register(_PoolGauges(snapshot))
        self._children: dict = {}

    def _child(self, metric, *labels):
        """``metric.labels(*labels)``, looked up once (it takes a lock and builds a key per call)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, model: str, code: int, seconds: float) -> None:
        self._child(self.requests, model, str(code)).inc()
        if model != "-":
            self._child(self.latency, model).observe(seconds)

    def observe_stages(self, model: str, queue_s: float, timings: dict) -> None:
        self._child(self.stages, model, "queue").observe(queue_s)
        for stage, seconds in timings.items():
            self._child(self.stages, model, stage).observe(seconds)

    def observe_batch(self, model: str, size: int) -> None:
        self.batches.labels(model).observe(size)

    def worker_restarted(self, model: str) -> None:
        self.restarts.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
