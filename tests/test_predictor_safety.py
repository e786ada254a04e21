"""Hostile clients against a real predictor (issue 12): requests that could wedge a worker,
bodies the front must refuse before reading them, slow and idle connections, and the
worker pool's own deadline for a request whose client is gone."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest
import requests

from orchestrator.predictor.config import ModelConfig, worker_env
from orchestrator.predictor.pool import PoolError, WorkerPool
from test_predictor import FIXTURES, assert_error, in_background, post_json, start, wait_for, wait_until


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """One worker, no queue, short request/header/body limits, at most 4 connections."""
    p = start(tmp_path_factory, FIXTURES / "echo", "--name", "guarded", "--queue-size", "0",
              "--request-timeout", "4", "--header-timeout", "1", "--body-timeout", "1", "--max-connections", "4")
    yield p
    p.stop()


def connect(url: str) -> socket.socket:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=8)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (``socket.timeout`` if it never does)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response (headers + Content-Length bytes), without waiting for the close."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < int(
            raw.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
        chunk = sock.recv(65536)
        assert chunk, raw
        raw += chunk
    return raw


def json_of(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw
    return json.loads(body)


def test_deeply_nested_json_is_400_and_does_not_disable_the_worker(guarded):
    deep = '{"a": ' + "[" * 900 + "]" * 900 + "}"
    for _ in range(3):  # one per request used to disable one worker for good
        resp = requests.post(guarded.url, data=deep, headers={"Content-Type": "application/json"}, timeout=30)
        assert "levels deep" in assert_error(resp, 400, "PRED.BAD_REQUEST")["error_msg"]
    assert post_json(guarded.url, {"ok": 1}).status_code == 200
    assert requests.get(guarded.url + "health", timeout=5).status_code == 200


def test_full_queue_answers_503_before_reading_the_body(guarded, tmp_path):
    marker = tmp_path / "started"
    thread, box = in_background(post_json, guarded.url, {"touch": str(marker), "sleep": 1.5})
    wait_for(marker)  # the only worker is busy and the queue has no place
    with connect(guarded.url) as sock:  # 10 MB announced, not one byte of it sent
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000\r\n\r\n")
        raw = read_response(sock)
    assert raw.startswith(b"HTTP/1.1 503") and json_of(raw)["error_code"] == "PRED.OVERLOADED", raw
    thread.join(10)
    assert box["r"].status_code == 200


def test_slow_headers_get_408_and_are_closed(guarded):
    with connect(guarded.url) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        raw = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 408") and json_of(raw)["error_code"] == "PRED.TIMEOUT"
    with connect(guarded.url) as sock:  # a connection that never sends anything
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_slow_body_is_closed(guarded):
    with connect(guarded.url) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        assert read_all(sock) == b""  # closed without an answer: the request was dropped
    assert post_json(guarded.url, {"ok": 1}).status_code == 200


def test_bad_content_length_is_a_json_400(guarded):
    with connect(guarded.url) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n")
        raw = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 400") and json_of(raw)["error_code"] == "PRED.BAD_REQUEST"


def test_connections_over_the_cap_get_503(guarded):
    socks = [connect(guarded.url) for _ in range(5)]
    try:
        answers = [read_all(s) for s in socks]  # 408 for idle ones after 1 s, 503 at once for the fifth
    finally:
        for s in socks:
            s.close()
    assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) >= 1, [a[:20] for a in answers]
    assert all(a.startswith((b"HTTP/1.1 503", b"HTTP/1.1 408")) for a in answers)
    wait_until(lambda: post_json(guarded.url, {"ok": 1}).status_code == 200, what="serving again")


# -- the pool itself ---------------------------------------------------------------------------

def run_pool(scenario, workers: int = 1):
    async def main():
        config = ModelConfig(id="echo", model_dir=str(FIXTURES / "echo"), workers=workers)
        pool = WorkerPool(config, name="safety", env=worker_env(dict(os.environ), config, workers))
        try:
            await pool.start()
            return await scenario(pool)
        finally:
            await pool.close(grace=1.0)
    return asyncio.run(main())


def test_the_pool_frees_its_worker_from_unsendable_and_abandoned_requests():
    """Nothing between "taken off the queue" and "sent" can strand a worker, and a request
    running past its deadline is killed even when nobody waits for it any more."""
    async def scenario(pool):
        with pytest.raises(PoolError) as refused:
            await pool.submit(("json", {"f": lambda: 0}), timeout=5)   # cannot be pickled
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        with pytest.raises(PoolError) as too_deep:
            await pool.submit(("json", {"deep": deep}), timeout=5)     # RecursionError while pickling
        served, _ = await pool.submit(("json", {"ok": 1}), timeout=5)

        first = pool.worker_pids()
        gone = asyncio.ensure_future(pool.submit(("json", {"sleep": 60}), timeout=1.0))
        await asyncio.sleep(0.3)
        gone.cancel()  # the client went away; its request keeps the worker busy
        started = time.monotonic()
        while not (pool.accepting() and pool.worker_pids() != first) and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        after, _ = await pool.submit(("json", {"ok": 1}), timeout=20)
        return refused.value.status, too_deep.value.status, served, first != pool.worker_pids(), after

    assert run_pool(scenario) == (400, 400, 200, True, 200)
