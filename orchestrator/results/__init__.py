"""Looking at results: ``report.html`` of a run (``page``), ``compare`` of several runs and
MLflow tracking (``mlflow_log``). matplotlib and mlflow are imported only here, when a
report is written, never on the CLI's start path."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable


def pictures(run_dir: str | Path) -> dict[str, bytes]:
    """The plots of a run folder as PNG bytes by name (``curves``, ``confusion``, ``roc``,
    ...), e.g. for ``IPython.display.Image`` in a notebook; see ``page.pictures``."""
    from .page import pictures as of_run
    from .rundata import load
    return of_run(load(run_dir))


def publish(run_dir: Path, tracking, problem: Callable[[str], None]) -> dict | None:
    """Write ``report.html`` and, when ``tracking`` (config.json's section) names MLflow, log
    the run there. Returns where MLflow has it, or None. Never raises: each failure is
    passed to ``problem`` with its traceback, since the run itself is already over."""
    try:
        from .page import write
        write(run_dir)
    except Exception as exc:   # a report bug must not turn a good run into a failed one
        problem(f"report.html could not be written: {exc!r}\n{traceback.format_exc()}")
    if tracking is None or tracking.mlflow is None:
        return None
    try:
        from .mlflow_log import log_run
        return log_run(run_dir, tracking.mlflow)
    except Exception as exc:
        problem(f"MLflow logging failed: {exc!r}\n{traceback.format_exc()}")
        return None
