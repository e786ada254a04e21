"""What a run folder holds, read back as plain values for the report, ``compare`` and MLflow.

A run folder (``<root>/runs/<run id>/``) may hold:

* ``report.json``: status, steps (status, seconds, ``started_at``; ``cached_from``/``cache.hit``/
  ``resumed`` for reused results, status ``skipped`` with a ``reason``), notes (``report.py``);
* ``plan.json``: the settings of the run (``Plan.to_dict()``);
* ``metrics.json``: the training job's own file (epochs, verification, final);
* ``metrics-tNN.json`` (or ``trials/<trial>/metrics.json``): one per trial of a search,
  same layout; the train step's ``search.trials`` in report.json ranks them;
* ``logs/train.log``: the job's log lines (``[worker-N]`` prefixes with several workers),
  read for per-worker curves;
* ``predictions.jsonl``, ``mispredicted/`` (thumbnails kept by the predict step) and
  ``verification_pairs.json`` (per target: pair distances and same/different flags).

Every file is optional: a failed or older run gives whatever it has.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

STEP_ORDER = ("prepare", "upload", "train", "import_model", "deploy", "predict", "teardown")

# Per-epoch keys of the curves, with their labels; a job's metrics.json may have any subset.
CURVE_KEYS = {"train_accuracy": "train accuracy", "val_accuracy": "validation accuracy",
              "train_loss": "train loss", "val_cross_entropy": "validation loss", "lr": "learning rate",
              "samples_per_s": "images/s"}

_WORKER = re.compile(r"^\[(worker-\d+)\] (.*)$")
_EPOCH = re.compile(r"Epoch\[(\d+)\] (Train|Validation)-(accuracy|cross-entropy)=([-+\d.eE]+)")
_SPEED = re.compile(r"Epoch\[(\d+)\] Batch \[[\d-]+\]\s+Speed: ([\d.]+) samples/sec")
_LOG_KEYS = {("Train", "accuracy"): "train_accuracy", ("Validation", "accuracy"): "val_accuracy",
             ("Validation", "cross-entropy"): "val_cross_entropy"}


@dataclass(frozen=True)
class Series:
    """One curve family: per-epoch dicts (``epoch`` plus some of CURVE_KEYS)."""
    label: str
    epochs: tuple[dict, ...]

    def values(self, key: str) -> tuple[list[int], list[float]]:
        points = [(e["epoch"] + 1, e[key]) for e in self.epochs if isinstance(e.get(key), (int, float))]
        return [p[0] for p in points], [p[1] for p in points]


@dataclass(frozen=True)
class RunData:
    run_id: str
    run_dir: Path
    report: dict
    plan: dict
    metrics: dict
    predictions: tuple[dict, ...]
    pairs: dict
    series: tuple[Series, ...] = field(default=())

    @property
    def steps(self) -> dict:
        """The report's steps in the order they ran (report.json stores them sorted by name)."""
        steps = self.report.get("steps") or {}
        known = list(STEP_ORDER)
        return dict(sorted(steps.items(), key=lambda kv: (kv[1].get("started_at") or float("inf"),
                                                           known.index(kv[0]) if kv[0] in known else len(known))))

    @property
    def task(self) -> str:
        return (self.plan.get("data") or {}).get("task") or ("face" if self.metrics.get("verification") is not None
                                                              else "classification")

    @property
    def hyperparameters(self) -> dict:
        return dict((self.plan.get("job") or {}).get("hyperparameters") or {})

    @property
    def final_metrics(self) -> dict:
        """Numbers worth comparing: the job's final metrics plus the prediction summary."""
        out = {k: v for k, v in (self.metrics.get("final") or {}).items() if _number(v)}
        predict = (self.report.get("steps") or {}).get("predict") or {}
        out.update({f"predict_{k}": predict[k] for k in ("accuracy", "latency_p50_ms", "latency_p95_ms", "errors")
                    if _number(predict.get(k))})
        if _number(self.report.get("seconds")):
            out["run_seconds"] = self.report["seconds"]
        return out


def load(run_dir: str | Path) -> RunData:
    """Read a run folder (blocking, no side effects). Raises FileNotFoundError when it is
    not a run folder (no report.json)."""
    run_dir = Path(run_dir)
    report = _json(run_dir / "report.json")
    if report is None:
        raise FileNotFoundError(f"{run_dir} has no report.json: not a run folder")
    metrics = _json(run_dir / "metrics.json") or {}
    series = []
    if metrics.get("epochs"):
        series.append(Series("job", tuple(metrics["epochs"])))
    trials = [(p.stem.split("-", 1)[1], p) for p in sorted(run_dir.glob("metrics-t*.json"))]
    trials += [(p.parent.name, p) for p in sorted((run_dir / "trials").glob("*/metrics.json"))]
    for label, path in trials:
        epochs = (_json(path) or {}).get("epochs") or []
        if epochs:
            series.append(Series(label, tuple(epochs)))
    workers = worker_series(run_dir / "logs" / "train.log")
    if len(workers) > 1:
        series.extend(workers)
    return RunData(run_id=report.get("run_id", run_dir.name), run_dir=run_dir, report=report,
                   plan=_json(run_dir / "plan.json") or {}, metrics=metrics,
                   predictions=tuple(_jsonl(run_dir / "predictions.jsonl")),
                   pairs=_json(run_dir / "verification_pairs.json") or {}, series=tuple(series))


def worker_series(log: Path) -> list[Series]:
    """Per-worker curves from MXNet's epoch lines in a job log (``[worker-N]`` prefixes);
    one series named 'job' when the lines carry no prefix."""
    per: dict[str, dict[int, dict]] = {}
    speeds: dict[tuple[str, int], list[float]] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        m = _WORKER.match(line)
        worker, text = (m.group(1), m.group(2)) if m else ("job", line)
        if e := _EPOCH.search(text):
            entry = per.setdefault(worker, {}).setdefault(int(e.group(1)), {"epoch": int(e.group(1))})
            entry[_LOG_KEYS[(e.group(2), e.group(3))]] = float(e.group(4))
        elif s := _SPEED.search(text):
            speeds.setdefault((worker, int(s.group(1))), []).append(float(s.group(2)))
    for (worker, epoch), values in speeds.items():
        if epoch in per.get(worker, {}):
            per[worker][epoch]["samples_per_s"] = sum(values) / len(values)
    return [Series(w, tuple(per[w][e] for e in sorted(per[w]))) for w in sorted(per)]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
