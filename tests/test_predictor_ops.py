"""Operations of the predictor: readiness after warm-up, crash recovery, metrics, bearer
token, several configs with weights, reload (SIGHUP), dynamic batching. Real predictor
subprocesses on 127.0.0.1, real worker processes, tiny fixture services."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from orchestrator.predictor.handler import assemble, split
from orchestrator.predictor.batching import AdaptiveWindow
from test_predictor import (FIXTURES, Predictor, assert_error, in_background, metric, post_json, start, wait_for,
                            wait_until)

ECHO = FIXTURES / "echo"
TOKEN = "s3cret-token-for-tests"


def write_service(path: Path, generation: int, configs: list[dict]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"generation": generation, "configs": configs}))
    tmp.replace(path)
    return path


def wait_generation(p: Predictor, generation: int) -> dict:
    def applied():
        info = json.loads(p.ready_file.read_text())
        return info if info["generation"] == generation or (info["error"] or {}).get("generation") == generation \
            else None
    wait_until(applied, what=f"generation {generation}")
    return applied()


# -- readiness ----------------------------------------------------------

def test_ready_only_after_every_worker_answered_its_warm_up(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    with socket.socket() as probe:  # a free port, so the test can reach the front before it is ready
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    p = Predictor(tmp_path, ECHO, "--port", str(port), env={"ECHO_WARMUP_GATE": str(gate)})
    try:
        wait_for(gate / "started", timeout=30)  # loaded, now inside the warm-up request
        url = f"http://127.0.0.1:{port}/"
        health = requests.get(url + "health", timeout=5)
        assert health.status_code == 503 and health.json()["health"] == "false"
        assert_error(post_json(url, {"early": 1}), 503, "PRED.NOT_READY")
        assert not p.ready_file.exists()
        (gate / "release").touch()
        p.wait_ready()
        assert requests.get(url + "health", timeout=5).json() == {"health": "true"}
    finally:
        p.stop()


# -- metrics and bearer token ----------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    p = start(tmp_path_factory, ECHO, "--name", "guarded", env={"PREDICTOR_AUTH_TOKEN": TOKEN})
    yield p
    p.stop()


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_bearer_token_is_required_except_for_health(guarded):
    for headers in (None, auth("wrong"), {"Authorization": TOKEN}):
        resp = post_json(guarded.url, {"a": 1}, headers=headers)
        assert_error(resp, 401, "PRED.UNAUTHORIZED")
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert requests.get(guarded.url + "metrics", timeout=5).status_code == 401
    assert requests.get(guarded.url + "health", timeout=5).status_code == 200
    ok = post_json(guarded.url, {"a": 1}, headers=auth())
    assert ok.status_code == 200 and ok.json()["token_visible"] is False  # workers never see it


def test_the_token_never_reaches_the_logs(tmp_path_factory):
    p = start(tmp_path_factory, ECHO, "--name", "secretive", env={"PREDICTOR_AUTH_TOKEN": TOKEN})
    try:
        for headers in (auth(), auth("wrong"), {"Authorization": TOKEN}):
            post_json(p.url, {"a": 1}, headers=headers)
    finally:
        p.stop()                     # the process has exited: everything it logged is in the files
    logs = p.stdout() + p.stderr()
    assert "guarded" not in logs and "secretive" in logs, "the log of this predictor, not empty"
    assert TOKEN not in logs


def test_metrics_count_requests_and_split_latency_by_stage(guarded):
    for body in ({"a": 1}, {"b": 2}, {"bad": 1}):
        post_json(guarded.url, body, headers=auth())
    post_json(guarded.url, {"c": 3})  # 401, counted before any config was chosen
    text = requests.get(guarded.url + "metrics", timeout=5, headers=auth()).text
    assert text.startswith("# HELP")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['predictor_requests_total{code="200",model="guarded"}']) >= 2
    assert float(samples['predictor_requests_total{code="400",model="guarded"}']) >= 1
    assert float(samples['predictor_requests_total{code="401",model="-"}']) >= 1
    for stage in ("queue", "preprocess", "inference", "postprocess"):
        assert float(samples[f'predictor_stage_duration_seconds_count{{model="guarded",stage="{stage}"}}']) >= 2
    assert float(samples['predictor_request_duration_seconds_count{model="guarded"}']) >= 3
    assert samples['predictor_in_flight{model="guarded"}'] == "0.0"
    assert samples['predictor_workers_ready{model="guarded"}'] == "1.0"
    assert 'predictor_worker_restarts_total{model="guarded"}' not in samples  # none yet


def test_openapi_documents_the_predict_body(guarded):
    spec = requests.get(guarded.url + "openapi.json", timeout=5, headers=auth()).json()
    body = spec["paths"]["/"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["images"]["format"] == "binary"
    assert "application/json" in body and "/health" in spec["paths"] and "/metrics" in spec["paths"]


# -- several configs: weights, reload ----------------------------------------------------------

@pytest.fixture(scope="module")
def ab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ab")
    service = write_service(folder / "service.json", 1, [
        {"id": "a", "model_dir": str(ECHO), "weight": 90},
        {"id": "b", "model_dir": str(ECHO), "weight": 10, "envs": {"ECHO_EXTRA": "from-b"}}])
    p = start(tmp_path_factory, None, "--config", str(service))
    p.service_file = service
    yield p
    p.stop()


def served_by(url: str, n: int) -> Counter:
    with requests.Session() as s:
        return Counter(s.post(url, json={"i": i}, timeout=30).headers["x-model-id"] for i in range(n))


def test_weights_split_traffic_and_envs_are_per_config(ab):
    split_ = served_by(ab.url, 1000)
    assert abs(split_["a"] - 900) <= 20 and split_["a"] + split_["b"] == 1000, split_
    extras = {post_json(ab.url, {}).json()["extra"] for _ in range(20)}
    assert extras == {None, "from-b"}
    assert [c["id"] for c in ab.info["configs"]] == ["a", "b"]


def test_reload_changes_weights_in_place_and_keeps_in_flight_requests(ab, tmp_path):
    pids_before = {c["id"]: c["pids"] for c in ab.info["configs"]}
    marker = tmp_path / "started"
    with requests.Session() as s:  # find a request that config a serves, and keep it running
        while s.post(ab.url, json={}, timeout=30).headers["x-model-id"] != "b":
            pass  # smooth round-robin: after b comes a
    thread, box = in_background(post_json, ab.url, {"touch": str(marker), "sleep": 1.0})
    wait_for(marker)
    write_service(ab.service_file, 2, [{"id": "a", "model_dir": str(ECHO), "weight": 0},
                                       {"id": "b", "model_dir": str(ECHO), "weight": 100,
                                        "envs": {"ECHO_EXTRA": "from-b"}}])
    ab.proc.send_signal(signal.SIGHUP)
    info = wait_generation(ab, 2)
    thread.join(15)
    assert box["r"].status_code == 200 and box["r"].headers["x-model-id"] == "a"
    assert info["error"] is None and {c["id"]: c["pids"] for c in info["configs"]} == pids_before
    assert served_by(ab.url, 20) == Counter({"b": 20})
    # a broken service file is refused; the running configs keep serving
    write_service(ab.service_file, 3, [{"id": "c", "model_dir": str(FIXTURES / "broken_init")}])
    ab.proc.send_signal(signal.SIGHUP)
    info = wait_generation(ab, 3)
    assert info["generation"] == 2 and "cannot open weights" in info["error"]["message"]
    write_service(ab.service_file, 4, [{"id": "b", "model_dir": str(ECHO), "wieght": 5}])  # a typo
    ab.proc.send_signal(signal.SIGHUP)
    info = wait_generation(ab, 4)
    assert info["generation"] == 2 and "unknown key(s) wieght" in info["error"]["message"]
    assert served_by(ab.url, 5) == Counter({"b": 5})


# -- dynamic batching ------------------------------------------------------------------------

def test_the_batching_window_waits_only_when_measured_costs_say_it_pays():
    window = AdaptiveWindow(size=4, max_delay=0.5)
    assert window.decide(waiting=9, oldest_at=10.0, now=10.0) == (4, None)         # full: go
    assert window.decide(waiting=2, oldest_at=10.0, now=10.0) == (2, None)         # nothing measured: no wait
    for t in (10.0, 10.01, 10.02, 10.03):
        window.arrived(t)                                                           # a request every 10 ms
    for n, cost in ((1, 0.040), (2, 0.078), (3, 0.116)):                           # CPU-like: n x 39 ms
        window.served(n, cost)
    assert window.saving(2) == pytest.approx(0.002)
    assert window.decide(waiting=2, oldest_at=10.0, now=10.0) == (2, None)         # 10 ms gap > 2 ms saved
    window.served(3, 0.060)                      # a cheap batch of 3 (GPU-like) moves the average to 0.1048 s
    assert window.saving(2) == pytest.approx(0.078 + 0.040 - 0.1048)               # 13 ms saved > 10 ms gap
    take, wake = window.decide(waiting=2, oldest_at=10.0, now=10.0)
    assert take == 0 and wake == pytest.approx(10.01)                               # wait for the next arrival
    assert window.decide(waiting=2, oldest_at=10.0, now=10.0, idle_workers=2) == (2, None)
    assert window.decide(waiting=2, oldest_at=10.0, now=10.5) == (2, None)         # never past max_delay
    assert AdaptiveWindow(size=1, max_delay=0.5).decide(waiting=3, oldest_at=0, now=0) == (1, None)
    assert window.decide(waiting=2, oldest_at=10.0, now=10.5, workers=2) == (1, None)  # a share each
    assert window.decide(waiting=14, oldest_at=10.0, now=10.5, workers=2) == (4, None)


def test_assemble_and_split_round_trip_batches_of_mixed_sizes():
    parts = [[np.ones((1, 3)), np.zeros((1, 2))], [np.full((2, 3), 2.0), np.ones((2, 2))]]
    batch = assemble(parts)
    assert [b.shape for b in batch] == [(3, 3), (3, 2)]
    shares = split(batch, [1, 2])
    assert [s[0].shape for s in shares] == [(1, 3), (2, 3)] and shares[1][0][0, 0] == 2.0
    assert split(np.arange(3), [2, 1])[1].tolist() == [2]  # a bare array stays bare


def test_dynamic_batching_takes_what_queued_while_the_worker_was_busy(tmp_path_factory):
    p = start(tmp_path_factory, FIXTURES / "batching", "--batch-size", "auto", "--batch-delay-ms", "300")
    try:
        busy = in_background(post_json, p.url, {"x": 0, "sleep": 1.0})
        time.sleep(0.3)  # the only worker is busy: the next three queue behind it
        jobs = [in_background(post_json, p.url, {"x": i}) for i in (1, 2, 3)]
        for thread, _ in [busy, *jobs]:
            thread.join(30)
        assert busy[1]["r"].json() == {"y": 0.0, "batch": 1}
        answers = sorted((box["r"].json()["y"], box["r"].json()["batch"]) for _, box in jobs)
        assert answers == [(2.0, 3), (4.0, 3), (6.0, 3)]                     # one batch, not three
        assert post_json(p.url, {"x": 5}).json() == {"y": 10.0, "batch": 1}  # alone: no company to wait for
        assert_error(post_json(p.url, {"nope": 1}), 400, "PRED.INVALID_INPUT")
        assert metric(p.url, "predictor_batch_size_count") >= 3
    finally:
        p.stop()


def test_auto_batching_serves_a_service_that_does_not_batch_one_by_one(tmp_path_factory):
    p = start(tmp_path_factory, ECHO, "--batch-size", "auto", "--workers", "1")
    try:
        answers = [in_background(post_json, p.url, {"sleep": 0.3, "n": i}) for i in range(3)]
        for thread, _ in answers:
            thread.join(30)
        assert sorted(box["r"].json()["data"]["n"] for _, box in answers) == [0, 1, 2]
        assert metric(p.url, "predictor_batch_size_count") == 0
    finally:
        p.stop()


def test_batching_a_service_that_does_not_support_it_is_refused(tmp_path):
    p = Predictor(tmp_path, ECHO, "--batch-size", "4")
    try:
        assert p.proc.wait(timeout=60) == 2
    finally:
        p.stop()
    assert "does not declare supports_batching = True" in p.stderr()
