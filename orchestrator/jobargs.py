"""A pipeline's ``train.hyperparameters`` checked against the job's declared arguments.

A job folder that holds an ``arguments.json`` (the project's jobs do; see
``jobs/common/arguments.py`` for the format) declares every argument its
parser accepts, so ``validate`` and ``plan`` can refuse a misspelt name, a wrong type or an
out-of-range value before anything runs, naming the file, line and key. A folder without a
declaration (a user's own script) accepts any name, and the plan says so.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from jobs.common import arguments as job_args

from .errors import UserError

DOC = "docs/jobs.md"
TRAIN_KEYS = ("code_dir", "boot_file", "inference_code", "flavor", "instance_count", "envs", "max_runtime")


def declaration(code_dir: Path) -> dict | None:
    """The job's declaration, None when it has none; UserError when it is malformed."""
    try:
        return job_args.load(str(code_dir))
    except job_args.DeclarationError as exc:
        raise UserError(str(exc), hint="fix the file: see the format in jobs/common/arguments.py")


def check(code_dir: Path, hyperparameters: dict, where: Callable[[str], str],
          section: str = "train.hyperparameters") -> str | None:
    """Raise UserError for the first hyperparameter the job does not accept; return a plan
    note when the job declares nothing (its hyperparameters are then not checked).
    ``section`` is the key path named in errors (a search's trials: ``train.search.space``)."""
    decl = declaration(code_dir)
    if decl is None:
        return (f"hyperparameters are not checked: {code_dir} has no {job_args.DECLARATION} declaring its "
                f"arguments (see {DOC})") if hyperparameters else None
    for name, value in hyperparameters.items():
        key = f"{section}.{name}"
        entry = job_args.find(decl, name)
        if entry is None:
            raise UserError(f"{key}: {_unknown(decl, name, code_dir)}", where=where(key),
                            hint=f"`python -m orchestrator args {code_dir}` lists the job's arguments (also {DOC})")
        if entry.get("platform"):
            raise UserError(f"{key}: --{entry['name']} is passed by the platform, not set as a hyperparameter",
                            where=where(key), hint="remove it: data_url and train_url come from the plan, "
                                                   "num_gpus from train.flavor")
        try:
            message = job_args.problem(entry, job_args.convert(entry, _text(value)))
        except ValueError as exc:
            message = str(exc)
        if message:
            raise UserError(f"{key}: {message}", where=where(key), hint=entry.get("help"))
    return None


def _unknown(decl: dict, name: str, code_dir: Path) -> str:
    text = f"the job in {Path(code_dir).name}/ has no argument '{name}'"
    if name in TRAIN_KEYS:
        return f"{text}: '{name}' is a key of train:, not a hyperparameter"
    close = difflib.get_close_matches(name.replace("-", "_"), job_args.all_names(decl), n=1, cutoff=0.6)
    return f"{text} (did you mean '{close[0]}'?)" if close else text


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
