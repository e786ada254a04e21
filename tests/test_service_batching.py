"""The project's classification and face services under dynamic batching: a batch of
different requests through the predictor's own ``Runner.handle_batch`` (one ``_inference``)
answers exactly what the same requests answer one by one, a bad image in the batch gets its
own 400 while the others are answered, converted (int8, fused) networks batch too, and one
run through the real predictor with ``--batch-size 4``. Tiny networks, generated images."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from orchestrator.predictor.handler import Runner
from orchestrator.predictor.loader import load_service
from test_inference_face import build_face_package, encode, face_image
from test_optimize import images, optimized, run_convert, tiny_package
from test_predictor import metric, start

BAD = b"this is no image"


def multipart(*images: bytes) -> tuple:
    return "multipart", [("images", f"f{i}.jpg", raw) for i, raw in enumerate(images)], {}


def assert_same(a, b, path="answer"):
    """Equal JSON values, floats to the 6 decimals the services round to (+1 ulp of rounding)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=2e-6), path
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def batch_against_singles(service, style, payloads) -> tuple[list, list[int]]:
    """(results, rows of each _inference call) of one handle_batch; asserts each request's
    status and answer equal what handle() gives for it alone."""
    calls: list[int] = []
    inner = service._inference

    def counted(data):
        calls.append(len(data[0] if isinstance(data, list) else data))
        return inner(data)

    service._inference = counted
    runner = Runner(service, style)
    batched = runner.handle_batch(payloads)
    batch_calls = list(calls)
    for n, (payload, (status, body, _)) in enumerate(zip(payloads, batched)):
        alone, alone_body, _ = runner.handle(payload)
        assert status == alone, (n, body, alone_body)
        assert_same(json.loads(body), json.loads(alone_body), f"request {n}")
    return batched, batch_calls


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    base = tmp_path_factory.mktemp("batching")
    lst = images(base / "images")
    return tiny_package(base / "model"), lst


def classification_payloads(lst) -> list:
    pictures = [(lst.parent / f"{i}.jpg").read_bytes() for i in range(5)]
    return [multipart(pictures[0]), multipart(pictures[1]), multipart(BAD), multipart(pictures[2]),
            multipart(pictures[3], pictures[4])]  # the classifier reads the first file only


def test_classification_batch_answers_what_single_requests_answer(classifier):
    package, lst = classifier
    service, style = load_service(str(package), "classifier")
    batch = np.concatenate([service._preprocess({"images": {"a.jpg": (lst.parent / f"{i}.jpg").read_bytes()}})
                            for i in range(6)])
    rows = service._inference(batch)
    singles = np.concatenate([service._inference(batch[i:i + 1]) for i in range(6)])
    assert rows.shape == (6, 4)
    np.testing.assert_allclose(rows, singles, rtol=1e-5, atol=1e-7)
    assert np.abs(rows[:, None] - rows[None]).max(axis=2)[~np.eye(6, dtype=bool)].min() > 1e-4  # rows differ
    assert sorted(service.executors) == [1, 2, 4]  # 6 rows ran as 4 + 2: no executor per size

    results, calls = batch_against_singles(service, style, classification_payloads(lst))
    assert calls == [4]  # one forward for the four good requests
    assert [status for status, _, _ in results] == [200, 200, 400, 200, 200]
    assert "cannot decode" in json.loads(results[2][1])["error_msg"]


@pytest.mark.parametrize("mode", ["int8", "fused"])
def test_converted_classifier_batches_like_single_requests(classifier, tmp_path, mode):
    source, lst = classifier
    package = shutil.copytree(source, tmp_path / "model")
    code, report = run_convert(package, lst, "--mode", mode, "--calib-mode", "naive", "--min-top1", "0")
    assert code == 0 and report["mode"] == mode, report
    assert optimized.activate(str(package), "auto") == mode
    try:
        service, style = load_service(str(package), "classifier")
    finally:
        optimized.deactivate()
    assert ("quantize" if mode == "int8" else "_sg_mkldnn_conv") in service.module.symbol.tojson()
    results, calls = batch_against_singles(service, style, classification_payloads(lst))
    assert calls == [4] and [status for status, _, _ in results] == [200, 200, 400, 200, 200]


