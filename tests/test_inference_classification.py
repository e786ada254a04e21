"""inference/image_classification/customize_service.py loaded from an exported model package
through the ModelArts `mms` compatibility runtime (orchestrator/runtime on sys.path)."""
import importlib.util
import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jobs.data import generate_classification as gen
from jobs.data import im2rec as i2r

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "jobs", "image_classification", "train.py")
RUNTIME = os.path.join(REPO, "orchestrator", "runtime")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(model dir, rec dir, image root) of a 1-epoch tiny model trained by train.py."""
    base = tmp_path_factory.mktemp("infer")
    gen.generate(base / "images", classes=3, images_per_class=10, seed=2, min_size=40,
                 max_size=72, progress=False)
    i2r.im2rec(base / "images", base / "rec", val_ratio=0.3, test_ratio=0.0, resize=36,
               seed=0, workers=1, progress=False)
    proc = subprocess.run(
        [sys.executable, TRAIN_PY, f"--data_url={base / 'rec'}", f"--train_url={base / 'out'}",
         "--num_epochs=1", "--batch_size=8", "--num_layers=8", "--image_shape=3,32,32"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base / "out" / "model", base / "rec", base / "images"


@pytest.fixture(scope="module")
def service(package):
    if RUNTIME not in sys.path:
        sys.path.insert(0, RUNTIME)
    spec = importlib.util.spec_from_file_location("exported_customize_service",
                                                  package[0] / "customize_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ImageClassificationService("classifier", str(package[0]))


def _encode(img, ext):
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def _check_response(resp, labels):
    assert set(resp) == {"predicted_label", "scores"}
    scores = resp["scores"]
    assert len(scores) == min(5, len(labels)) == 3
    assert all(isinstance(s[0], str) and isinstance(s[1], float) for s in scores)
    assert {s[0] for s in scores} == set(labels)
    probs = [s[1] for s in scores]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    assert resp["predicted_label"] == scores[0][0]
    json.dumps(resp)  # JSON-serialisable


@pytest.mark.slow
def test_jpeg_upload(service, package):
    labels = (package[0] / "labels.txt").read_text().split()
    path = next((package[2] / labels[0]).iterdir())
    with open(path, "rb") as f:
        resp = service.inference({"images": {path.name: f}})
    _check_response(resp, labels)


@pytest.mark.slow
def test_png_with_alpha_grayscale_and_bmp(service, package):
    labels = (package[0] / "labels.txt").read_text().split()
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    rgba = np.dstack([bgr, np.full((50, 70), 128, np.uint8)])
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    uploads = {
        "alpha.png": _encode(rgba, ".png"),
        "gray.jpg": _encode(gray, ".jpg"),
        "gray.png": _encode(gray, ".png"),
        "pic.bmp": _encode(bgr, ".bmp"),
    }
    for name, data in uploads.items():
        _check_response(service.inference({"images": {name: io.BytesIO(data)}}), labels)
    # Raw bytes values and the legacy list-of-bytes shape are accepted too.
    _check_response(service.inference({"images": {"x.png": uploads["alpha.png"]}}), labels)
    _check_response(service.inference([uploads["pic.bmp"]]), labels)


@pytest.mark.slow
def test_undecodable_input_raises_value_error(service):
    with pytest.raises(ValueError, match="cannot decode"):
        service.inference({"images": {"x.jpg": io.BytesIO(b"definitely not an image")}})
    with pytest.raises(ValueError, match="no image"):
        service.inference({"images": {}})


@pytest.mark.slow
def test_preprocessing_matches_the_validation_iterator(service, package):
    """Original JPEG through _preprocess == the packed record through ImageRecordIter
    (up to JPEG re-encoding noise), so deployment sees what validation saw."""
    import mxnet as mx
    _, rec, images = package
    rows = [line.rstrip("\n").split("\t") for line in open(rec / "val.lst")]
    it = mx.io.ImageRecordIter(path_imgrec=str(rec / "val.rec"), path_imgidx=str(rec / "val.idx"),
                               data_shape=(3, 32, 32), batch_size=1, shuffle=False,
                               preprocess_threads=1)
    for batch, (_, _, rel) in zip(it, rows):
        with open(images / rel, "rb") as f:
            ours = service._preprocess({"images": {"a.jpg": f}})
        theirs = batch.data[0].asnumpy()
        assert ours.shape == theirs.shape == (1, 3, 32, 32) and ours.dtype == np.float32
        # A one-pixel shift or a BGR/RGB swap gives differences of 30+; JPEG noise ~5.
        assert np.abs(ours - theirs).mean() < 12
