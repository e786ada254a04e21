"""Plan-time parts of workflows: ``when:`` conditions checked against the metrics each step
can produce, and the trials of a ``train.search`` with their names, outputs and threads.
Everything here is decided before anything runs, so ``validate`` and ``plan`` catch it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .backends.base import JobSpec
from .conditions import ConditionError, Scope, check
from . import jobargs
from .errors import UserError
from .search.scheduler import Allocation, allocate
from .search.space import check_space, grid_size, trials
from .spec import PipelineSpec

# What the project's own jobs write into metrics.json "final" (jobs/*/train_metrics.py,
# face_metrics.py). Other training code: names are checked when the condition runs.
JOB_METRICS = {
    "jobs/image_classification": frozenset({"epoch", "train_accuracy", "val_accuracy", "val_cross_entropy",
                                             "val_top_k_accuracy_5", "time_s", "samples_per_s"}),
}
CONDITIONAL_STEPS = (("import_model", "model"), ("deploy", "service"), ("predict", "predict"),
                     ("batch_predict", "batch_predict"))
EVALUATE_METRICS = frozenset({"accuracy", "top5_accuracy", "count", "errors"})


@dataclass(frozen=True)
class Trial:
    number: int
    hyperparameters: tuple[tuple[str, str], ...]   # only the searched ones
    job: JobSpec


@dataclass(frozen=True)
class SearchPlan:
    algorithm: str
    trials: tuple[Trial, ...]
    allocation: Allocation
    metric: str
    goal: str                                      # max | min
    early_stopping: dict | None                    # {rule, min_epochs, min_trials}


def known_metrics(code_dir: Path, repo_root: Path) -> frozenset[str] | None:
    for job, names in JOB_METRICS.items():
        if code_dir.resolve() == (repo_root / job).resolve():
            return names
    return None


def check_conditions(spec: PipelineSpec, params: dict, metrics: frozenset[str] | None,
                     where) -> tuple[tuple[str, str], ...]:
    """((step, condition), ...) for the steps with ``when:``; a bad condition is a UserError
    at its line. ``where(key)`` gives ``file:line`` of a key."""
    steps = {"train": metrics, **({"evaluate": EVALUATE_METRICS} if spec.evaluate else {})}
    scope = Scope(steps, params)
    out = []
    for step, section in CONDITIONAL_STEPS:
        text = getattr(getattr(spec, section), "when", None)
        if text is None:
            continue
        try:
            check(text, scope)
        except ConditionError as exc:
            hint = ("evaluate.metrics need an evaluate: section" if "evaluate." in text and not spec.evaluate else
                    "conditions compare metrics of earlier steps or parameters, e.g. "
                    "train.metrics.val_accuracy >= 0.9 and not params.dry")
            raise UserError(f"{section}.when: {exc}", where=where(f"{section}.when"), hint=hint) from None
        out.append((step, text))
    return tuple(out)


def check_offline_steps(spec: PipelineSpec, base: Path, where) -> None:
    """evaluate / batch_predict inputs that cannot work, found before anything runs."""
    if spec.evaluate and spec.data.task != "classification":
        raise UserError("evaluate scores classification models; a face model's verification metrics come from its "
                        "training job (train.metrics.val_accuracy, lfw_accuracy, ...)", where=where("evaluate"),
                        hint="remove the evaluate section, or use train.metrics in conditions")
    checks = [("evaluate.images", spec.evaluate.images if spec.evaluate else None),
              ("batch_predict.input", spec.batch_predict.input if spec.batch_predict else None)]
    for key, value in checks:
        if value is None or value.startswith("obs://"):
            continue
        if value == "holdout":
            if spec.data.test_ratio == 0 or _prepared(spec, base):
                raise UserError(f"{key} is 'holdout' but this data holds nothing out", where=where(key),
                                hint="set data.test_ratio, or point it at a folder")
        elif not (base / os.path.expanduser(value)).exists():
            raise UserError(f"{key}: '{value}' does not exist (looked in {base / value})", where=where(key))


def _prepared(spec: PipelineSpec, base: Path) -> bool:
    source = spec.data.source
    return source != "generated" and any((base / os.path.expanduser(source)).glob("*.rec"))


def search_plan(spec: PipelineSpec, job: JobSpec, prefix: str, on_this_machine: bool,
                metrics: frozenset[str] | None, where) -> SearchPlan | None:
    search = spec.train.search
    if search is None:
        return None
    problems = check_space(search)
    if problems:
        raise UserError("train.search.space: " + "; ".join(problems), where=where("train.search.space"))
    if metrics is not None and search.objective.metric not in metrics:
        import difflib
        close = difflib.get_close_matches(search.objective.metric, sorted(metrics), n=1)
        raise UserError(f"train.search.objective.metric: the job writes no metric '{search.objective.metric}'"
                        + (f" (did you mean '{close[0]}'?)" if close else ""),
                        where=where("train.search.objective.metric"), hint=f"its metrics: {', '.join(sorted(metrics))}")
    if search.algorithm == "grid" and grid_size(search) < search.trials:
        raise UserError(f"train.search: the grid has {grid_size(search)} points, fewer than trials: {search.trials}",
                        where=where("train.search.trials"), hint=f"set trials: {grid_size(search)} or add values")
    envs = dict(job.envs)
    asked = envs.get("OMP_NUM_THREADS", "")
    allocation = allocate(trials=search.trials, max_parallel=search.max_parallel,
                          cores=(os.cpu_count() or 1) if on_this_machine else None,
                          threads=int(asked) if asked.isdigit() and int(asked) > 0 else None,
                          nodes_per_trial=job.instance_count)
    base = dict(job.hyperparameters)
    out = []
    for number, assignment in enumerate(trials(search), 1):
        jobargs.check(Path(job.code_dir), assignment, where, section="train.search.space")   # every value drawn
        searched = tuple((k, job_arg(v)) for k, v in assignment.items())
        hyper = {**base, **dict(searched)}
        trial_envs = {**envs, **dict(allocation.thread_envs())}
        out.append(Trial(number, searched, replace(
            job, name=f"{job.name}-t{number:02d}", train_url=f"{prefix}/trials/t{number:02d}/",
            hyperparameters=tuple(hyper.items()), envs=tuple(trial_envs.items()))))
    stopping = search.early_stopping.model_dump() if search.early_stopping else None
    return SearchPlan(search.algorithm, tuple(out), allocation, search.objective.metric, search.objective.goal,
                      stopping)


def job_arg(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def workflow_steps(spec: PipelineSpec, steps: tuple, model, search: SearchPlan | None,
                   conditions: tuple[tuple[str, str], ...]) -> tuple:
    """The plan's steps with what workflows add: trials, conditions, evaluate, batch_predict."""
    Step = type(steps[0])
    when = dict(conditions)
    out = []
    for step in steps:
        details = step.details
        if step.name == "train" and search is not None:
            outputs = search.trials[0].job.train_url.rsplit("/t01/", 1)[0]
            details = _search_details(search) + (details[1], f"outputs to {outputs}/tNN/")
        if step.name == "import_model" and search is not None:
            details = (f"model {model.name} {model.version} from the best trial's output model/",)
        if step.name in when:
            details = (f"only when {when[step.name]}",) + details
        out.append(Step(step.name, step.title, details))
        if step.name == "train" and spec.evaluate:
            e = spec.evaluate
            out.append(Step("evaluate", "Evaluate", (
                f"the exported model over {'the held-out images' if e.images == 'holdout' else e.images}"
                + (f" (at most {e.limit})" if e.limit else "") + f" in {e.workers} worker process(es), no service",
                "metrics: accuracy, top5_accuracy, per class, confusion matrix")))
        if step.name == "predict" and spec.batch_predict:
            b = spec.batch_predict
            out.append(Step("batch_predict", "Batch predict", ((f"only when {b.when}",) if b.when else ()) + (
                f"every file of {'the held-out images' if b.input == 'holdout' else b.input}"
                + (f" (at most {b.limit})" if b.limit else "") + f" in {b.workers} worker process(es)",
                f"one JSON line per file to {(b.output or 'the run folder').rstrip('/')}/predictions.jsonl")))
    return tuple(out)


def _search_details(search: SearchPlan) -> tuple[str, ...]:
    stop = (f", median stopping after {search.early_stopping['min_epochs']} epochs" if search.early_stopping else "")
    lines = [f"{search.algorithm} search, {len(search.trials)} trials, {search.allocation.reason}; "
             f"best by {search.goal} {search.metric}{stop}"]
    lines += [f"trial {t.number:02d}: " + " ".join(f"--{k}={v}" for k, v in t.hyperparameters) for t in search.trials]
    return tuple(lines)


