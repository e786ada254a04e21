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

from jobs.common.package import ExportError, write_json_atomic, write_package  # noqa: F401 (ExportError: API)
from jobs.common.package import find_inference_dir as _find

TASK = "image_classification"


def find_inference_dir(explicit, code_dir):
    """Folder that holds customize_service.py and config.json, or raise ExportError."""
    return _find(explicit, code_dir, TASK)


def export(train_url, prefix, symbol, arg_params, aux_params, labels, preprocess,
           inference_dir):
    """Write train_url/model/ (atomically); return its path."""
    import mxnet as mx

    def fill(tmp):
        # What mx.model.save_checkpoint writes, minus its log line naming the temp folder.
        symbol.save(os.path.join(tmp, prefix + "-symbol.json"))
        params = {"arg:" + k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
        params.update({"aux:" + k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
        mx.nd.save(os.path.join(tmp, prefix + "-0000.params"), params)
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("".join(label + "\n" for label in labels))
        write_json_atomic(os.path.join(tmp, "preprocess.json"),
                          dict(preprocess, prefix=prefix, epoch=0, num_classes=len(labels)))

    return write_package(train_url, inference_dir, fill)
