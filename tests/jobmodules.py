"""Import a job's modules in tests the way its train.py does (bare sibling names such as
``model_export``), without leaving the job folder on ``sys.path`` or those bare names in
``sys.modules``: both jobs define ``model_export`` and ``train_args``, and a test must get
the module of the job it names, whatever ran before it."""

import importlib
import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parent.parent / "jobs"


def job_modules(job: str, *names: str):
    """The modules ``names`` of ``jobs/<job>/`` (one, or a tuple of several)."""
    folder = JOBS / job
    siblings = {p.stem for p in folder.glob("*.py")}
    hidden = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        modules = tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(folder))
        for name in siblings:
            sys.modules.pop(name, None)
        sys.modules.update(hidden)
    return modules[0] if len(modules) == 1 else modules
