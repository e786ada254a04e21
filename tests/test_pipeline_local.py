"""The whole pipeline on the local backend, tiny: real data tools, a real MXNet job, a real
predictor over HTTP, real SQLite, and nothing left behind afterwards."""

import json
from pathlib import Path

import psutil
import pytest

from orchestrator import Pipeline
from orchestrator.errors import StepFailed, UserError
from pipelines import cli, fake_job, tiny_pipeline

pytestmark = pytest.mark.slow


def run_processes_of(root: Path) -> list[psutil.Process]:
    """Processes whose command line points into the test's state folder."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(root) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def assert_nothing_left(tmp_path: Path) -> None:
    dry = cli("cleanup", "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == []
    assert run_processes_of(tmp_path / "state") == []
    services = tmp_path / "state" / "services"
    assert not services.exists() or not list(services.glob("*"))


def test_cli_run_end_to_end_json_summary(tmp_path):
    path = tiny_pipeline(tmp_path)
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert list(report["steps"]) == ["prepare", "upload", "train", "import_model", "deploy", "predict", "teardown"]
    assert all(step["status"] == "succeeded" for step in report["steps"].values())
    predict = report["steps"]["predict"]
    assert predict["count"] == 9 and predict["errors"] == 0
    assert report["steps"]["train"]["metrics"], "metrics.json of the job is read back"
    run_dir = Path(report["paths"]["run_dir"])
    assert json.loads((run_dir / "report.json").read_text())["status"] == "succeeded"
    assert "Epoch[0]" in (run_dir / "logs" / "train.log").read_text()
    answers = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 9 and all(a["expected"] and a["predicted_label"] for a in answers)
    # the accuracy reported is the share of held-out images whose answer names their true class
    correct = sum(a["predicted_label"] == a["expected"] for a in answers)
    assert report["accuracy"] == pytest.approx(correct / 9) and predict["accuracy"] == report["accuracy"]
    assert (run_dir / "model" / "customize_service.py").is_file(), "a copy of the model package is kept"
    assert any("emulated on the CPU" in n for n in report["notes"])
    assert_nothing_left(tmp_path)
    status = cli("status", cwd=tmp_path)
    assert report["run_id"] in status.stdout and "succeeded" in status.stdout
    logs = cli("logs", report["run_id"][:10], cwd=tmp_path)
    assert logs.returncode == 0 and "Epoch[0]" in logs.stdout


def test_pipeline_object_step_by_step_in_a_notebook_style(tmp_path):
    events = []
    with Pipeline.from_yaml(tiny_pipeline(tmp_path), on_event=events.append) as p:
        with pytest.raises(UserError, match="call upload"):
            p.train()
        p.prepare()
        p.upload()
        assert p.backend.storage.exists(p.plan.data.data_uri + "train.rec")
        p.train()
        p.import_model()
        service = p.deploy()
        assert service.url.startswith("http://127.0.0.1:")
        summary = p.predict()
        assert summary["count"] == 9
    kinds = {e.kind for e in events}
    assert {"step_start", "step_end", "progress", "prediction"} <= kinds
    assert p.report.status == "succeeded" and p.report.steps["teardown"]["status"] == "succeeded"
    assert_nothing_left(tmp_path)


def test_failing_job_is_reported_and_torn_down(tmp_path):
    code = fake_job(tmp_path, "print('loading'); print('bad things', file=sys.stderr); sys.exit(3)")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": {}})
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["status"] == "failed"
    assert "exited with code 3" in report["error"] and "bad things" in report["error"]
    assert report["steps"]["teardown"]["status"] == "succeeded"
    assert "deploy" not in report["steps"]
    assert_nothing_left(tmp_path)


def test_failing_pipeline_object_raises_step_failed_and_cleans(tmp_path):
    code = fake_job(tmp_path, "sys.exit(5)")
    p = Pipeline.from_yaml(tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": {}}))
    with pytest.raises(StepFailed, match="code 5"):
        p.run()
    assert p.report.status == "failed"
    assert_nothing_left(tmp_path)
