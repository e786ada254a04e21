"""Export a trained classifier as a ModelArts model package: ``<train_url>/model/``.

Contents (the folder ModelArts' model import points at)::

    model/<prefix>-symbol.json     network with its SoftmaxOutput (outputs probabilities)
    model/<prefix>-0000.params     final weights (arg:/aux: keys)
    model/labels.txt               line i = name of class i
    model/preprocess.json          how an image must be prepared (see below)
    model/customize_service.py     copied from the inference folder
    model/config.json              copied from the inference folder

``preprocess.json``: {"image_shape": [3, H, W], "resize": shorter edge before the centre
crop, "resize_interpolation": "<shrink>/<enlarge>" (cv2 names), "crop": "center",
"color": "RGB", "layout": "NCHW", "scale": 1.0, "mean": [0, 0, 0], "data_name": "data",
"prefix": ..., "epoch": 0, "num_classes": ...}.  Pixels stay raw 0-255 (the network's
``bn_data`` layer normalises them).

The inference files are looked up in this order: ``--inference_dir``; next to train.py
(ModelArts uploads only the code folder, so ship them there); the repository layout
``<train.py dir>/../../inference/image_classification``.  The package is built in a
temporary folder and renamed into place, replacing an older ``model/`` whole.
"""
import os
import shutil
import tempfile

from train_metrics import write_json_atomic

INFERENCE_FILES = ("customize_service.py", "config.json")


class ExportError(ValueError):
    """The inference files cannot be found (one-line message)."""


def find_inference_dir(explicit, code_dir):
    """Folder that holds customize_service.py and config.json, or raise ExportError."""
    candidates = [explicit] if explicit else [
        code_dir, os.path.join(code_dir, "..", "..", "inference", "image_classification")]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in INFERENCE_FILES):
            return os.path.abspath(folder)
    where = explicit or " or ".join(os.path.abspath(c) for c in candidates)
    raise ExportError(f"customize_service.py and config.json not found in {where}; copy "
                      f"them next to train.py, pass --inference_dir, or --export_model=False")


def export(train_url, prefix, symbol, arg_params, aux_params, labels, preprocess,
           inference_dir):
    """Write train_url/model/ (atomically); return its path."""
    import mxnet as mx
    final = os.path.join(train_url, "model")
    tmp = tempfile.mkdtemp(prefix=".model-tmp-", dir=train_url)
    try:
        # What mx.model.save_checkpoint writes, minus its log line naming the temp folder.
        symbol.save(os.path.join(tmp, prefix + "-symbol.json"))
        params = {"arg:" + k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
        params.update({"aux:" + k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
        mx.nd.save(os.path.join(tmp, prefix + "-0000.params"), params)
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("".join(label + "\n" for label in labels))
        write_json_atomic(os.path.join(tmp, "preprocess.json"),
                          dict(preprocess, prefix=prefix, epoch=0, num_classes=len(labels)))
        for name in INFERENCE_FILES:
            shutil.copyfile(os.path.join(inference_dir, name), os.path.join(tmp, name))
        old = None
        if os.path.exists(final):  # keep the old package until the new one is in place
            old = final + f".old-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
