"""The fault-injection matrix: the orchestrator is SIGKILLed at each phase of a run (no
teardown of any kind can run), then either

* ``cleanup`` runs, and afterwards no process of the run is alive, no port is held, no
  service, model or job is registered, no object or temporary folder is left; or
* ``run --resume RUN`` continues the same run: finished steps are skipped, a job still
  running is re-attached, and the run succeeds (and then tears down as usual).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from orchestrator.backends.local.backend import LocalBackend
from orchestrator.ledger import Ledger
from pipelines import cli, tiny_pipeline

pytestmark = pytest.mark.slow

POINTS = ["prepare:end", "upload:start", "train:running", "import_model:end", "deploy:end", "predict:running",
          "teardown:running"]


def killed_run(tmp_path: Path, point: str) -> tuple[Path, str]:
    path = tiny_pipeline(tmp_path, train={"hyperparameters": {"num_layers": 8, "image_shape": "3,32,32",
                                                              "num_epochs": 2, "batch_size": 8, "disp_batches": 1}})
    env = {**os.environ, "ORCHESTRATOR_FAILPOINT": point}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path), "--json"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -9, (point, proc.returncode, proc.stderr[-2000:])
    runs = Ledger(tmp_path / "state" / "ledger.sqlite").runs()
    assert len(runs) == 1 and runs[0].status == "running"     # the ledger knows it did not finish
    return path, runs[0].run_id


def ports_of(ledger: Ledger, run_id: str) -> list[int]:
    urls = [r.detail.get("url", "") for r in ledger.resources(run_id) if r.kind == "service"]
    return [int(u.split(":")[2].split("/")[0]) for u in urls if u]


def assert_nothing_left(state: Path, run_id: str, ports: list[int]) -> None:
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any(str(state) in part for part in p.info["cmdline"] or [])]
    assert left == [], left
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still held"
    assert LocalBackend(state).list_resources(run_id) == []
    assert Ledger(state / "ledger.sqlite").live_resources(run_id) == []
    assert not (state / "tmp").exists() or not list((state / "tmp").glob("*"))


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_then_cleanup_leaves_nothing(tmp_path, point):
    _, run_id = killed_run(tmp_path, point)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    ports = ports_of(ledger, run_id)
    result = cli("cleanup", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(tmp_path / "state", run_id, ports)
    assert ledger.run(run_id).status == "cleaned"


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_then_resume_succeeds(tmp_path, point):
    path, run_id = killed_run(tmp_path, point)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    ports = ports_of(ledger, run_id)
    result = cli("run", str(path), "--resume", run_id[:13], "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(result.stdout)
    assert report["run_id"] == run_id and report["status"] == "succeeded"
    steps = report["steps"]
    done_before = POINTS.index(point)
    if done_before > POINTS.index("prepare:end"):
        assert steps["prepare"].get("resumed"), "prepared data is reused"
    if point == "train:running":
        assert "re-attached" in str(steps["train"].get("resumed")), "the running job is followed, not restarted"
    if done_before > POINTS.index("train:running"):
        assert steps["train"].get("resumed"), "the finished job is reused"
    if done_before >= POINTS.index("import_model:end"):
        assert steps["import_model"].get("resumed"), "the imported model is reused"
    if point in ("predict:running", "deploy:end"):
        assert steps["deploy"].get("resumed"), "the running service is reused"
    if point == "teardown:running":     # teardown removed the service first, then was killed
        assert not steps["deploy"].get("resumed")
    assert ledger.run(run_id).status == "succeeded"
    assert_nothing_left(tmp_path / "state", run_id, ports)


def test_resume_refuses_another_pipelines_run(tmp_path):
    _, run_id = killed_run(tmp_path, "import_model:end")
    (tmp_path / "other").mkdir()
    other = tiny_pipeline(tmp_path / "other", name="other")
    result = cli("run", str(other), "--resume", run_id, "--config", str(tmp_path / "config.json"), cwd=tmp_path)
    assert result.returncode == 2 and "belongs to pipeline 'tiny'" in result.stderr
    assert cli("cleanup", cwd=tmp_path).returncode == 0


def test_killed_training_job_restarts_from_its_checkpoint_on_resume(tmp_path):
    """The job's worker dies mid-training (SIGKILL): the run fails, keeps its resources
    (teardown on_success), and `run --resume` trains on from the last synced checkpoint."""
    import re
    import time

    path = tiny_pipeline(tmp_path, teardown={"when": "on_success"},
                         train={"hyperparameters": {"num_layers": 8, "image_shape": "3,32,32", "num_epochs": 12,
                                                    "batch_size": 8, "disp_batches": 1}})
    env = {"ORCHESTRATOR_OUTPUT_SYNC_S": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path), "--json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    state = tmp_path / "state"
    deadline = time.time() + 120
    while not list(state.glob("obs/*/tiny/**/output/resnet-8-0003.params")):   # cached outputs: tiny/cache/<run>/
        assert time.time() < deadline and proc.poll() is None, "no checkpoint reached the store"
        time.sleep(0.05)
    worker = next(json.loads(p.read_text())["worker"]["pid"] for p in state.glob("jobs/*/state.json"))
    os.kill(worker, 9)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and json.loads(out)["status"] == "failed"
    run_id = json.loads(out)["run_id"]

    result = cli("run", str(path), "--resume", run_id, "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    train_log = (Path(json.loads(result.stdout)["paths"]["run_dir"]) / "logs" / "train.log").read_text()
    resumed = re.findall(r"Resuming from resnet-8-(\d{4})\.params", train_log)
    assert resumed and int(resumed[-1]) >= 3, "the new job continued from a checkpoint of the killed one"
    assert cli("cleanup", cwd=tmp_path).returncode == 0


def test_a_new_run_points_at_the_unfinished_one(tmp_path):
    path, run_id = killed_run(tmp_path, "deploy:end")
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"--resume {run_id}" in result.stderr and f"cleanup --run {run_id}" in result.stderr
    assert cli("cleanup", cwd=tmp_path).returncode == 0
