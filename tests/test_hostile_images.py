"""Decompression bombs (issue 12): an image whose header announces too many pixels is
refused before it is decoded, by both inference services and by the data tools."""

from __future__ import annotations

import functools
import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from jobs.data import im2rec as i2r

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "orchestrator" / "runtime"


@functools.lru_cache(maxsize=1)
def png_bomb(width: int = 8000, height: int = 6000) -> bytes:
    """A valid grey PNG of width x height zeros: about 50 KB that decode to 48 Mpx."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
    packer, row = zlib.compressobj(9), b"\0" * (width + 1)   # filter byte + one grey byte per pixel
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def load(task: str):
    if str(RUNTIME) not in sys.path:
        sys.path.insert(0, str(RUNTIME))
    spec = importlib.util.spec_from_file_location(f"bomb_{task}", REPO / "inference" / task / "customize_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", ["image_classification", "face_recognition"])
def test_services_refuse_a_png_bomb_before_decoding_it(task):
    module = load(task)
    with pytest.raises(ValueError, match="pixels"):
        module.decode_rgb(png_bomb())
    ok, small = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    assert module.decode_rgb(small.tobytes()).shape == (30, 40, 3)


def test_im2rec_skips_a_png_bomb_and_reports_it(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "img" / name / f"{i}.jpg"), np.full((20, 20, 3), 40 * i, np.uint8))
    (tmp_path / "img" / "a" / "bomb.png").write_bytes(png_bomb())
    result = i2r.im2rec(tmp_path / "img", tmp_path / "rec", val_ratio=0.0, test_ratio=0.0, resize=0, seed=0,
                        workers=1, progress=False)
    assert [(rel, "pixels" in why) for rel, why in result["skipped"]] == [("a/bomb.png", True)]


def test_face_rec_refuses_a_png_bomb():
    from jobs.data import face_rec
    packed, why = face_rec._prepare((png_bomb(), (112, 112), 90))
    assert packed is None and "pixels" in why
