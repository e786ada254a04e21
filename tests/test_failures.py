"""Failures other than a killed orchestrator: a job that hangs past max_runtime with the
orchestrator gone, a predictor that cannot start, and two pipelines running at once."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.backends.base import JobRef
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.ledger import Ledger
from pipelines import REPO, cli, fake_job, tiny_pipeline

pytestmark = pytest.mark.slow


def processes_under(state: Path) -> list:
    import psutil
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any(str(state) in part for part in p.info["cmdline"] or [])]


def test_hung_job_is_stopped_at_max_runtime_even_with_the_orchestrator_gone(tmp_path):
    code = fake_job(tmp_path, "print('started', flush=True)\ntime.sleep(600)")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": {}, "max_runtime": "3s"})
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path), "--json"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "state"
    deadline = time.time() + 60
    while not any("started" in p.read_text() for p in state.glob("jobs/*/logs/worker-0.log")):
        assert time.time() < deadline, "the job never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)          # nobody is left to stop the job but its supervisor
    proc.wait()
    backend = LocalBackend(state)
    job = next(r for r in backend.list_resources() if r.kind == "job")
    deadline = time.time() + 30
    while (status := backend.job_status(JobRef(job.id, job.name))).phase == "Running":
        assert time.time() < deadline
        time.sleep(0.2)
    assert status.phase == "Failed" and "max_runtime" in status.reason
    assert processes_under(state / "jobs") == []
    assert cli("cleanup", cwd=tmp_path).returncode == 0
    assert backend.list_resources() == []


BROKEN_EXPORT = f"""
import json, os, shutil
train_url = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--train_url=')][0]
model = os.path.join(train_url, 'model')
os.makedirs(model)
shutil.copy({str(REPO / 'inference' / 'image_classification' / 'config.json')!r}, model)
open(os.path.join(model, 'net-symbol.json'), 'w').write('{{}}')
open(os.path.join(model, 'net-0001.params'), 'wb').write(b'')
open(os.path.join(model, 'customize_service.py'), 'w').write(
    'from mms.model_service.mxnet_model_service import MXNetBaseService\\n'
    'class S(MXNetBaseService):\\n'
    '    def __init__(self, model_name, model_path):\\n'
    '        raise RuntimeError("cannot load the weights: broken on purpose")\\n')
"""


def test_predictor_that_cannot_start_fails_deploy_with_its_reason(tmp_path):
    code = fake_job(tmp_path, BROKEN_EXPORT)
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": {}},
                         service={"deploy_timeout": "60s"})
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["steps"]["deploy"]["status"] == "failed"
    assert "broken on purpose" in report["error"]
    assert report["steps"]["teardown"]["status"] == "succeeded"
    assert processes_under(tmp_path / "state") == []
    assert LocalBackend(tmp_path / "state").list_resources() == []


def test_two_pipelines_at_once_do_not_collide(tmp_path):
    path = tiny_pipeline(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path), "--json", "--keep"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
        for proc, (_, err) in zip(procs, outputs):
            assert proc.returncode == 0, err[-2000:]
        reports = [json.loads(out) for out, _ in outputs]
        ids = {r["run_id"] for r in reports}
        urls = {r["steps"]["deploy"]["url"] for r in reports}
        assert len(ids) == 2 and len(urls) == 2, "run ids and ports differ"
        ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
        for run_id in ids:
            names = {r.name for r in ledger.resources(run_id)}
            assert all(run_id in n for n in names), names
        for report in reports:                # both services answered, each with its own model
            assert report["steps"]["predict"]["errors"] == 0
    finally:                                  # --keep left the services up, whatever happened
        assert cli("cleanup", cwd=tmp_path).returncode == 0
    assert LocalBackend(tmp_path / "state").list_resources() == []
    assert processes_under(tmp_path / "state") == []
