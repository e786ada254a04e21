"""Model packages and request bodies for benchmarks/serve.py.

* ``build_classifier(dest, num_layers)``: a ModelArts package of a ResNet (MXNet symbol API,
  ``jobs/image_classification/resnet.py``), 224x224, 1000 classes, random weights, with the
  project's ``inference/image_classification/customize_service.py`` and ``config.json``.
* ``build_echo(dest)``: a package whose service answers ``{"bytes": n}`` without decoding
  (what is left is the HTTP layer, the dispatch to a worker and back).
* ``mms_folder(package, store, name)``: the same package as an MMS 1.x model folder
  (``MAR-INF/MANIFEST.json`` naming ``mms_handler:handle``, the adapter of
  ``_serve_mms_handler.py``); the files are hard links or copies, nothing is changed.
* ``image_set(folder, seeds)``: photo-like JPEGs and an im2rec-style ``test.lst`` naming them
  (calibration and held-out images of the int8 conversion).
* ``multipart_body(path, field, filename, content)``: a ``multipart/form-data`` body
  written to ``path``; returns its Content-Type.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFERENCE = os.path.join(ROOT, "inference", "image_classification")
BOUNDARY = "bench7d3f0c2a9e51"

ECHO_SERVICE = '''"""Benchmark echo service: reports the size of the upload, decodes nothing."""
from mms.model_service.mxnet_model_service import MXNetBaseService


class EchoService(MXNetBaseService):
    def _preprocess(self, data):
        return sum(len(f.read()) for f in data["images"].values())

    def _inference(self, data):
        return data

    def _postprocess(self, data):
        return {"bytes": data}
'''


def build_classifier(dest: str, num_layers: int, classes: int = 1000) -> str:
    import mxnet as mx

    from jobs.image_classification.resnet import get_symbol

    os.makedirs(dest)
    symbol = get_symbol(classes, num_layers, (3, 224, 224))
    module = mx.mod.Module(symbol, data_names=["data"], label_names=["softmax_label"])
    module.bind(data_shapes=[("data", (1, 3, 224, 224))], label_shapes=[("softmax_label", (1,))], for_training=False)
    mx.random.seed(0)
    module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    args, aux = module.get_params()
    args["fc1_weight"] *= 0.01  # random features give huge logits: keep the softmax unsaturated so top-1 varies
    symbol.save(os.path.join(dest, "resnet-symbol.json"))
    params = {**{"arg:" + k: v for k, v in args.items()}, **{"aux:" + k: v for k, v in aux.items()}}
    mx.nd.save(os.path.join(dest, "resnet-0000.params"), params)
    with open(os.path.join(dest, "labels.txt"), "w") as fh:
        fh.write("".join(f"class_{i}\n" for i in range(classes)))
    with open(os.path.join(dest, "preprocess.json"), "w") as fh:
        json.dump({"image_shape": [3, 224, 224], "resize": 224, "resize_interpolation": "area/linear",
                   "crop": "center", "color": "RGB", "layout": "NCHW", "scale": 1.0, "mean": [0, 0, 0],
                   "data_name": "data", "prefix": "resnet", "epoch": 0, "num_classes": classes}, fh)
    for name in ("customize_service.py", "config.json"):
        shutil.copyfile(os.path.join(INFERENCE, name), os.path.join(dest, name))
    return dest


def build_echo(dest: str) -> str:
    os.makedirs(dest)
    with open(os.path.join(dest, "customize_service.py"), "w") as fh:
        fh.write(ECHO_SERVICE)
    shutil.copyfile(os.path.join(INFERENCE, "config.json"), os.path.join(dest, "config.json"))
    return dest


def mms_folder(package: str, store: str, name: str) -> str:
    folder = os.path.join(store, name)
    shutil.copytree(package, folder, copy_function=_link_or_copy)
    shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_serve_mms_handler.py"),
                    os.path.join(folder, "mms_handler.py"))
    os.makedirs(os.path.join(folder, "MAR-INF"))
    with open(os.path.join(folder, "MAR-INF", "MANIFEST.json"), "w") as fh:
        json.dump({"specificationVersion": "1.0", "implementationVersion": "1.0", "runtime": "python",
                   "model": {"modelName": name, "handler": "mms_handler:handle"}}, fh)
    return folder


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def sample_jpeg(width: int = 640, height: int = 480, seed: int = 7) -> bytes:
    """A photo-like JPEG (smooth colour fields plus noise), about 115 KB, same every run;
    other seeds give other images (calibration and held-out sets of the int8 conversion)."""
    import cv2

    rng = np.random.RandomState(seed)
    fx, fy, phase = (57, 43, 0.0) if seed == 7 else (rng.uniform(15, 90), rng.uniform(15, 90), rng.uniform(0, 6))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / fx + c + phase) * np.cos(y / fy - c) for c in (0.0, 1.0, 2.0)], axis=-1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes()


def multipart_body(path: str, field: str, filename: str, content: bytes) -> str:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    with open(path, "wb") as fh:
        fh.write(head + content + f"\r\n--{BOUNDARY}--\r\n".encode())
    return f"multipart/form-data; boundary={BOUNDARY}"


def image_set(folder: str, seeds) -> str:
    """JPEGs ``<seed>.jpg`` of ``sample_jpeg`` in ``folder`` and ``test.lst`` naming them; returns the .lst path."""
    os.makedirs(folder)
    lines = []
    for i, seed in enumerate(seeds):
        with open(os.path.join(folder, f"{seed}.jpg"), "wb") as fh:
            fh.write(sample_jpeg(seed=seed))
        lines.append(f"{i}\t0\t{seed}.jpg\n")
    with open(os.path.join(folder, "test.lst"), "w") as fh:
        fh.write("".join(lines))
    return os.path.join(folder, "test.lst")
