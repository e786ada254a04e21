"""Runs the trials of a search: each a real training job (its own name, logs, ledger row and
output prefix), at most ``allocation.parallel`` at a time, polled like any job.

Blocking: ``run()`` returns the ranked trials once every trial finished, failed or was
stopped by the median rule. Each trial's ledger row carries its key and, once it ended,
its outcome and metrics, so a resumed search (``run --resume``) neither re-runs finished
trials nor re-starts running ones (they are re-attached).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import failpoints
from ..backends.base import BackendError, JobRef
from ..progress import EPOCH_METRIC, TrainingProgress, update
from ..stepkeys import digest
from .stopping import should_stop


@dataclass
class TrialRun:
    trial: object                      # workflow.Trial
    key: str
    metric: str                        # the objective's name in metrics.json "final"
    rid: int | None = None
    ref: JobRef | None = None
    status: str = "pending"            # pending | running | completed | stopped | failed
    reason: str = ""
    offset: int = 0
    progress: TrainingProgress = field(default_factory=TrainingProgress)
    curve: list = field(default_factory=list)     # objective after each validated epoch
    metrics: dict = field(default_factory=dict)
    started: float | None = None
    seconds: float | None = None
    resumed: bool = False

    @property
    def objective(self) -> float | None:
        value = self.metrics.get(self.metric)
        return value if _number(value) else None


class TrialRunner:
    def __init__(self, pipeline, emit: Callable):
        self.p, self.emit = pipeline, emit
        self.search = pipeline.plan.search
        self.runs = [TrialRun(t, digest("trial", pipeline.plan.key("train"), t.job.hyperparameters, t.job.envs),
                              self.search.metric) for t in self.search.trials]
        self.point = _epoch_point(self.search.metric)

    def run(self) -> list[TrialRun]:
        pending = [r for r in self.runs if not self._finished_earlier(r)]
        running: list[TrialRun] = []
        while pending or running:
            while pending and len(running) < self.search.allocation.parallel:
                running.append(self._start(pending.pop(0)))
            busy = False
            for run in list(running):
                busy |= self._poll(run)
                if run.status != "running":
                    running.remove(run)
                    self._record_outcome(run)
                    failpoints.hit("train:trial_done")
            if running and not busy:
                time.sleep(self.p.poll_interval)
        return rank(self.runs, self.search.goal)

    def _finished_earlier(self, run: TrialRun) -> bool:
        """A trial of an earlier attempt of this run that already ended (resume)."""
        row = self.p.earlier.row("job", run.trial.job.name)
        if row is None or row.detail.get("key") != run.key or "outcome" not in row.detail:
            return False
        run.rid, run.ref, run.status, run.resumed = row.rid, JobRef(row.ref_id, row.name), row.detail["outcome"], True
        run.metrics, run.curve = row.detail.get("metrics", {}), row.detail.get("curve", [])
        run.seconds = row.detail.get("seconds")
        self._event(run, f"trial {run.trial.number:02d} {run.status} in an earlier attempt: not run again")
        return True

    def _start(self, run: TrialRun) -> TrialRun:
        job = run.trial.job
        self.p._record_prefix(job.train_url)
        run.ref = self.p.earlier.reuse("job", job.name, "train", lambda row: JobRef(row.ref_id, row.name), key=run.key)
        if run.ref is not None:
            run.resumed = True
            run.rid = self.p.earlier.row("job", job.name).rid
        else:
            with self.p.tracker.track("job", job.name, {"flavor": job.flavor, "key": run.key,
                                                        "trial": run.trial.number}) as made:
                run.ref = self.p.backend.submit_job(job)
                made.created(run.ref.id)
            run.rid = made.rid
        run.status, run.started = "running", time.time()
        self._event(run, f"trial {run.trial.number:02d} started: {_hp(run)}"
                    + (" (re-attached)" if run.resumed else ""))
        return run

    def _poll(self, run: TrialRun) -> bool:
        """One look at a running trial; True when it had new log lines."""
        state = self.p.backend.job_status(run.ref)
        lines, run.offset = self.p.backend.job_logs(run.ref, run.offset)
        log = self.p.plan.run_dir / "logs" / f"train-t{run.trial.number:02d}.log"
        with open(log, "a") as fh:
            fh.writelines(line + "\n" for line in lines)
        for line in lines:
            run.progress = update(run.progress, line) or run.progress
            point = self.point(line)
            if point is None:
                continue
            run.curve.append(point)
            self._event(run, f"trial {run.trial.number:02d} epoch {len(run.curve)}: {self.search.metric} {point:.4f}")
            if self._behind(run):
                self.p.backend.stop_job(run.ref)
                run.status, run.reason = "stopped", "median rule: behind the other trials"
                break
        if run.status == "running" and state.terminal and not lines:
            run.status = {"Completed": "completed"}.get(state.phase, "failed")
            run.reason = "" if run.status == "completed" else f"{state.phase.lower()}: {state.reason}"
        if run.status != "running":
            run.seconds = round(time.time() - run.started, 3)
            if run.status in ("completed", "stopped"):
                final = self._metrics(run)
                run.metrics = final if run.status == "completed" else {}
            self._event(run, f"trial {run.trial.number:02d} {run.status}"
                        + (f": {self.search.metric} {run.objective:.4f}" if _number(run.objective) else "")
                        + (f" ({run.reason})" if run.reason else ""))
        return bool(lines)

    def _behind(self, run: TrialRun) -> bool:
        rule = self.search.early_stopping
        if not rule:
            return False
        others = [r.curve for r in self.runs if r is not run and r.curve]
        return should_stop(run.curve, others, goal=self.search.goal, min_epochs=rule["min_epochs"],
                           min_trials=rule["min_trials"])

    def _metrics(self, run: TrialRun) -> dict:
        """The trial's metrics.json, kept as ``trials/tNN/metrics.json`` (the report's curves);
        its numeric "final" values."""
        target = self.p.plan.run_dir / "trials" / f"t{run.trial.number:02d}" / "metrics.json"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.p.backend.storage.get(run.trial.job.train_url + "metrics.json", str(target))
            final = json.loads(target.read_text()).get("final", {})
        except (BackendError, OSError, ValueError):
            return {}
        return {k: v for k, v in final.items() if _number(v)}

    def _record_outcome(self, run: TrialRun) -> None:
        self.p.ledger.created(run.rid, run.ref.id, {"outcome": run.status, "metrics": run.metrics,
                                                    "curve": run.curve, "seconds": run.seconds})

    def _event(self, run: TrialRun, message: str) -> None:
        self.emit("trial", "train", message, trial=as_dict(run))


def rank(runs: list[TrialRun], goal: str) -> list[TrialRun]:
    """Completed trials by objective (best first), then stopped ones by their best epoch,
    then failed ones."""
    sign = -1 if goal == "max" else 1

    def order(run: TrialRun):
        group = {"completed": 0, "stopped": 1}.get(run.status, 2)
        value = run.objective if run.status == "completed" else (max(run.curve) if goal == "max" else min(run.curve)) \
            if run.curve else None
        return (group, 0 if _number(value) else 1, sign * value if _number(value) else 0, run.trial.number)

    return sorted(runs, key=order)


def as_dict(run: TrialRun) -> dict:
    return {"number": run.trial.number, "name": run.trial.job.name, "hyperparameters": dict(run.trial.hyperparameters),
            "status": run.status, "reason": run.reason, "objective": run.objective, "metric": run.metric,
            "metrics": run.metrics, "curve": run.curve, "epochs_done": run.progress.epochs_done,
            "num_epochs": run.progress.num_epochs, "seconds": run.seconds, "resumed": run.resumed,
            "output": run.trial.job.train_url, "log": f"logs/train-t{run.trial.number:02d}.log"}


def _epoch_point(metric: str) -> Callable[[str], float | None]:
    """Reads ``metric`` (a metrics.json name such as val_accuracy) from a job's per-epoch
    log line (``Epoch[3] Validation-accuracy=0.91``), for the median rule and the live view."""
    prefix, _, rest = metric.partition("_")
    side = {"val": "Validation", "train": "Train"}.get(prefix)
    wanted = re.sub(r"[-_]", "", rest.lower())

    def read(line: str) -> float | None:
        m = EPOCH_METRIC.search(line)
        if side is None or not m or m.group(2) != side or re.sub(r"[-_]", "", m.group(3).lower()) != wanted:
            return None
        return float(m.group(4))
    return read


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hp(run: TrialRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.trial.hyperparameters)
