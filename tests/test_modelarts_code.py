"""Code written for ModelArts (a tutorial-style training script using moxing, and a Python
2.7 legacy customize_service.py) runs unmodified through the whole local pipeline."""

import json
from pathlib import Path

import pytest

from orchestrator.predictor import loader
from orchestrator.predictor.py2compat import translate
from pipelines import cli

CODE = Path(__file__).parent / "modelarts_code"
pytestmark = pytest.mark.slow


def test_script_and_legacy_service_run_unmodified(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "profiles": {"local": {"backend": "local", "root": str(tmp_path / "state")}}, "poll_interval": 0.2}))
    before = {p: p.read_bytes() for p in CODE.rglob("*") if p.is_file()}
    result = cli("run", str(CODE / "pipeline.yaml"), "--config", str(tmp_path / "config.json"), "--json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["steps"]["predict"]["count"] == 9 and report["steps"]["predict"]["errors"] == 0
    run_dir = Path(report["paths"]["run_dir"])
    answers = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 9 and all(a["status"] == 200 for a in answers)
    labels = (run_dir / "model" / "labels.txt").read_text().split()
    assert {a["predicted_label"] for a in answers} <= set(labels)
    train_log = (run_dir / "logs" / "train.log").read_text()
    assert "model saved to" in train_log and "Epoch[2]" in train_log
    # checkpoints written straight to train_url reached the object store with the package
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == sorted(
        ["caltech-symbol.json", "caltech-0003.params", "labels.txt", "customize_service.py", "config.json"])
    assert {p: p.read_bytes() for p in CODE.rglob("*") if p.is_file() and "__pycache__" not in p.parts} == \
        {p: b for p, b in before.items() if "__pycache__" not in p.parts}, "the user's code is never rewritten"


def test_python2_service_needs_the_compat_mode(tmp_path):
    source = (CODE / "train_code" / "infer" / "customize_service.py").read_text()
    with pytest.raises(SyntaxError):
        compile(source, "customize_service.py", "exec")
    fixed = translate(source)
    compile(fixed, "customize_service.py", "exec")
    assert "print(" in fixed and "range(len(data))" in fixed and ".items()" in fixed
    # A package that says it is Python 3 gets a message saying what to do.
    (tmp_path / "customize_service.py").write_text(source)
    (tmp_path / "config.json").write_text('{"runtime": "python3.6"}')
    with pytest.raises(loader.PackageError, match='"runtime": "python2.7"'):
        loader.load_service(str(tmp_path), "caltech")


def test_translation_leaves_python3_alone():
    py3 = "print('x', end='')\nvalues = list(map(int, '12'))\n"
    assert translate(py3) == py3
    assert translate("x = map(str, [1])[0]\n") == "x = list(map(str, [1]))[0]\n"
