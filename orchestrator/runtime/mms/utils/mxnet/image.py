"""Image helpers of MMS (``mms.utils.mxnet.image``) for custom services.

Contract (arrays are ``mx.nd.NDArray``):

* ``read(buf, flag=1, to_rgb=True)``: decode JPEG/PNG/... bytes (or a file-like, or a
  numpy/NDArray byte buffer) into HWC uint8; ``flag=1`` colour (RGB unless ``to_rgb=False``),
  ``flag=0`` grayscale (HW1). Undecodable input raises ``ValueError``.
* ``write(img, flag=1, format='jpeg', dim_order='CHW')``: encode to base64 text.
* ``resize(src, new_width, new_height, interp=2)``: HWC -> HWC of the new size.
* ``fixed_crop(src, x0, y0, w, h, size=None, interp=2)`` (alias ``fix_crop``).
* ``color_normalize(src, mean, std=None)``: ``(src - mean) / std``.
* ``transform_shape(img, dim_order='NCHW')``: HWC -> NCHW (or NHWC) with batch 1.
"""

from __future__ import annotations

import base64

import cv2
import mxnet as mx
import numpy as np


def _as_bytes(buf) -> np.ndarray:
    if hasattr(buf, "read"):
        buf = buf.read()
    if isinstance(buf, mx.nd.NDArray):
        buf = buf.asnumpy()
    if isinstance(buf, str):
        raise ValueError("image data must be bytes or a binary file, not text")
    return np.frombuffer(bytes(buf), dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.astype(np.uint8)


def read(buf, flag: int = 1, to_rgb: bool = True, out=None):
    """Decode an encoded image into an HWC ``uint8`` NDArray (see module docstring)."""
    raw = _as_bytes(buf)
    # cv2 decodes the same formats as mx.image.imdecode but reports failure as None,
    # which lets us raise ValueError (a client error) instead of a generic MXNetError.
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR if flag else cv2.IMREAD_GRAYSCALE) if raw.size else None
    if img is None:
        raise ValueError("cannot decode image: not a supported image format or corrupt data")
    if img.ndim == 2:
        img = img[:, :, None]
    elif to_rgb:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    result = mx.nd.array(img, dtype=np.uint8)
    if out is not None:
        out[:] = result
        return out
    return result


def write(img_arr, flag: int = 1, format: str = "jpeg", dim_order: str = "CHW") -> str:
    """Encode an image NDArray (CHW by default, RGB) into base64 text."""
    arr = img_arr.asnumpy() if isinstance(img_arr, mx.nd.NDArray) else np.asarray(img_arr)
    if dim_order == "CHW":
        arr = np.transpose(arr, (1, 2, 0))
    arr = arr.astype(np.uint8)
    if flag and arr.shape[-1] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode("." + format.lower().replace("jpeg", "jpg"), arr)
    if not ok:
        raise ValueError(f"cannot encode image as {format}")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def resize(src, new_width: int, new_height: int, interp: int = 2):
    """Resize an HWC image to ``new_width`` x ``new_height``."""
    return mx.image.imresize(src, int(new_width), int(new_height), interp=interp)


def fixed_crop(src, x0: int, y0: int, w: int, h: int, size=None, interp: int = 2):
    """Crop ``w`` x ``h`` at (``x0``, ``y0``); resize to ``size`` = (w, h) when given."""
    return mx.image.fixed_crop(src, x0, y0, w, h, size, interp)


fix_crop = fixed_crop  # name used in some ModelArts samples


def color_normalize(src, mean, std=None):
    """``(src - mean) / std`` with broadcasting; ``std=None`` skips the division."""
    src = src.astype("float32") if src.dtype != np.float32 else src
    src = src - mean
    if std is not None:
        src = src / std
    return src


def transform_shape(img_arr, dim_order: str = "NCHW"):
    """HWC image -> batch of one, ``NCHW`` (default) or ``NHWC``."""
    if dim_order not in ("NCHW", "NHWC"):
        raise ValueError(f"dim_order must be NCHW or NHWC, not {dim_order!r}")
    if dim_order == "NCHW":
        img_arr = mx.nd.transpose(img_arr, (2, 0, 1))
    return mx.nd.expand_dims(img_arr, axis=0)
