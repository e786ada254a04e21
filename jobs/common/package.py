"""The model package a job leaves in ``train_url/model/``: the inference files found,
the folder built aside and swapped in whole, and atomic JSON files."""
import json
import os
import shutil
import tempfile

from jobs.common.swap import swap_in

INFERENCE_FILES = ("customize_service.py", "config.json")


class ExportError(ValueError):
    """The inference files cannot be found (one-line message)."""


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def find_inference_dir(explicit, code_dir, task):
    """Folder holding customize_service.py and config.json (``explicit``, else next to
    train.py, else the repository's inference/<task>), or ExportError."""
    candidates = [explicit] if explicit else [
        code_dir, os.path.join(code_dir, "..", "..", "inference", task)]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in INFERENCE_FILES):
            return os.path.abspath(folder)
    where = explicit or " or ".join(os.path.abspath(c) for c in candidates)
    raise ExportError(f"customize_service.py and config.json not found in {where}; copy "
                      f"them next to train.py, pass --inference_dir, or --export_model=False")


def write_package(train_url, inference_dir, fill):
    """Build train_url/model/ in a temporary folder (``fill(folder)`` writes the model's
    own files, the inference files are added) and rename it into place, replacing an older
    package whole; returns its path."""
    final = os.path.join(train_url, "model")
    tmp = tempfile.mkdtemp(prefix=".model-tmp-", dir=train_url)
    try:
        fill(tmp)
        for name in INFERENCE_FILES:
            shutil.copyfile(os.path.join(inference_dir, name), os.path.join(tmp, name))
        swap_in(tmp, final)     # the old package stays until the new one is in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
