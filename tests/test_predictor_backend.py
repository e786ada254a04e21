"""The local backend's services: several model versions behind one predictor, and
``update_service`` (replace a version, canary weights, stop, start) without failing a
request that is in flight. Real registry, real predictor processes on 127.0.0.1."""

from __future__ import annotations

import pytest
import requests

from orchestrator.backends.base import BackendError, ModelSpec, ServiceConfig, ServiceRef, ServiceSpec
from orchestrator.backends.local.backend import LocalBackend
from test_predictor import FIXTURES, in_background, post_json, tiny_model, wait_for  # noqa: F401 (fixture)
from test_predictor_ops import served_by

RUN = "261123-120000-cafe"


@pytest.fixture
def backend_with_versions(tmp_path, tiny_model):
    backend = LocalBackend(tmp_path / "root")
    ids = []
    for version in ("1", "2"):
        src = tmp_path / f"v{version}"
        tiny_model(FIXTURES / "echo", src / "model")  # the echo service, with a checkpoint to pass validation
        backend.storage.put(str(src), f"obs://models/echo/v{version}/")
        ids.append(backend.import_model(ModelSpec("echo", version, RUN, f"obs://models/echo/v{version}/")).id)
    return backend, ids


def slow_request(url: str, marker):
    """Start a 1 s request and return once a worker is running it."""
    thread, box = in_background(post_json, url, {"touch": str(marker), "sleep": 1.0})
    wait_for(marker)
    return thread, box


def test_update_service_replaces_versions_shifts_weights_stops_and_starts(backend_with_versions, tmp_path):
    backend, (v1, v2) = backend_with_versions
    ref = backend.deploy(ServiceSpec(f"svc-{RUN}", RUN, (ServiceConfig(v1, weight=100),)))
    try:
        assert served_by(ref.url, 3) == {v1: 3}
        # a new version replaces the old one; the request running on the old one completes
        thread, box = slow_request(ref.url, tmp_path / "m1")
        assert backend.update_service(ref, configs=(ServiceConfig(v2, weight=100),)) == ref
        thread.join(15)
        assert box["r"].status_code == 200 and box["r"].headers["x-model-id"] == v1
        assert served_by(ref.url, 5) == {v2: 5}
        # canary: both versions, split by weight
        backend.update_service(ref, configs=(ServiceConfig(v1, weight=20), ServiceConfig(v2, weight=80)))
        assert served_by(ref.url, 100) == {v1: 20, v2: 80}
        # stop drains the request in flight; start serves again on the same address
        thread, box = slow_request(ref.url, tmp_path / "m2")
        backend.update_service(ref, status="stopped")
        thread.join(15)
        assert box["r"].status_code == 200
        assert backend.services.status(ref.id) == "stopped"
        with pytest.raises(requests.ConnectionError):
            requests.get(ref.url + "health", timeout=5)
        assert backend.update_service(ref, status="running").url == ref.url
        assert served_by(ref.url, 10) == {v1: 2, v2: 8}
    finally:
        backend.delete_service(ref)
    assert all(r.kind != "service" for r in backend.list_resources(RUN))


def test_update_service_errors_leave_the_service_as_it_was(backend_with_versions):
    backend, (v1, v2) = backend_with_versions
    ref = backend.deploy(ServiceSpec(f"svc2-{RUN}", RUN, (ServiceConfig(v1, weight=100, instance_count=1),)))
    try:
        with pytest.raises(BackendError, match="does not exist"):
            backend.update_service(ServiceRef("nope", "nope", ""), status="stopped")
        with pytest.raises(BackendError, match="status must be one of"):
            backend.update_service(ref, status="paused")
        with pytest.raises(BackendError, match="not a published model"):
            backend.update_service(ref, configs=(ServiceConfig("missing", weight=100),))
        with pytest.raises(BackendError, match="positive sum"):
            backend.update_service(ref, configs=(ServiceConfig(v1, weight=0),))
        assert served_by(ref.url, 2) == {v1: 2}
    finally:
        backend.delete_service(ref)


def test_ttl_stops_the_service_by_itself(backend_with_versions):
    """The watchdog is the predictor itself: nothing else has to be alive for it to stop."""
    import time

    backend, (v1, _) = backend_with_versions
    ref = backend.deploy(ServiceSpec(f"ttl-{RUN}", RUN, (ServiceConfig(v1),), ttl_s=2.0))
    try:
        assert backend.services.status(ref.id) == "running"
        deadline = time.time() + 30
        while backend.services.status(ref.id) == "running":
            assert time.time() < deadline, "the ttl did not stop the service"
            time.sleep(0.2)
        assert backend.services.status(ref.id) == "stopped"
        with pytest.raises(requests.ConnectionError):
            requests.get(ref.url + "health", timeout=5)
    finally:
        backend.delete_service(ref)
