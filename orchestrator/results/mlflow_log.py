"""MLflow tracking of a finished run, through MLflow's own client (no global state: the
tracking URI is passed to ``MlflowClient``, never set process-wide).

One MLflow run per orchestrator run, in the experiment of config.json's ``tracking.mlflow``
(default: the pipeline's name), named ``<pipeline>-<run id>`` (``-<job>`` from the notebook
SDK, one MLflow run per training job) and tagged
``orchestrator.run_id``. Logged: the settings and hyperparameters as parameters; per-epoch
curves as metrics with ``step`` = epoch (prefixed ``<worker>/`` or ``<trial>/`` for the
series beyond the job's own); final and prediction metrics; ``report.html``,
``report.json``, ``metrics.json`` and the model package as artefacts; a new version of the
registered model. Blocking; raises what MLflow raises (the caller reports it).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from .rundata import CURVE_KEYS, RunData, load

STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def log_run(run_dir: Path, settings) -> dict:
    """Log the run folder; returns {"tracking_uri", "experiment_id", "run_id", "model_name",
    "model_version"} (the last two None without a model package or registration)."""
    with _quiet("mlflow", "alembic"):   # "Creating initial MLflow database tables..." after the live view
        return _log_run(load(run_dir), settings)


def _log_run(run: RunData, settings) -> dict:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    pipeline = run.report.get("pipeline") or "pipeline"
    experiment_id = _experiment(client, settings.experiment or pipeline, settings.artifact_location)
    started = int(1000 * (run.report.get("started_at") or time.time()))
    run_name = "-".join(str(p) for p in (pipeline, run.run_id, run.report.get("job")) if p)   # job: notebook SDK
    mlrun = client.create_run(experiment_id, start_time=started, run_name=run_name,
                              tags={"orchestrator.run_id": run.run_id, "orchestrator.pipeline": pipeline,
                                    "orchestrator.backend": str(run.report.get("backend")),
                                    "orchestrator.status": str(run.report.get("status"))})
    rid = mlrun.info.run_id
    client.log_batch(rid, params=[Param(k, str(v)[:6000]) for k, v in params(run).items()],
                     metrics=[Metric(k, float(v), started, step) for k, v, step in metrics(run)],
                     tags=[RunTag("mlflow.note.content", _note(run))])
    for name in ("report.html", "report.json", "metrics.json", "verification_pairs.json", "predictions.jsonl"):
        if (run.run_dir / name).is_file():
            client.log_artifact(rid, str(run.run_dir / name))
    model_dir = run.run_dir / "model"
    name = version = None
    if model_dir.is_dir():
        client.log_artifacts(rid, str(model_dir), "model")
        if settings.register_model:
            name = settings.model_name or pipeline
            version = _register(client, name, f"{mlrun.info.artifact_uri}/model", rid, run)
    ended = run.report.get("ended_at")
    client.set_terminated(rid, STATUS.get(run.report.get("status"), "FAILED"),
                          end_time=int(1000 * ended) if ended else None)
    return {"tracking_uri": settings.tracking_uri, "experiment_id": experiment_id, "run_id": rid,
            "model_name": name, "model_version": version}


@contextmanager
def _quiet(*names: str):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def params(run: RunData) -> dict:
    job = run.plan.get("job") or {}
    service = ((run.plan.get("service") or {}).get("configs") or [{}])[0]
    out = {"task": run.task, "backend": run.report.get("backend"), "profile": run.report.get("profile"),
           "train_flavor": job.get("flavor"), "train_instance_count": job.get("instance_count"),
           "service_flavor": service.get("flavor"), "service_instance_count": service.get("instance_count")}
    out.update(run.hyperparameters)
    return {k: v for k, v in out.items() if v is not None}


def metrics(run: RunData) -> list[tuple[str, float, int]]:
    """(key, value, step): curves per epoch, then the final numbers at step 0."""
    out = []
    for series in run.series:
        prefix = "" if series.label == "job" else f"{series.label}/"
        for key in CURVE_KEYS:
            out += [(prefix + key, y, x - 1) for x, y in zip(*series.values(key))]
    out += [(k, v, 0) for k, v in run.final_metrics.items() if not (k in CURVE_KEYS or k == "epoch")]
    return out


def _experiment(client, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=_as_uri(artifact_location))


def _register(client, name: str, source: str, run_id: str, run: RunData) -> str:
    from mlflow.exceptions import MlflowException
    try:
        client.create_registered_model(name, description="registered by the MXNet orchestrator")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id,
                                          tags={"orchestrator.run_id": run.run_id, "framework": "MXNet"},
                                          description=f"model package of run {run.run_id}")
    return version.version


def _note(run: RunData) -> str:
    r = run.report
    acc = f", test accuracy {r['accuracy']:.1%}" if isinstance(r.get("accuracy"), float) else ""
    return f"Orchestrator run {run.run_id} ({r.get('status')}{acc}); report.html is among the artefacts."


def _as_uri(location: str | None) -> str | None:
    if location and location.startswith("/"):
        return Path(location).as_uri()
    return location
