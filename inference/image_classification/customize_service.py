"""ModelArts MXNet inference service for the image classifier of jobs/image_classification.

The model folder (``model_path``) is what train.py exports: ``<prefix>-symbol.json``,
``<prefix>-0000.params``, ``labels.txt``, ``preprocess.json`` and this file.

Request -> response:

* ``_preprocess(data)``: ``data`` is ``{"images": {"name.jpg": file-like}}`` (ModelArts
  multipart); the first file is used.  Values may also be raw bytes, a base64 string, or a
  list of bytes (legacy runtime).  Any image OpenCV or Pillow can read (JPEG, PNG, BMP,
  grayscale, RGBA, ...) becomes RGB -- decoded like ``jobs.data.im2rec`` (alpha dropped,
  gray copied to three channels) -- then its shorter edge is resized to
  ``preprocess.json["resize"]`` with the same interpolation as the packed training data,
  it is centre-cropped to ``image_shape`` exactly like ``ImageRecordIter`` and returned as a
  1xCxHxW float32 array of raw 0-255 pixels.  Bad input raises ``ValueError``.
* ``_inference``: forward pass of the checkpoint (inference only) on an NxCxHxW batch;
  returns the Nxclasses probabilities.
* ``_postprocess``: ``{"predicted_label": "<label>", "scores": [["label", prob], ...]}``,
  the top min(5, classes) of one request's 1xclasses (or classes) probabilities, sorted by
  probability, highest first.

``supports_batching``: the local predictor may run several requests' ``_preprocess``
outputs, concatenated on the first axis, through ONE ``_inference`` and hand each
``_postprocess`` its own row; ModelArts and MMS call ``inference(data)`` once per request.
"""
import base64
import binascii
import glob
import io
import json
import os
import re
import threading
import warnings

import cv2
import mxnet as mx
import numpy as np
from mms.model_service.mxnet_model_service import MXNetBaseService

MAX_PIXELS = 40_000_000  # a 7,300 x 5,500 photo; decoded to RGB it takes 120 MB
MAX_ROWS = 4  # images per forward pass: past 4 the CPU cost per image hardly falls

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR,
                  "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def _find_checkpoint(model_path, settings):
    """(prefix path, epoch) of the model files in model_path."""
    if settings.get("prefix"):
        return os.path.join(model_path, settings["prefix"]), int(settings.get("epoch", 0))
    symbols = sorted(glob.glob(os.path.join(model_path, "*-symbol.json")))
    if not symbols:
        raise RuntimeError(f"no *-symbol.json in model folder {model_path}")
    prefix = symbols[0][:-len("-symbol.json")]
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d{4})\.params$")
    matches = [pattern.match(f) for f in os.listdir(model_path)]  # no walrus: python3.7 runtime
    epochs = [int(m.group(1)) for m in matches if m]
    if not epochs:
        raise RuntimeError(f"no {os.path.basename(prefix)}-NNNN.params in {model_path}")
    return prefix, max(epochs)


def _image_bytes(data):
    """Bytes of the first image in a request, or ValueError."""
    value = data
    if isinstance(value, dict):
        if not value:
            raise ValueError("the request holds no image: send a file in the 'images' field")
        value = value["images"] if "images" in value else next(iter(value.values()))
        if isinstance(value, dict):
            value = next(iter(value.values()), None)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if hasattr(value, "read"):
        if hasattr(value, "seek"):
            value.seek(0)
        value = value.read()
    if isinstance(value, str):
        try:
            value = base64.b64decode(value.split(",")[-1], validate=True)  # data: URLs too
        except (binascii.Error, ValueError):
            raise ValueError("the image must be a file upload or base64 text") from None
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"the request holds no image bytes (got {type(value).__name__}): "
                         f"send a file in the 'images' field")
    return value


