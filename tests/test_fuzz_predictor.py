"""Property-based tests: random and mutated requests to a real predictor serving a real
MXNet classifier never produce a traceback or kill the server; every answer that is not a
prediction is a JSON error whose message says what was wrong."""

import json

import cv2
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_predictor import FIXTURES, start, tiny_model  # noqa: F401 (fixture)

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_model):
    package, _ = tiny_model(FIXTURES / "classifier", tmp_path_factory.mktemp("pkg") / "model")
    p = start(tmp_path_factory, package, "--name", "fuzz", env={"input_data_shape": "0,3,16,16"})
    yield p
    p.stop()


def image_bytes(kind: str, h: int, w: int, cut: int) -> bytes:
    img = np.random.RandomState(h * w).randint(0, 255, (h, w, 3), np.uint8)
    ok, buf = cv2.imencode(".png" if kind == "png" else ".jpg", img)
    data = buf.tobytes()
    return data[: max(1, len(data) * cut // 100)] if cut < 100 else data


payloads = st.one_of(
    st.binary(max_size=2048),
    st.builds(image_bytes, st.sampled_from(["jpg", "png"]), st.integers(1, 64), st.integers(1, 64),
              st.sampled_from([1, 10, 50, 99, 100, 100, 100])),
)


def check(resp: requests.Response) -> None:
    assert resp.status_code != 502
    body = resp.json()                        # always JSON, even for errors
    if resp.status_code == 200:
        assert body["predicted_label"].startswith("class_")
        return
    assert set(body) >= {"error_code", "error_msg"} and body["error_msg"], body
    assert "Traceback" not in body["error_msg"] and 'File "' not in body["error_msg"], body


@SETTINGS
@given(field=st.sampled_from(["images", "images", "image", "file", "x" * 300, "日本"]),
       filename=st.text(max_size=40), content=payloads,
       content_type=st.sampled_from(["image/jpeg", "application/octet-stream", "text/plain", ""]))
def test_random_multipart_requests(classifier, field, filename, content, content_type):
    files = {field: (filename or "f", content, content_type)} if content_type else {field: (filename or "f", content)}
    check(requests.post(classifier.url, files=files, timeout=30))


@SETTINGS
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                         max_leaves=10))
def test_random_json_requests(classifier, body):
    check(requests.post(classifier.url, data=json.dumps(body), headers={"Content-Type": "application/json"},
                        timeout=30))


@SETTINGS
@given(raw=st.binary(max_size=1024), content_type=st.sampled_from(
    ["multipart/form-data", "multipart/form-data; boundary=xyz", "application/json", "application/x-www-form-urlencoded",
     "image/png", "", "text/html; charset=utf-8"]))
def test_random_raw_bodies(classifier, raw, content_type):
    check(requests.post(classifier.url, data=raw, headers={"Content-Type": content_type}, timeout=30))


def test_server_survives_the_fuzzing(classifier):
    assert requests.get(classifier.url + "health", timeout=5).status_code == 200
    ok = requests.post(classifier.url, files={"images": ("a.jpg", image_bytes("jpg", 20, 20, 100))}, timeout=30)
    assert ok.status_code == 200 and ok.json()["predicted_label"] == "class_4"
    missing = requests.post(classifier.url, json={"image": "x"}, timeout=30)
    assert missing.status_code == 400 and "no input 'images'" in missing.json()["error_msg"]
    assert classifier.proc.poll() is None
