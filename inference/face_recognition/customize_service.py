"""ModelArts MXNet inference service for the face models of jobs/face_recognition.

The model folder (``model_path``) is what train.py exports: ``model-symbol.json`` and
``model-0000.params`` (the embedding network, input ``data`` N x 3 x H x W RGB 0..255),
``face.json`` (image size, same-person ``threshold`` as a cosine), optionally
``gallery.npz`` (one normalised embedding per known identity + labels) and this file.

Requests (multipart; JSON with base64 strings in the same fields works too):

* one image (field ``images``) -> ``{"embedding": [...]}`` (L2-normalised, flip-summed
  like the verification), plus with a gallery ``"predicted_label"`` (the identity of
  highest cosine) and ``"scores": [[label, cosine], ...]`` (top min(5, identities),
  highest first);
* two images (two files in ``images``, or ``images`` + ``images2``) ->
  ``{"same_person": cos >= threshold, "similarity": cos, "threshold": threshold}``.

Any image OpenCV or Pillow reads (JPEG, PNG, BMP; grayscale, RGBA) becomes RGB and is
resized to the model's size (an aligned face crop is expected).  Bad input (no image,
more than two, undecodable bytes) raises ``ValueError`` (HTTP 400 in the predictor).

Stages: ``_preprocess`` returns 2k x 3 x H x W (each of the k faces, then its mirror);
``_inference`` returns 2k x D, row i the face embedding of input row i (the normalised sum
of the face's and its mirror's outputs, so both rows of a face hold the same embedding);
``_postprocess`` reads every second row.  One row out per row in, so the local predictor
may batch requests (``supports_batching``: several requests' rows concatenated through ONE
``_inference``); ModelArts and MMS call ``inference(data)`` once per request.
"""
import base64
import binascii
import io
import json
import os
import threading
import warnings

import cv2
import mxnet as mx
import numpy as np
from mms.model_service.mxnet_model_service import MXNetBaseService

MAX_PIXELS = 40_000_000  # a 7,300 x 5,500 photo; decoded to RGB it takes 120 MB

DEFAULT_THRESHOLD = 0.38
TOP_K = 5
MAX_ROWS = 4  # rows (2 faces) per forward pass: the CPU cost per face does not fall with more


def _payload_bytes(value):
    """Encoded image bytes of one request value (file-like, bytes or base64 text)."""
    if hasattr(value, "read"):
        if hasattr(value, "seek"):
            value.seek(0)
        value = value.read()
    if isinstance(value, str):
        try:
            value = base64.b64decode(value.split(",")[-1], validate=True)  # data: URLs too
        except (binascii.Error, ValueError):
            raise ValueError("an image must be a file upload or base64 text") from None
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"the request holds no image bytes (got {type(value).__name__}): "
                         f"send files in the 'images' field")
    return value


def request_images(data):
    """Encoded images of a request, in order: field ``images`` first, then ``images2``..."""
    if isinstance(data, (list, tuple)):  # legacy runtime: one bytes value per file
        values = list(data)
    elif isinstance(data, dict):
        fields = sorted((k for k in data if str(k).startswith("images")),
                        key=lambda k: (len(str(k)), str(k)))
        values = []
        for field in fields:
            value = data[field]
            if isinstance(value, dict):
                values.extend(value.values())
            elif isinstance(value, (list, tuple)):
                values.extend(value)
            else:
                values.append(value)
    else:
        values = [data]
    if not values:
        raise ValueError("the request holds no image: send one face (embedding) or two "
                         "(comparison) in the 'images' field")
    if len(values) > 2:
        raise ValueError(f"the request holds {len(values)} images: send one face "
                         f"(embedding) or two (comparison)")
    return [_payload_bytes(v) for v in values]


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
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)  # gray/alpha -> BGR
    if img is not None:
        return img[:, :, ::-1]
    try:  # formats this OpenCV build lacks (GIF, some TIFF/WebP variants)
        from PIL import Image
        with Image.open(io.BytesIO(raw)) as pil:
            return np.asarray(pil.convert("RGB"))
    except Exception:  # Pillow raises many types for bad data; all mean "not an image"
        raise ValueError(f"cannot decode the uploaded file ({len(raw)} bytes) as an image; "
                         f"send a JPEG, PNG or BMP file") from None