def check_pixels(raw):
    """ValueError (answered 400) when the image's header announces more than MAX_PIXELS:
    a PNG of a few KB can decode to gigabytes, so the size is read before decoding."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # DecompressionBombWarning
            with Image.open(io.BytesIO(raw)) as pil:
                width, height = pil.size
    except Image.DecompressionBombError:
        width, height = 2 * Image.MAX_IMAGE_PIXELS + 1, 1
    except Exception:  # Pillow cannot read this header: the decoder says what is wrong
        return
    if width * height > MAX_PIXELS:
        raise ValueError(f"the image has {width * height:,} pixels ({width} x {height}); at most {MAX_PIXELS:,} "
                         "are accepted: send a smaller image")


def decode_rgb(raw):
    """HxWx3 uint8 RGB image from encoded bytes, or ValueError."""
    check_pixels(raw)
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)  # BGR, like im2rec
    if img is not None:
        return img[:, :, ::-1]
    try:  # formats this OpenCV build lacks (GIF, some TIFF/WebP variants)
        from PIL import Image
        with Image.open(io.BytesIO(raw)) as pil:
            return np.asarray(pil.convert("RGB"))
    except Exception:  # Pillow raises many types for bad data; all mean "not an image"
        raise ValueError(f"cannot decode the uploaded file ({len(raw)} bytes) as an image; "
                         f"send a JPEG, PNG or BMP file") from None


def resize_shorter(img, size, interpolation="area/linear"):
    """Shorter edge to `size` (floor for the other edge), as jobs.data.im2rec packs it."""
    h, w = img.shape[:2]
    if size <= 0 or min(h, w) == size:
        return img
    new_w, new_h = (max(1, w * size // h), size) if h < w else (size, max(1, h * size // w))
    names = [part.strip().split(" ")[0] for part in interpolation.split("/")] + ["", ""]
    if size < min(h, w):
        interp = INTERPOLATIONS.get(names[0], cv2.INTER_AREA)
    else:
        interp = INTERPOLATIONS.get(names[1], cv2.INTER_LINEAR)
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def center_crop(img, height, width):
    """Centre crop like ImageRecordIter without rand_crop (offsets rounded down)."""
    h, w = img.shape[:2]
    if h < height or w < width:  # only for odd settings: enlarge so the crop fits
        scale = max(height / h, width / w)
        img = cv2.resize(img, (max(width, round(w * scale)), max(height, round(h * scale))),
                         interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
    y, x = (h - height) // 2, (w - width) // 2
    return img[y:y + height, x:x + width]


def forward_rows(rows):
    """Rows of the next forward pass of a batch: the largest power of two <= rows, at most
    MAX_ROWS.  Each size is an executor with its own copy of the fused conv+BN weights and its
    own activations (about 120 MB more for ResNet-50 at 2 images, 140 MB at 4), so a batch
    of 7 runs as 4 + 2 + 1 rather than adding sizes."""
    return min(MAX_ROWS, 1 << (rows.bit_length() - 1))


class ImageClassificationService(MXNetBaseService):
    """Loads everything itself from model_path; uses only model_name/model_path/ctx of the base."""

    supports_batching = True

    def __init__(self, model_name, model_path):
        super().__init__(model_name, model_path)
        with open(os.path.join(model_path, "preprocess.json")) as f:
            self.settings = json.load(f)
        with open(os.path.join(model_path, "labels.txt")) as f:
            self.labels = [line.strip() for line in f if line.strip()]
        self.image_shape = tuple(self.settings["image_shape"])
        prefix, epoch = _find_checkpoint(model_path, self.settings)
        symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
        ctx = getattr(self, "ctx", None) or mx.cpu()
        data_name = self.settings.get("data_name", "data")
        self.module = mx.mod.Module(symbol, data_names=[data_name], label_names=None,
                                    context=ctx)
        self.module.bind(data_shapes=[(data_name, (1,) + self.image_shape)],
                         for_training=False)
        missing = [n for n in symbol.list_arguments()
                   if n not in arg_params and n != data_name and not n.endswith("label")]
        if missing:
            raise RuntimeError(f"{prefix}-{epoch:04d}.params lacks {missing[:3]}: corrupt export")
        # allow_missing only covers the unused softmax_label input.
        self.module.set_params(arg_params, aux_params, allow_missing=True)
        self.data_name = data_name
        # One executor per batch size of forward_rows, made once from the batch-1 one by
        # reshape (sharing its parameters): no bind or reshape per request, as Module.forward
        # would do at each change of batch size.
        self.executors = {1: self.module._exec_group.execs[0]}
        self.lock = threading.Lock()  # a bound Module is not thread-safe

    def _preprocess(self, data):
        rgb = decode_rgb(_image_bytes(data))
        img = resize_shorter(rgb, int(self.settings.get("resize", self.image_shape[1])),
                             self.settings.get("resize_interpolation", "area/linear"))
        img = center_crop(img, self.image_shape[1], self.image_shape[2])
        chw = np.transpose(img, (2, 0, 1)).astype(np.float32)
        chw = (chw - np.float32(self.settings.get("mean", [0, 0, 0])).reshape(3, 1, 1)) \
            * np.float32(self.settings.get("scale", 1.0))
        return chw[None]

    def _inference(self, data):
        if isinstance(data, (list, tuple)):  # the batching predictor passes [the concatenation]
            data = data[0]
        batch = data if isinstance(data, mx.nd.NDArray) else np.asarray(data, np.float32)
        outputs, start = [], 0
        with self.lock:
            while start < batch.shape[0]:
                n = forward_rows(batch.shape[0] - start)
                executor = self._executor(n)
                executor.forward(is_train=False, **{self.data_name: batch[start:start + n]})
                outputs.append(executor.outputs[0].asnumpy())
                start += n
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _executor(self, n):
        """The executor for a batch of n (made on first use; call with the lock held)."""
        executor = self.executors.get(n)
        if executor is None:
            executor = self.executors[1].reshape(partial_shaping=True, allow_up_sizing=True,
                                                 **{self.data_name: (n,) + self.image_shape})
            self.executors[n] = executor
        return executor

    def _postprocess(self, data):
        probs = np.asarray(data, dtype=np.float64).reshape(-1)
        top = np.argsort(-probs, kind="stable")[:min(5, len(self.labels))]
        return {"predicted_label": self.labels[top[0]],
                "scores": [[self.labels[i], round(float(probs[i]), 6)] for i in top]}
