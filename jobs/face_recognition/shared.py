"""Modules this job shares with the rest of the repository, found wherever they are.

``face_rec_reader`` (FaceRec) and ``face_bin`` (load_bin) live in ``jobs/data/``,
``storage`` (obs:// data_url/train_url through moxing) and ``job_common`` (argument
parsing, logging, context, atomic files, the package swap) and ``job_args`` (the arguments.json
declaration) in ``jobs/image_classification/``.
They are imported from the ``jobs`` package when it is importable (installed, or this
folder still inside the repository) and otherwise from copies next to train.py: upload
those five files with this folder when ModelArts gets only the code folder.
"""
import importlib
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = {"face_rec_reader": "jobs.data", "face_bin": "jobs.data",
            "storage": "jobs.image_classification", "job_common": "jobs.image_classification",
            "job_args": "jobs.image_classification"}


class SharedModuleError(ImportError):
    """A shared module is nowhere to be found (one-line message)."""


def load(name):
    """The shared module `name` (a key of PACKAGES), or SharedModuleError saying what to copy."""
    qualified = f"{PACKAGES[name]}.{name}"
    if importlib.util.find_spec("jobs") is None and os.path.isdir(os.path.join(REPO, "jobs")):
        sys.path.append(REPO)
    for candidate in (qualified, name):
        try:
            return importlib.import_module(candidate)
        except ModuleNotFoundError as e:
            if e.name not in (candidate, "jobs", PACKAGES[name]):
                raise  # the module exists but one of its own imports is missing
    raise SharedModuleError(f"{name}.py not found: copy {qualified.replace('.', '/')}.py next to "
                      f"train.py or install this repository")
