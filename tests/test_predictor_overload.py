"""Overload behaviour of the predictor that must not punish a normal client: requests of
clients that went away are dropped, not run; closed-loop clients at 4 x workers never see
503; a 503 carries a Retry-After that reflects the backlog. Real predictor subprocesses."""

from __future__ import annotations

import json
import socket
import threading

import requests

from orchestrator.predictor.pool import retry_after_seconds
from test_predictor import FIXTURES, assert_error, in_background, metric, post_json, start, wait_for, wait_until

ECHO = FIXTURES / "echo"


def raw_post(url: str, obj) -> socket.socket:
    """Send one JSON POST on a fresh connection and return the socket without reading."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    body = json.dumps(obj).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def test_requests_of_gone_clients_are_dropped_and_4x_workers_clients_get_no_503(tmp_path_factory, tmp_path):
    p = start(tmp_path_factory, ECHO)  # defaults: 1 worker, queue 8
    try:
        # like a load generator's warm-up that closes its connections mid-request:
        # 1 running, 8 waiting (the queue is full), 1 answered 503 at once
        gone = [raw_post(p.url, {"touch": str(tmp_path / f"ran-{i}"), "sleep": 3}) for i in range(10)]
        wait_until(lambda: metric(p.url, "predictor_queue_depth") == 8, what="a full queue")
        for sock in gone:
            sock.close()
        # the 8 waiting requests leave the queue at once (running them would take 24 s)
        wait_until(lambda: metric(p.url, "predictor_queue_depth") == 0, timeout=10, what="queue emptied")

        statuses: list[int] = []

        def closed_loop_client():
            with requests.Session() as session:
                for n in range(3):
                    statuses.append(session.post(p.url, json={"sleep": 0.05, "n": n}, timeout=30).status_code)

        clients = [threading.Thread(target=closed_loop_client) for _ in range(4)]  # c = 4 x workers
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert statuses == [200] * 12
        ran = sorted(path.name for path in tmp_path.glob("ran-*"))
        assert len(ran) == 1, f"only the request already running should have run, not {ran}"
    finally:
        p.stop()
    assert p.proc.returncode == 0


def test_overloaded_503_says_when_to_retry(tmp_path_factory, tmp_path):
    p = start(tmp_path_factory, ECHO, "--queue-size", "1")
    try:
        assert post_json(p.url, {"sleep": 0.6}).status_code == 200  # the service time is now known: ~0.6 s
        marker = tmp_path / "started"
        running, first = in_background(post_json, p.url, {"touch": str(marker), "sleep": 0.6})
        wait_for(marker)
        waiting, second = in_background(post_json, p.url, {"waits": 1})
        wait_until(lambda: metric(p.url, "predictor_queue_depth") == 1)
        resp = post_json(p.url, {"third": 1})
        body = assert_error(resp, 503, "PRED.OVERLOADED")
        retry = int(resp.headers["retry-after"])
        assert 2 <= retry <= 60, retry  # two requests of ~0.6 s ahead on one worker
        assert f"retry in {retry} s" in body["error_msg"]
        for thread in (running, waiting):
            thread.join(10)
        assert first["r"].status_code == 200 and second["r"].status_code == 200
    finally:
        p.stop()


def test_retry_after_is_the_time_to_drain_the_backlog():
    assert retry_after_seconds(5, 1, 0.0) == 1          # nothing measured yet
    assert retry_after_seconds(16, 2, 0.05) == 1        # 0.4 s rounds up to 1 s
    assert retry_after_seconds(16, 2, 0.5) == 4
    assert retry_after_seconds(1000, 1, 2.0) == 60      # capped
