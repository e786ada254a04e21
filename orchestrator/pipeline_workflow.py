"""The workflow parts of ``Pipeline`` (a mixin): the search of ``train.search``, ``when:``
conditions (skipped steps), and step caching across runs. They use the pipeline's plan,
backend, ledger, report and events; see ``pipeline.py`` for the contract of the steps."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .backends.base import JobRef
from .conditions import ConditionError, Scope, evaluate
from .errors import StepFailed


class WorkflowSteps:
    def _search(self, info: dict) -> JobRef:
        """Every trial of ``train.search``; the best completed one goes on to import."""
        from .search.runner import TrialRunner, as_dict
        search = self.plan.search
        ranked = TrialRunner(self, self._emit).run()
        trials = [dict(as_dict(run), rank=i) for i, run in enumerate(ranked, 1)]
        best = ranked[0]
        info["search"] = {"algorithm": search.algorithm, "metric": search.metric, "goal": search.goal,
                          "parallel": search.allocation.parallel, "threads_per_trial": search.allocation.threads,
                          "allocation": search.allocation.reason, "early_stopping": search.early_stopping,
                          "best_trial": best.trial.number if best.objective is not None else None, "trials": trials}
        if best.status != "completed" or best.objective is None:
            raise StepFailed("train", f"no trial completed with metric {search.metric}: "
                             + "; ".join(f"trial {t['number']:02d} {t['status']} {t['reason']}".strip()
                                         for t in trials), log=str(self.plan.run_dir / "logs"))
        self.plan = replace(self.plan, **{**self._output_at(best.trial.job.train_url), "job": best.trial.job})
        info["metrics"] = self.metrics["train"] = self._job_metrics().get("final") or best.metrics   # the run's own
        self.job = best.ref
        return self.job


    def _skipped(self, step: str, needs: str) -> bool:
        """Skip ``step`` (recorded as skipped, with the reason) when the step it needs was
        skipped or its ``when:`` condition is false. A condition that cannot be evaluated
        (a metric the job did not write) fails the step."""
        reason = None
        if self.report.steps.get(needs, {}).get("status") == "skipped":
            reason = f"needs {needs}, which was skipped"
        elif (when := self.plan.condition(step)) is not None:
            scope = Scope({"train": None, "evaluate": None}, {name: value for name, value, _ in self.plan.params})
            try:
                if not evaluate(when, scope, self.metrics):
                    reason = f"condition is false: {when}"
            except ConditionError as exc:
                with self._step(step):
                    raise StepFailed(step, f"cannot evaluate when: {exc}") from None
        if reason is None:
            return False
        with self._step(step) as info:
            info.update(status="skipped", reason=reason)
            self._emit("log", step, f"skipped: {reason}")
        return True

    def _cache_hit(self, step: str, info: dict, moved: Callable) -> bool:
        """Reuse an earlier run's output of ``step`` when its cache key matches and the
        output still exists: the plan then points at that output (``moved(entry)`` gives
        the plan fields to replace)."""
        key = self.plan.cache_key(step)
        if not key or (self.resume and self.earlier.step_done(step)):
            return False
        entry = self.cache.lookup(step, key, self.backend.storage)
        if entry is None or entry.run_id == self.plan.run_id:
            info["cache"] = {"hit": False, "key": key}
            return False
        self.plan = replace(self.plan, **moved(entry))
        info.update(cached=True, cached_from=entry.run_id, cache={"hit": True, "key": key, "from_run": entry.run_id,
                                                    "location": entry.location})
        self._emit("log", step, f"reused the output of run {entry.run_id} (cache key {key})")
        return True

    def _output_at(self, train_url: str) -> dict:
        """Plan fields for a training output found elsewhere (a cached run's, the best trial's)."""
        job, model = self.plan.job, self.plan.model
        moved = {"job": replace(job, train_url=train_url)}
        if model.source_location == job.train_url:    # else model/ is assembled at import (model.inference_code)
            moved["model"] = replace(model, source_location=train_url)
        return moved

    def _cache_keep(self, step: str, location: str, rid: int | None) -> None:
        """Keep a cacheable step's output for later runs: out of teardown's reach."""
        key = self.plan.cache_key(step)
        if key:
            self.cache.record(step, key, self.plan.run_id, location)
            if rid is not None:
                self.ledger.kept(rid, f"cache: {step} {key}")

    def _record_prefix(self, uri: str) -> int | None:
        """Put an object prefix in the ledger before writing under it (once per run); the
        row id, or None when an enclosing prefix is already recorded."""
        if any(uri.startswith(p) for p in self._prefixes):
            return None
        with self.tracker.track("object_prefix", uri) as made:
            made.created(uri)
        rid = made.rid
        self._prefixes.add(uri)
        return rid
