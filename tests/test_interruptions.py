"""Nothing survives a run that is stopped: SIGTERM and Ctrl-C tear down in-process;
after SIGKILL, `cleanup` finds and removes the job, the predictor and its port."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipelines import cli, fake_job, tiny_pipeline

pytestmark = pytest.mark.slow


def start_run(path: Path, cwd: Path) -> subprocess.Popen:
    # --no-cache: these tests are about what a killed run leaves; cached outputs outlive runs on purpose
    # (tests/test_workflows.py covers them and `cleanup --cache`)
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path), "--json", "--no-cache"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def job_worker(state: Path):
    for state_file in state.glob("jobs/*/state.json"):
        data = json.loads(state_file.read_text() or "{}")
        if data.get("phase") == "Running" and data.get("worker"):
            return data["worker"]["pid"]
    return None


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_signal_during_training_tears_everything_down(tmp_path, sig, code):
    job = fake_job(tmp_path, "print('training', flush=True); time.sleep(120)")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(job), "hyperparameters": {}})
    proc = start_run(path, tmp_path)
    try:
        worker = wait_for(lambda: job_worker(tmp_path / "state"), 60, "the job to run")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        report = json.loads(out)
        assert report["status"] == "interrupted" and report["steps"]["teardown"]["status"] == "succeeded"
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
        assert json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout) == []
    finally:   # even when an assertion fails, leave nothing running
        proc.kill()
        cli("cleanup", cwd=tmp_path)


def test_sigkill_while_predictor_is_up_then_cleanup(tmp_path):
    images = tmp_path / "many"
    images.mkdir()
    path = tiny_pipeline(tmp_path, predict={"images": str(images)})
    # enough requests that the run is surely still predicting when it is killed
    from jobs.data.generate_classification import generate
    generate(str(tmp_path / "gen"), classes=2, images_per_class=10, seed=3)
    first = sorted((tmp_path / "gen").rglob("*.jpg"))[0]
    for i in range(400):
        shutil.copy(first, images / f"img{i:04d}.jpg")
    proc = start_run(path, tmp_path)
    state = tmp_path / "state"
    try:
        ready = wait_for(lambda: next(iter(state.glob("services/*/ready.json")), None), 240, "the predictor")
        time.sleep(0.3)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    try:
        check_cleanup_after_sigkill(tmp_path, state, ready)
    finally:   # even when an assertion fails, leave no predictor behind
        cli("cleanup", cwd=tmp_path)


def check_cleanup_after_sigkill(tmp_path: Path, state: Path, ready: Path) -> None:
    service = json.loads(ready.read_text())
    predictor = psutil.Process(service["pid"])
    assert predictor.is_running(), "the predictor outlives its orchestrator until cleanup"
    listed = json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert {"service", "model", "job", "object_prefix", "temp_dir"} <= {item["kind"] for item in listed}
    result = cli("cleanup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    gone, _ = psutil.wait_procs([predictor], timeout=10)
    assert gone, "cleanup stopped the predictor"
    assert port_is_free(service["port"])
    assert json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout) == []
    survivors = [p for p in psutil.process_iter(["cmdline"]) if any(str(state) in c for c in p.info["cmdline"] or [])]
    assert survivors == []
    assert "cleaned" in cli("status", cwd=tmp_path).stdout
