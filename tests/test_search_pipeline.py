"""A hyperparameter search end to end on the local backend, killed after its first trial
finished and resumed: finished trials are not run again, the best one is evaluated,
imported and used for batch inference, and nothing is left behind."""

import json
import os
import subprocess
import sys

import pytest

from orchestrator.batch.steps import score
from orchestrator.ledger import Ledger
from pipelines import cli, tiny_pipeline
from test_pipeline_local import assert_nothing_left

pytestmark = pytest.mark.slow

SEARCH = {"algorithm": "grid", "trials": 4, "max_parallel": 2,
          "space": {"lr": {"choices": [0.02, 0.1]}, "num_layers": {"choices": [8, 14]}},
          "objective": {"metric": "val_accuracy", "goal": "max"}}


def test_killed_search_resumes_without_running_finished_trials_again(tmp_path):
    path = tiny_pipeline(tmp_path, train={"search": SEARCH}, evaluate={"workers": 1},
                         service={"when": "train.metrics.val_accuracy > 2"},     # never deploys: saves time
                         batch_predict={"input": "holdout", "output": "obs://orchestrator-demo/out/", "workers": 2})
    env = {**os.environ, "ORCHESTRATOR_FAILPOINT": "train:trial_done"}
    killed = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path), "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    run_id = ledger.runs()[0].run_id
    finished = {r.name for r in ledger.resources(run_id) if r.kind == "job" and "outcome" in r.detail}
    assert len(finished) == 1

    result = cli("run", str(path), "--resume", run_id, "--json", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(result.stdout)
    search = report["steps"]["train"]["search"]
    trials = search["trials"]
    assert [t["rank"] for t in trials] == [1, 2, 3, 4] and len({t["number"] for t in trials}) == 4
    assert all(t["resumed"] for t in trials if t["name"] in finished)
    jobs = [r.name for r in ledger.resources(run_id) if r.kind == "job"]
    assert sorted(jobs) == sorted(set(jobs)), "no trial was submitted twice"
    best = trials[0]
    assert search["best_trial"] == best["number"] and best["status"] == "completed"
    assert report["steps"]["train"]["metrics"]["val_accuracy"] == best["objective"]
    assert search["parallel"] == min(2, os.cpu_count()) and search["threads_per_trial"] >= 1
    assert all((tmp_path / "state" / "runs" / run_id / t["log"]).is_file() for t in trials if t["status"] != "pending")
    assert report["steps"]["evaluate"]["metrics"]["count"] == 9
    assert report["steps"]["deploy"]["status"] == "skipped" and report["steps"]["predict"]["status"] == "skipped"
    batch = report["steps"]["batch_predict"]
    assert batch["count"] == 9 and batch["errors"] == 0
    lines = (tmp_path / "state" / "obs" / "orchestrator-demo" / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 9 and all(json.loads(line)["result"]["predicted_label"] for line in lines)
    assert_nothing_left(tmp_path)


def test_evaluation_scores():
    ok = lambda label, *rest: {"status": 200, "result": {"predicted_label": label,   # noqa: E731
                                                         "scores": [[label, 0.9]] + [[r, 0.05] for r in rest]}}
    metrics = score([("a", ok("a", "b")), ("b", ok("a", "b")), ("b", ok("b")), ("c", {"status": 500, "error": "x"})],
                    ["a", "b", "c"])
    assert metrics["accuracy"] == 0.5 and metrics["top5_accuracy"] == 0.75 and metrics["errors"] == 1
    assert metrics["per_class"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert metrics["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
