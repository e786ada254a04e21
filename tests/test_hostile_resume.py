"""Resuming a run after faults (issue 12): a dead service is redeployed, not reused; two
``run --resume`` of one run cannot both take it over."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from orchestrator.errors import UserError
from orchestrator.ledger import Ledger
from orchestrator.reconcile import live
from pipelines import cli
from test_faults import killed_run


@pytest.mark.slow
def test_resume_redeploys_a_service_whose_predictor_died(tmp_path):
    path, run_id = killed_run(tmp_path, "predict:running")
    service = json.loads(next((tmp_path / "state").glob("services/*/service.json")).read_text())
    front = psutil.Process(service["process"]["pid"])
    front.kill()                      # the service folder stays; its predictor is gone
    front.wait(10)
    status = cli("status", run_id, cwd=tmp_path).stdout     # says what is true, not what the ledger last heard
    assert "crashed" in status.splitlines()[0], status
    assert any(line.split()[0] == "service" and "created, failed" in line for line in status.splitlines()[1:]), status
    result = cli("run", str(path), "--resume", run_id, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded" and not report["steps"]["deploy"].get("resumed")
    assert report["steps"]["predict"]["errors"] == 0


def test_a_run_is_taken_over_by_one_resume_only(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    # started by an owner that crashed (pid 999999999 does not exist)
    ledger.start_run("261204-120000-abcd", "p", "p.yaml", "local", "local", 999_999_999, 1.0, str(tmp_path))
    first = psutil.Process()                                       # this process resumes it...
    ledger.resume_run("261204-120000-abcd", first.pid, first.create_time(), owned=live)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:                                                           # ... so a second resumer is refused
        second = psutil.Process(other.pid)
        with pytest.raises(UserError, match="already running"):
            Ledger(tmp_path / "ledger.sqlite").resume_run("261204-120000-abcd", second.pid, second.create_time(),
                                                          owned=live)
    finally:
        other.kill()
        other.wait()
    assert ledger.run("261204-120000-abcd").owner_pid == first.pid
