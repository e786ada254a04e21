"""inference/face_recognition/customize_service.py on a package exported by the face job's
model_export (a tiny untrained network: fast, and the answers are still checkable):
embeddings, gallery identification, pair comparison, image formats, bad input, and one
round trip through the real predictor over HTTP on 127.0.0.1."""
import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from jobmodules import job_modules
from orchestrator.model_package import validate_package

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFERENCE = os.path.join(REPO, "inference", "face_recognition")
RUNTIME = os.path.join(REPO, "orchestrator", "runtime")

mx = pytest.importorskip("mxnet")
model_export, networks = job_modules("face_recognition", "model_export", "networks")

THRESHOLD = 0.5


def face_image(seed, size=(112, 112)):
    """A blocky random colour image (BGR) standing in for a face crop."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


def encode(img, ext=".jpg"):
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def load_service(model):
    if RUNTIME not in sys.path:
        sys.path.insert(0, RUNTIME)
    spec = importlib.util.spec_from_file_location(f"face_service_{id(model)}",
                                                  os.path.join(model, "customize_service.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FaceRecognitionService("face", str(model))


def upload(*images, field="images"):
    return {field: {f"f{i}.jpg": io.BytesIO(raw) for i, raw in enumerate(images)}}


def build_face_package(base, gallery=None):
    """An exported tiny MobileFaceNet face package (random weights) in ``base``; its path."""
    mx.random.seed(0)
    net, _ = networks.build("mobilefacenet", emb_size=16, blocks=(1, 1, 1, 1), width=0.25)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 112, 112)))
    symbol, params = model_export.network_params(net)
    info = {"image_size": [112, 112], "emb_size": 16, "threshold": THRESHOLD}
    return model_export.export_package(str(base), symbol, params, info, gallery, INFERENCE), symbol, params, info


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(model dir, gallery labels): an exported tiny network whose gallery holds the
    service's own embeddings of face_image(0..2)."""
    base = tmp_path_factory.mktemp("facepkg")
    path, symbol, params, info = build_face_package(base)
    service = load_service(path)
    labels = ["alice", "bob", "carol"]
    embeddings = [service.inference(upload(encode(face_image(i))))["embedding"]
                  for i in range(3)]
    model_export.export_package(str(base), symbol, params, info,
                                (np.array(embeddings, np.float32), labels), INFERENCE)
    return path, labels


@pytest.fixture(scope="module")
def service(package):
    return load_service(package[0])


def test_package_is_valid_for_model_import(package):
    assert validate_package(Path(package[0])) == []
    assert sorted(os.listdir(package[0])) == [
        "config.json", "customize_service.py", "face.json", "gallery.npz",
        "model-0000.params", "model-symbol.json"]


def test_one_image_gives_embedding_and_identity(service, package):
    resp = service.inference(upload(encode(face_image(1))))
    assert set(resp) == {"embedding", "predicted_label", "scores"}
    emb = np.array(resp["embedding"])
    assert emb.shape == (16,) and abs(np.linalg.norm(emb) - 1) < 1e-4
    assert resp["predicted_label"] == "bob"
    names = [s[0] for s in resp["scores"]]
    scores = [s[1] for s in resp["scores"]]
    assert sorted(names) == sorted(package[1]) and names[0] == "bob"
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1, abs=1e-4)
    json.dumps(resp)


def test_two_images_are_compared(service):
    a, b = encode(face_image(1)), encode(face_image(2))
    same = service.inference(upload(a, a))  # two files in `images`
    assert same == {"same_person": True, "similarity": pytest.approx(1, abs=1e-5),
                    "threshold": THRESHOLD}
    other = service.inference({**upload(a), **upload(b, field="images2")})
    assert other["similarity"] < 0.999
    assert other["same_person"] == (other["similarity"] >= THRESHOLD)
    # Legacy runtime (list of bytes) and JSON base64 fields work the same way.
    assert service.inference([a, b]) == other
    b64 = {"images": base64.b64encode(a).decode(), "images2": base64.b64encode(b).decode()}
    assert service.inference(b64) == other


def test_any_common_image_format_and_size(service):
    bgr = face_image(2)
    reference = np.array(service.inference(upload(encode(bgr, ".png")))["embedding"])
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    variants = {
        "rgba png": encode(np.dstack([bgr, np.full(bgr.shape[:2], 90, np.uint8)]), ".png"),
        "bmp": encode(bgr, ".bmp"),
        "larger jpeg": encode(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_NEAREST)),
    }
    for name, raw in variants.items():
        emb = np.array(service.inference(upload(raw))["embedding"])
        assert emb @ reference > 0.98, name  # same picture -> same embedding
    gray_emb = np.array(service.inference(upload(encode(gray, ".png")))["embedding"])
    gray3 = np.array(service.inference(upload(encode(cv2.merge([gray] * 3), ".png")))["embedding"])
    assert gray_emb @ gray3 == pytest.approx(1, abs=1e-5)
    small = service.inference(upload(encode(face_image(2, (40, 30)))))
    assert len(small["embedding"]) == 16


def test_bad_requests_raise_value_error(service):
    a = encode(face_image(0))
    with pytest.raises(ValueError, match="3 images"):
        service.inference(upload(a, a, a))
    with pytest.raises(ValueError, match="no image"):
        service.inference({"images": {}})
    with pytest.raises(ValueError, match="cannot decode"):
        service.inference(upload(b"not an image at all"))


@pytest.mark.slow
def test_real_predictor_answers_both_request_kinds(package, tmp_path):
    ready = tmp_path / "ready.json"
    with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.predictor", "--model-dir",
                                 package[0], "--port", "0", "--ready-file", str(ready)],
                                stdout=out, stderr=err, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (tmp_path / "err.log").read_text()
            assert time.monotonic() < deadline, "predictor not ready"
            time.sleep(0.1)
        url = json.loads(ready.read_text())["url"]
        a, b = encode(face_image(0)), encode(face_image(2))
        one = requests.post(url, files=[("images", ("a.jpg", a))], timeout=30)
        assert one.status_code == 200 and one.json()["predicted_label"] == "alice"
        pair = requests.post(url, files=[("images", ("a.jpg", a)), ("images", ("a.jpg", a))],
                             timeout=30)
        assert pair.status_code == 200 and pair.json()["same_person"] is True
        bad = requests.post(url, files=[("images", ("x.jpg", b"junk"))], timeout=30)
        assert bad.status_code == 400 and "cannot decode" in bad.json()["error_msg"]
        three = requests.post(url, files=[("images", ("a.jpg", a)), ("images2", ("b.jpg", b)),
                                          ("images3", ("b.jpg", b))], timeout=30)
        assert three.status_code == 400
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
