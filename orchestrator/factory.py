"""Builds the objects a run needs from files: config, spec, plan, backend, ledger.

The one place that knows where things live by default, so the CLI, ``Pipeline.from_yaml``
and ``cleanup`` agree: ``config.json`` is ``--config``, else ``$ORCHESTRATOR_CONFIG``, else
``config.json`` beside the pipeline file, else in the current folder, else the user-level
``$ORCHESTRATOR_HOME/config.json`` (default ``~/.orchestrator/config.json``), else built-in
defaults: a ``local`` profile rooted at ``$ORCHESTRATOR_HOME`` itself. So a notebook's
``Session()`` and the CLI run from folders without a config.json share one ledger and store.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from .backends.base import Backend
from .errors import UserError
from .ledger import Ledger
from .params import parse_overrides
from .plan import Plan, build_plan
from .spec import ConfigSpec, LocalProfile, load_config, load_pipeline_params


def find_config(explicit: Path | None, pipeline_path: Path | None = None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise UserError(f"config file not found: {explicit}")
        return explicit
    if os.environ.get("ORCHESTRATOR_CONFIG"):
        return find_config(Path(os.environ["ORCHESTRATOR_CONFIG"]))
    for folder in ([pipeline_path.resolve().parent] if pipeline_path else []) + [Path.cwd(), user_home()]:
        if (folder / "config.json").is_file():
            return folder / "config.json"
    return None


def user_home() -> Path:
    """The user-level folder: ``$ORCHESTRATOR_HOME``, else ``~/.orchestrator``."""
    return Path(os.path.expanduser(os.environ.get("ORCHESTRATOR_HOME") or "~/.orchestrator")).resolve()


def config_and_dir(config_path: Path | None, pipeline_path: Path | None = None) -> tuple[ConfigSpec, Path]:
    path = find_config(config_path, pipeline_path)
    if path is None:   # the user-level store, shared by every folder without a config.json
        home = user_home()
        return ConfigSpec(profiles={"local": LocalProfile(backend="local", root=str(home))}), home
    return load_config(path), path.resolve().parent


def make_backend(config: ConfigSpec, config_dir: Path, profile: str | None) -> Backend:
    name, prof = config.profile(profile)
    root = (config_dir / os.path.expanduser(prof.root)).resolve()
    if not isinstance(prof, LocalProfile):
        from .backends.modelarts.backend import from_profile   # credentials come from the environment
        return from_profile(name, prof, root)
    from .backends.local.backend import LocalBackend
    return LocalBackend(root, prof.predictor_host)


def ledger_for(backend: Backend) -> Ledger:
    return Ledger(backend.root / "ledger.sqlite")


def load_plan(pipeline_path: Path, config_path: Path | None, profile: str | None,
              run_id: str | None = None, strict: bool = False, keep: bool = False,
              params: dict | list | None = None, no_cache: bool = False) -> tuple[Plan, ConfigSpec, Path]:
    """``params``: parameter values, ``{"lr": 0.05}`` or ``["lr=0.05"]`` (``run -p``);
    ``no_cache``: no step reuses an earlier run's output."""
    overrides = parse_overrides(params) if isinstance(params, list) else params
    spec, resolved = load_pipeline_params(pipeline_path, overrides)
    config, config_dir = config_and_dir(config_path, pipeline_path)
    plan = build_plan(spec, config, spec_path=pipeline_path, config_dir=config_dir, profile=profile, run_id=run_id,
                      strict=strict, keep=keep, params=resolved, no_cache=no_cache)
    return plan, config, config_dir


def open_run(pipeline_path: Path, config_path: Path | None, profile: str | None, resume: str | None = None,
             strict: bool = False, keep: bool = False, params: dict | list | None = None,
             no_cache: bool = False) -> tuple[Plan, Backend, Ledger, ConfigSpec]:
    """The plan, backend and ledger of a new run, or of continuing run ``resume`` (an id or
    unique prefix); ``Pipeline.from_yaml`` puts them together."""
    plan, config, config_dir = load_plan(pipeline_path, config_path, profile, strict=strict, keep=keep,
                                         params=params, no_cache=no_cache)
    config = resolve_tracking(config, config_dir)
    backend = make_backend(config, config_dir, plan.profile)
    backend.preflight((plan.bucket,))      # cloud: bad credentials or a missing bucket fail now, not mid-run
    ledger = ledger_for(backend)
    if resume:
        run = resumable_run(ledger, resume, plan.pipeline)
        plan, _, _ = load_plan(pipeline_path, config_path, profile, run_id=run.run_id, keep=keep, params=params,
                               no_cache=no_cache)
    return plan, backend, ledger, config


def resolve_tracking(config: ConfigSpec, config_dir: Path) -> ConfigSpec:
    """config.json with the paths of its tracking section made absolute; a UserError now,
    not after the run, when it asks for MLflow and MLflow is not installed."""
    if config.tracking is None or config.tracking.mlflow is None:
        return config
    if importlib.util.find_spec("mlflow") is None:
        raise UserError("config.json asks for MLflow tracking (tracking.mlflow) but MLflow is not installed",
                        hint="pip install 'mxnet-orchestrator[mlflow]', or remove the tracking section")
    tracking = config.tracking.model_copy(update={"mlflow": config.tracking.mlflow.resolved(config_dir)})
    return config.model_copy(update={"tracking": tracking})


def resumable_run(ledger: Ledger, prefix: str, pipeline: str):
    from .reconcile import owner_alive
    run = ledger.find_run(prefix)
    if run.pipeline != pipeline:
        raise UserError(f"run {run.run_id} belongs to pipeline '{run.pipeline}', not '{pipeline}'",
                        hint=f"resume it with its own file: {run.spec_path}")
    if run.status == "running" and owner_alive(run):
        raise UserError(f"run {run.run_id} is still running (process {run.owner_pid})",
                        hint="wait for it, or stop it with Ctrl-C / kill, then resume")
    return run


@contextmanager
def spec_file(spec: dict, base_dir: Path):
    """Keyword-style pipeline data (notebooks) as a temporary YAML file in ``base_dir``, so
    errors name keys and lines exactly as they would for a file; removed on exit."""
    base_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pipeline-", suffix=".yaml", dir=base_dir)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(spec, fh, sort_keys=False)
    try:
        yield Path(tmp)
    finally:
        os.unlink(tmp)