def forward_rows(rows):
    """Rows of the next forward pass (rows is even): the largest power of two <= rows, at most
    MAX_ROWS.  Each size is an executor with its own copy of the fused conv+BN weights and its
    own activations (about 300 MB more for IResNet-50 at 4 rows), so 3 faces run as 4 + 2
    rows rather than adding sizes."""
    return min(MAX_ROWS, 1 << (rows.bit_length() - 1))


class FaceRecognitionService(MXNetBaseService):
    """Embeds, identifies and compares faces; loads everything itself from model_path."""

    supports_batching = True

    def __init__(self, model_name, model_path):
        super().__init__(model_name, model_path)
        with open(os.path.join(model_path, "face.json")) as f:
            self.settings = json.load(f)
        self.image_size = tuple(self.settings["image_size"])
        self.threshold = float(self.settings.get("threshold", DEFAULT_THRESHOLD))
        prefix = os.path.join(model_path, self.settings.get("prefix", "model"))
        symbol, arg_params, aux_params = mx.model.load_checkpoint(
            prefix, int(self.settings.get("epoch", 0)))
        data_name = self.settings.get("data_name", "data")
        ctx = getattr(self, "ctx", None) or mx.cpu()
        self.module = mx.mod.Module(symbol, data_names=[data_name], label_names=None, context=ctx)
        self.module.bind(data_shapes=[(data_name, (2, 3) + self.image_size)], for_training=False)
        self.module.set_params(arg_params, aux_params)  # every parameter must be present
        self.data_name = data_name
        # One executor per size of forward_rows, made once from the bound one by reshape
        # (sharing its parameters): no bind or reshape per request, as Module.forward would
        # do at each change of batch size.
        self.executors = {2: self.module._exec_group.execs[0]}
        self.gallery, self.labels = None, []
        gallery_path = os.path.join(model_path, "gallery.npz")
        if os.path.isfile(gallery_path):
            with np.load(gallery_path) as g:
                self.gallery = g["embeddings"].astype(np.float64)
                self.labels = [str(label) for label in g["labels"]]
        self.lock = threading.Lock()  # a bound Module is not thread-safe

    def _preprocess(self, data):
        h, w = self.image_size
        faces = []
        for raw in request_images(data):
            img = decode_rgb(raw)
            if img.shape[:2] != (h, w):
                interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
                img = cv2.resize(img, (w, h), interpolation=interp)
            faces += [img, img[:, ::-1]]  # the image and its mirror, summed after the network
        return np.stack(faces).transpose(0, 3, 1, 2).astype(np.float32)

    def _inference(self, data):
        if isinstance(data, (list, tuple)):  # the batching predictor passes [the concatenation]
            data = data[0]
        rows = data if isinstance(data, mx.nd.NDArray) else np.asarray(data, np.float32)
        outputs, start = [], 0
        with self.lock:
            while start < rows.shape[0]:
                n = forward_rows(rows.shape[0] - start)  # even: a face and its mirror stay together
                executor = self._executor(n)
                executor.forward(is_train=False, **{self.data_name: rows[start:start + n]})
                outputs.append(executor.outputs[0].asnumpy())
                start += n
        emb = np.concatenate(outputs).astype(np.float64)
        emb = emb[0::2] + emb[1::2]
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return np.repeat(emb, 2, axis=0)  # the face's embedding on its row and its mirror's

    def _executor(self, n):
        """The executor for n rows (made on first use; call with the lock held)."""
        executor = self.executors.get(n)
        if executor is None:
            executor = self.executors[2].reshape(partial_shaping=True, allow_up_sizing=True,
                                                 **{self.data_name: (n, 3) + self.image_size})
            self.executors[n] = executor
        return executor

    def _postprocess(self, data):
        data = data[0::2]  # one row per face
        if len(data) == 2:
            cos = float(np.dot(data[0], data[1]))
            return {"same_person": cos >= self.threshold, "similarity": round(cos, 6),
                    "threshold": round(self.threshold, 6)}
        out = {"embedding": [round(float(v), 6) for v in data[0]]}
        if self.gallery is not None and len(self.labels):
            cos = self.gallery @ data[0]
            top = np.argsort(-cos, kind="stable")[:min(TOP_K, len(self.labels))]
            out["predicted_label"] = self.labels[top[0]]
            out["scores"] = [[self.labels[i], round(float(cos[i]), 6)] for i in top]
        return out