def face_service(package: str, mode: str, folder: Path):
    """The face service of ``package``, converted to ``mode`` first unless fp32."""
    if mode == "fp32":
        return load_service(package, "face")
    folder.mkdir()
    for n in range(6):
        (folder / f"{n}.jpg").write_bytes(encode(face_image(10 + n)))
    (folder / "test.lst").write_text("".join(f"{n}\t{n % 3}\t{n}.jpg\n" for n in range(6)))
    code, report = run_convert(Path(package), folder / "test.lst", "--mode", mode, "--task", "face",
                               "--max-verification-drop", "100")
    assert code == 0 and report["mode"] == mode, report
    assert optimized.activate(package, "auto") == mode
    try:
        return load_service(package, "face")
    finally:
        optimized.deactivate()


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_face_batch_of_embeddings_and_comparisons_answers_what_single_requests_answer(tmp_path, mode):
    package = build_face_package(tmp_path)[0]
    service, style = face_service(package, mode, tmp_path / "faces")
    faces = [encode(face_image(seed)) for seed in range(4)]
    payloads = [multipart(faces[0]), multipart(faces[1], faces[2]), multipart(BAD), multipart(faces[3]),
                multipart(faces[2], faces[2])]
    results, calls = batch_against_singles(service, style, payloads)
    assert calls == [2 + 4 + 2 + 4]  # each face and its mirror, in one _inference
    assert sorted(service.executors) == [2, 4]  # 12 rows ran as 4 + 4 + 4
    assert [status for status, _, _ in results] == [200, 200, 400, 200, 200]
    answers = [json.loads(body) for _, body, _ in results]
    assert len(answers[0]["embedding"]) == 16 and answers[1]["similarity"] < 0.999
    assert answers[4]["same_person"] is True and answers[4]["similarity"] == pytest.approx(1, abs=1e-5)
    # the rows of a face and of its mirror carry that face's embedding
    rows = service._inference(service._preprocess({"images": {"a.jpg": faces[0], "b.jpg": faces[1]}}))
    assert rows.shape == (4, 16) and np.array_equal(rows[0], rows[1]) and np.array_equal(rows[2], rows[3])
    np.testing.assert_allclose(rows[0], answers[0]["embedding"], atol=1e-6)


def big_photo() -> bytes:
    """A 6000 x 4000 JPEG (24 MP, 2.5 MB): decoding it keeps a worker busy for a while."""
    small = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.resize(small, (6000, 4000), interpolation=cv2.INTER_LINEAR))
    assert ok
    return buf.tobytes()


@pytest.mark.slow
def test_real_predictor_batches_the_classifier(classifier, tmp_path_factory):
    """While the worker decodes a big photo, five requests queue and are taken as batches
    (whatever the batching window); every answer is the one its request gets alone."""
    package, lst = classifier
    service, style = load_service(str(package), "classifier")
    runner = Runner(service, style)
    payloads = [multipart(big_photo()), *classification_payloads(lst)]
    expected = [runner.handle(payload) for payload in payloads]
    p = start(tmp_path_factory, package, "--batch-size", "4")
    try:
        answers: list = [None] * len(payloads)

        def send(n):
            files = [(field, (name, raw)) for field, name, raw in payloads[n][1]]
            answers[n] = requests.post(p.url, files=files, timeout=60)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(len(payloads))]
        threads[0].start()
        time.sleep(0.05)  # the big photo reaches the worker first
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(60)
        for n, (status, body, _) in enumerate(expected):
            assert answers[n].status_code == status, answers[n].text
            assert_same(answers[n].json(), json.loads(body), f"request {n}")
        batched = metric(p.url, "predictor_batch_size_sum") - metric(p.url, "predictor_batch_size_count")
        assert batched > 0, "no batch held more than one request"
    finally:
        p.stop()
