"""The command line as a user meets it: exit codes, messages, no tracebacks."""

import json
import subprocess
import sys

from pipelines import REPO, cli, tiny_pipeline


def test_validate_and_plan_the_default_pipeline():
    result = cli("validate", "pipeline.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    result = cli("plan", "pipeline.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    for word in ("Prepare data", "Train", "Deploy", "Tear down", "emulated on the CPU"):
        assert word in result.stdout
    plan = json.loads(cli("plan", "pipeline.yaml", "--json", cwd=REPO).stdout)
    assert plan["job"]["name"].startswith("caltech-demo-") and plan["backend"] == "local"


def test_user_errors_exit_2_fast_with_one_clear_message(tmp_path):
    cases = {
        "name: demo\ntrain:\n  hyperparamters: {}\n": ("pipeline.yaml:3", "did you mean 'hyperparameters'"),
        "name: demo\ndata:\n  source: no/such/folder\n": ("pipeline.yaml:3", "data.source", "does not exist"),
        "name: demo\nservice:\n  instance_count: -1\n": ("pipeline.yaml:3", "service.instance_count"),
    }
    for text, expected in cases.items():
        (tmp_path / "pipeline.yaml").write_text(text)
        result = cli("validate", "pipeline.yaml", cwd=tmp_path)
        assert result.returncode == 2, (text, result.stderr)
        assert "Traceback" not in result.stderr
        for part in expected:
            assert part in result.stderr, (part, result.stderr)
    # "at once": nothing heavy is loaded and nothing is created before the error is reported
    probe = ("import sys; from orchestrator.cli import main; code = main(['validate', 'pipeline.yaml']); "
             "print(code, sorted(m for m in ('mxnet', 'cv2', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "2 []", result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]


def test_run_with_bad_file_fails_before_any_side_effect(tmp_path):
    path = tiny_pipeline(tmp_path)
    path.write_text(path.read_text() + "extra_key: 1\n")
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "unknown key 'extra_key'" in result.stderr
    assert not (tmp_path / "state").exists()


def test_status_cleanup_and_logs_on_an_empty_root(tmp_path):
    tiny_pipeline(tmp_path)
    assert "no runs yet" in cli("status", cwd=tmp_path).stdout
    assert "nothing to clean up" in cli("cleanup", "--dry-run", cwd=tmp_path).stdout
    result = cli("logs", "nope", cwd=tmp_path)
    assert result.returncode == 2 and "nope" in result.stderr


def test_schema_export(tmp_path):
    result = cli("schema", "--output", str(tmp_path / "s.json"), cwd=REPO)
    assert result.returncode == 0
    assert "train" in json.loads((tmp_path / "s.json").read_text())["properties"]
