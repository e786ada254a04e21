"""End-to-end tests of the predictor: a real ``python -m orchestrator.predictor``
subprocess on 127.0.0.1 with an ephemeral port, real HTTP, real worker processes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

FIXTURES = Path(__file__).parent / "fixtures" / "predictor"
LIMIT = 12 * 1024 * 1024  # --max-body-mb 12, in bytes


class Predictor:
    """A predictor subprocess; ``stop()`` always leaves no process behind."""

    def __init__(self, tmp: Path, model_dir: Path | None, *args: str, env: dict | None = None):
        """``model_dir`` None: the arguments name the service (``--config FILE``)."""
        self.ready_file = tmp / "ready.json"
        self.out_path, self.err_path = tmp / "stdout.log", tmp / "stderr.log"
        source = ["--model-dir", str(model_dir)] if model_dir is not None else []
        cmd = [sys.executable, "-m", "orchestrator.predictor", *source,
               "--port", "0", "--ready-file", str(self.ready_file), *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        self.info: dict = {}

    def wait_ready(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"predictor exited with {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"predictor not ready after {timeout} s:\n{self.stderr()}")
            time.sleep(0.05)
        self.info = json.loads(self.ready_file.read_text())
        return self.info

    @property
    def url(self) -> str:
        return self.info["url"]

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(tmp_path_factory, model_dir, *args, env=None, name="p") -> Predictor:
    p = Predictor(tmp_path_factory.mktemp(name), model_dir, *args, env=env)
    try:
        p.wait_ready()
    except BaseException:
        p.stop()
        raise
    return p


def jpeg(h: int = 20, w: int = 30) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def post_json(url: str, obj, **kw) -> requests.Response:
    return requests.post(url, json=obj, timeout=30, **kw)


def in_background(func, *args):
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", func(*args)), daemon=True)
    thread.start()
    return thread, box


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.02)


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """Sum of the samples of ``name`` on ``GET /metrics`` (all label sets)."""
    text = requests.get(url + "metrics", timeout=5, headers=headers).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error_code"] == code and body["error_msg"], body
    return body


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    p = start(tmp_path_factory, FIXTURES / "echo", "--workers", "2", "--name", "echo-test",
              env={"ECHO_EXTRA": "passed", "input_data_shape": "0,3,32,32"})
    yield p
    p.stop()


@pytest.fixture(scope="module")
def tiny_model():
    spec = importlib.util.spec_from_file_location("tiny_model", FIXTURES / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_package


# -- the echo package (no network) ---------------------------------------------------------

def test_ready_file_and_health(echo):
    info = echo.info
    assert info["pid"] == echo.proc.pid and info["workers"] == 2 and info["name"] == "echo-test"
    assert info["host"] == "127.0.0.1" and info["port"] > 0
    assert info["url"] == f"http://127.0.0.1:{info['port']}/" and info["ready_at"] <= time.time()
    resp = requests.get(echo.url + "health", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"health": "true"}


def test_multipart_images_reach_the_service_as_named_streams(echo):
    files = [("images", ("a.jpg", jpeg(20, 30), "image/jpeg")), ("images", ("b.jpg", jpeg(8, 9), "image/jpeg"))]
    resp = requests.post(echo.url, files=files, data={"note": "hi"}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "images" and body["shapes"] == {"a.jpg": [20, 30, 3], "b.jpg": [8, 9, 3]}
    assert body["text"] == {"note": "hi"}
    # worker environment: cwd = model dir, env passes through, OpenMP threads split per worker
    assert body["cwd"] == str(FIXTURES / "echo") and body["extra"] == "passed"
    assert body["omp"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert body["signature"]["inputs"] == [{"data_name": "images", "data_shape": [0, 3, 32, 32]}]


def test_json_body_and_predict_alias(echo):
    resp = post_json(echo.url + "predict", {"x": [1, 2]})
    assert resp.status_code == 200 and resp.json()["data"] == {"x": [1, 2]}


@pytest.mark.parametrize("kwargs", [
    {"data": b"{not json", "headers": {"content-type": "application/json"}},
    {"data": b"[1, 2]", "headers": {"content-type": "application/json"}},
    {"data": b"garbage", "headers": {"content-type": "multipart/form-data"}},  # no boundary
    {"data": b"--xx\r\ngarbage", "headers": {"content-type": "multipart/form-data; boundary=xx"}},
    {"files": {"other": ("a.jpg", b"123")}},  # no `images` field
])
def test_malformed_bodies_are_400(echo, kwargs):
    assert_error(requests.post(echo.url, timeout=10, **kwargs), 400, "PRED.BAD_REQUEST")


def test_undecodable_image_is_400_and_handler_errors_are_500(echo):
    body = assert_error(requests.post(echo.url, files={"images": ("x.jpg", b"not an image")}, timeout=10),
                        400, "PRED.INVALID_INPUT")
    assert "cannot decode image" in body["error_msg"]
    assert_error(post_json(echo.url, {"bad": 1}), 400, "PRED.INVALID_INPUT")
    body = assert_error(post_json(echo.url, {"fail": 1}), 500, "PRED.HANDLER_ERROR")
    assert body["error_msg"] == "RuntimeError: model exploded"
    assert post_json(echo.url, {"still": "alive"}).status_code == 200


def test_other_errors_are_json(echo):
    assert_error(requests.post(echo.url, data=b"raw", headers={"content-type": "image/jpeg"}, timeout=10),
                 415, "PRED.UNSUPPORTED_MEDIA_TYPE")
    assert_error(requests.get(echo.url + "nope", timeout=10), 404, "PRED.NOT_FOUND")
    assert_error(requests.get(echo.url, timeout=10), 405, "PRED.METHOD_NOT_ALLOWED")


def test_body_over_limit_is_413_declared_or_streamed(echo):
    too_big = b"x" * (LIMIT + 1)
    assert_error(requests.post(echo.url, data=too_big, headers={"content-type": "application/json"}, timeout=30),
                 413, "PRED.PAYLOAD_TOO_LARGE")
    chunks = (too_big[i:i + 1 << 20] for i in range(0, len(too_big), 1 << 20))  # chunked: no Content-Length
    assert_error(requests.post(echo.url, data=chunks, headers={"content-type": "application/json"}, timeout=30),
                 413, "PRED.PAYLOAD_TOO_LARGE")
    # exactly at the limit is accepted (JSON of LIMIT bytes: a padded object)
    at_limit = b"{" + b" " * (LIMIT - 2) + b"}"
    assert requests.post(echo.url, data=at_limit, headers={"content-type": "application/json"},
                         timeout=30).status_code == 200


def concurrent_pids(url: str, n: int = 2) -> set[int]:
    """PIDs of the workers that served ``n`` simultaneous slow requests."""
    jobs = [in_background(post_json, url, {"sleep": 0.4}) for _ in range(n)]
    for thread, _ in jobs:
        thread.join(30)
    assert all(box["r"].status_code == 200 for _, box in jobs)
    return {box["r"].json()["pid"] for _, box in jobs}


def test_dead_worker_fails_its_request_and_is_replaced(echo):
    before = concurrent_pids(echo.url)
    assert len(before) == 2  # per-request dispatch: both workers take work
    assert_error(post_json(echo.url, {"exit": 1}), 500, "PRED.WORKER_DIED")
    assert post_json(echo.url, {"after": "crash"}).status_code == 200  # the other worker
    deadline = time.monotonic() + 30
    while len(after := concurrent_pids(echo.url)) < 2 or after == before:
        assert time.monotonic() < deadline, "the replacement worker never served"
    assert len(after & before) == 1  # one survivor, one replacement


def test_sigkilled_worker_is_replaced_and_readiness_reports_it(echo):
    restarts = metric(echo.url, "predictor_worker_restarts_total")
    wait_until(lambda: requests.get(echo.url + "health", timeout=5).status_code == 200)
    victim = min(concurrent_pids(echo.url))
    os.kill(victim, signal.SIGKILL)
    seen: dict = {}
    wait_until(lambda: seen.setdefault("r", requests.get(echo.url + "health", timeout=5)).status_code == 503
               or seen.pop("r") is None, what="health 503")
    assert "1/2 workers ready" in seen["r"].json()["error_msg"]
    assert post_json(echo.url, {"meanwhile": 1}).status_code == 200  # the survivor serves
    wait_until(lambda: requests.get(echo.url + "health", timeout=5).status_code == 200, what="health 200")
    pids = concurrent_pids(echo.url)
    assert len(pids) == 2 and victim not in pids
    assert metric(echo.url, "predictor_worker_restarts_total") == restarts + 1


def test_front_never_loads_mxnet_but_workers_do(echo):
    worker_pid = post_json(echo.url, {}).json()["pid"]
    assert worker_pid != echo.proc.pid
    assert "libmxnet" not in Path(f"/proc/{echo.proc.pid}/maps").read_text()
    assert "libmxnet" in Path(f"/proc/{worker_pid}/maps").read_text()


def test_access_log_has_one_line_per_request_and_no_bodies(echo):
    post_json(echo.url, {"secret": "do-not-log-me"})
    time.sleep(0.2)
    lines = [l for l in echo.stdout().splitlines() if " access " in l]
    assert any(re.search(r" POST / 200 [0-9.]+ms echo-test$", l) for l in lines)
    assert "do-not-log-me" not in echo.stdout() + echo.stderr()


def test_accepted_connections_get_tcp_nodelay():
    """Without TCP_NODELAY every keep-alive response stalls ~40 ms (Nagle + delayed ACK)."""
    import asyncio
    import socket

    from orchestrator.predictor.server import bind_socket

    async def check() -> int:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()
        sock = bind_socket("127.0.0.1", 0)
        server = await asyncio.start_server(lambda r, w: accepted.set_result(w), sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        server_side = await asyncio.wait_for(accepted, 5)
        flag = server_side.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for w in (writer, server_side):
            w.close()
        server.close()
        await server.wait_closed()
        return flag

    assert asyncio.run(check()) != 0


# -- timeouts, overload, shutdown ---------------------------------------------------------

def test_overload_503_and_timeout_504(tmp_path_factory, tmp_path):
    p = start(tmp_path_factory, FIXTURES / "echo", "--request-timeout", "1", "--queue-size", "1")
    try:
        marker = tmp_path / "started"
        running, first = in_background(post_json, p.url, {"touch": str(marker), "sleep": 0.8})
        wait_for(marker)  # the only worker is busy from here on
        waiting, second = in_background(post_json, p.url, {"waits": 1})
        wait_until(lambda: metric(p.url, "predictor_queue_depth") == 1)
        resp = post_json(p.url, {"third": 1})  # the one-place queue is full
        assert_error(resp, 503, "PRED.OVERLOADED")
        assert resp.headers["retry-after"] == "1" and resp.headers["x-model-id"] == "echo"
        for thread in (running, waiting):
            thread.join(10)
        assert first["r"].status_code == 200 and second["r"].status_code == 200
        assert_error(post_json(p.url, {"sleep": 5}), 504, "PRED.TIMEOUT")
        # the hung worker was killed; readiness says so until its replacement is warm
        wait_until(lambda: metric(p.url, "predictor_worker_restarts_total") == 1)
        wait_until(lambda: requests.get(p.url + "health", timeout=5).status_code == 200)
        assert post_json(p.url, {"ok": 1}).status_code == 200
    finally:
        p.stop()
    assert p.proc.returncode == 0


def test_sigterm_drains_in_flight_request_then_exits_0(tmp_path_factory, tmp_path):
    p = start(tmp_path_factory, FIXTURES / "echo")
    try:
        marker = tmp_path / "started"
        thread, box = in_background(post_json, p.url, {"touch": str(marker), "sleep": 1.0})
        wait_for(marker)
        p.proc.send_signal(signal.SIGTERM)
        thread.join(15)
        assert box["r"].status_code == 200 and box["r"].json()["data"]["sleep"] == 1.0
        assert p.proc.wait(timeout=15) == 0
        assert not p.ready_file.exists()
    finally:
        p.stop()


# -- broken packages ------------------------------------------------------------------------

def run_to_exit(tmp_path, model_dir) -> tuple[int, str, Path]:
    p = Predictor(tmp_path, model_dir)
    try:
        code = p.proc.wait(timeout=30)
    finally:
        p.stop()
    return code, p.stderr(), p.ready_file


def test_exception_in_service_init_exits_nonzero_with_traceback(tmp_path):
    code, err, ready = run_to_exit(tmp_path, FIXTURES / "broken_init")
    assert code == 1 and not ready.exists()
    assert "Traceback" in err and "RuntimeError: cannot open weights: broken on purpose" in err
    assert err.rstrip().splitlines()[-1].startswith("predictor: failed to load the model service")


def test_ambiguous_package_exits_2(tmp_path):
    code, err, ready = run_to_exit(tmp_path, FIXTURES / "two_services")
    assert code == 2 and not ready.exists()
    assert "exactly one service class" in err and "FirstService, SecondService" in err


def test_missing_package_exits_2(tmp_path):
    code, err, _ = run_to_exit(tmp_path, tmp_path / "nowhere")
    assert code == 2 and "no such folder" in err


# -- packages with a tiny real MXNet network ---------------------------------------------

def test_image_classifier_with_tiny_mxnet_model(tmp_path_factory, tmp_path, tiny_model):
    model_dir, labels = tiny_model(FIXTURES / "classifier", tmp_path / "model")
    p = start(tmp_path_factory, model_dir, env={"input_data_shape": "0,3,16,16"})
    try:
        resp = requests.post(p.url, files={"images": ("cat.jpg", jpeg(40, 50))}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["predicted_label"] == "class_4" == body["scores"][0][0]
        probs = [s[1] for s in body["scores"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and all(0 <= x <= 1 for x in probs)
    finally:
        p.stop()


def test_legacy_service_gets_manifest_and_list_of_bytes(tmp_path_factory, tmp_path, tiny_model):
    model_dir, _ = tiny_model(FIXTURES / "legacy", tmp_path / "model")
    p = start(tmp_path_factory, model_dir, env={"input_data_shape": "0,3,16,16"})
    try:
        resp = requests.post(p.url, files={"images": ("cat.jpg", jpeg())}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predicted_label": "class_4", "batch": 1}
        assert "legacy service loaded epoch 3" in p.stdout()  # the newest params were chosen
    finally:
        p.stop()
