"""The report's data without a run: per-worker and per-trial curves, cached and skipped
steps, confusion matrix and ROC numbers, hostile labels, tracking paths (fast, no MXNet)."""

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.results import analysis, page, rundata
from orchestrator.spec import MlflowTracking


def run_folder(tmp_path: Path, steps: dict, files: dict | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "report.json").write_text(json.dumps({"run_id": "r1", "pipeline": "p", "status": "succeeded",
                                                 "steps": steps}))
    for name, content in (files or {}).items():
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return run


def plots_of(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(d)))
            for d in re.findall(r"<img class='plot'[^>]*src='data:image/png;base64,([^']+)'", html)]


def test_distributed_log_gives_one_curve_per_worker(tmp_path):
    lines = []
    for epoch in range(3):
        for w in (1, 2):
            lines += [f"[worker-{w}] Epoch[{epoch}] Batch [0-5]\tSpeed: {100 * w + epoch}.0 samples/sec\taccuracy=0.5",
                      f"[worker-{w}] Epoch[{epoch}] Train-accuracy={0.5 + 0.1 * epoch}",
                      f"[worker-{w}] Epoch[{epoch}] Validation-accuracy={0.4 + 0.1 * epoch}",
                      f"[worker-{w}] Epoch[{epoch}] Validation-cross-entropy={2 - epoch}"]
    run = run_folder(tmp_path, {}, {"logs/train.log": "\n".join(lines)})
    data = rundata.load(run)
    assert [s.label for s in data.series] == ["worker-1", "worker-2"]
    assert data.series[1].values("samples_per_s") == ([1, 2, 3], [200.0, 201.0, 202.0])
    assert data.series[0].values("val_accuracy")[1] == pytest.approx([0.4, 0.5, 0.6])
    html = page.render(data)
    assert len(plots_of(html)) == 1   # the curves (no steps: no timeline)
    assert "<h2>Training</h2>" in html


def test_search_trials_each_get_a_curve_and_cached_or_skipped_steps_are_marked(tmp_path):
    epochs = lambda acc: {"epochs": [{"epoch": i, "val_accuracy": a, "lr": 0.1} for i, a in enumerate(acc)]}
    trials = [{"rank": 1, "number": 2, "status": "completed", "objective": 0.8, "hyperparameters": {"lr": 0.1}},
              {"rank": 2, "number": 1, "status": "stopped", "objective": None, "hyperparameters": {"lr": 0.01},
               "reason": "median rule: behind the other trials"}]
    steps = {"train": {"status": "succeeded", "seconds": 0.1, "started_at": 100.0, "cached_from": "run-123",
                       "search": {"metric": "val_accuracy", "goal": "max", "trials": trials}},
             "prepare": {"status": "succeeded", "seconds": 2.0, "started_at": 98.0},
             "deploy": {"status": "skipped", "seconds": 0.0, "started_at": 101.0, "reason": "val_accuracy < 0.9"}}
    run = run_folder(tmp_path, steps, {"metrics.json": epochs([0.5, 0.7]), "metrics-t01.json": epochs([0.4, 0.6]),
                                       "metrics-t02.json": epochs([0.3, 0.8])})
    data = rundata.load(run)
    assert [s.label for s in data.series] == ["job", "t01", "t02"]
    assert list(data.steps) == ["prepare", "train", "deploy"], "in the order they ran"
    html = page.render(data)
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", html)
    assert ("Train", "cached") in rows and ("Deploy service", "skipped") in rows
    assert "reason val_accuracy &lt; 0.9" in html and "cached_from run-123" in html
    assert "Search: 2 trials by val_accuracy (max)" in html
    assert "<tr><td>1</td><td>t02</td><td>completed</td><td>0.8</td><td>lr=0.1</td>" in html
    assert "median rule: behind the other trials" in html
    assert len(plots_of(html)) == 2 and all(img.width > 300 for img in plots_of(html))


def test_confusion_matrix_roc_and_the_too_small_warning():
    preds = [{"expected": "a", "predicted_label": "a"}, {"expected": "a", "predicted_label": "b"},
             {"expected": "b", "predicted_label": "b"}, {"expected": "c", "predicted_label": "x"},
             {"expected": None, "predicted_label": "a"}, {"expected": "b", "predicted_label": None, "error": "503"}]
    conf = analysis.confusion(preds, ["a", "b", "c"])
    assert conf.labels == ["a", "b", "c", "x"]
    assert conf.matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert conf.per_class == ([0.5, 1.0, 0.0, 0.0], [2, 1, 1, 0])
    assert analysis.confusion([{"expected": None, "predicted_label": "a"}]) is None

    far, tar = analysis.roc([0.1, 0.5, 0.2, 0.9], [True, False, True, False])
    assert tar.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0] and far.tolist() == [0.0, 0.0, 0.0, 0.5, 1.0]
    small = analysis.too_small("lfw", np.array([True, False] * 300), folds=10, far_target=1e-3)
    assert "300 different-person pairs, 30 per fold" in small and "1000 per fold" in small
    assert analysis.too_small("lfw", np.array([True, False] * 10000), folds=10, far_target=1e-3) is None


def test_hostile_labels_and_errors_are_escaped(tmp_path):
    preds = [{"file": "/x/<img src=x onerror=alert(1)>.jpg", "expected": "<b>cat</b>", "predicted_label": "</table>",
              "correct": False, "seconds": 0.01, "score": 0.9},
             {"file": "/x/2.jpg", "expected": "dog", "predicted_label": None, "correct": None, "seconds": 0.02,
              "error": "<script>alert(2)</script>"}]
    run = run_folder(tmp_path, {"predict": {"status": "failed", "seconds": 1.0, "error": "<script>x</script>"}},
                     {"predictions.jsonl": "\n".join(json.dumps(p) for p in preds)})
    html = page.render(rundata.load(run))
    assert "<script" not in html and "<b>cat" not in html and "predicted <b></table>" not in html
    assert "&lt;b&gt;cat&lt;/b&gt;" in html and "error: &lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_an_unreadable_or_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        rundata.load(tmp_path)
    run = run_folder(tmp_path, {}, {"metrics.json": "{not json", "predictions.jsonl": 'garbage\n{"file": "a"}\n'})
    data = rundata.load(run)
    assert data.metrics == {} and data.predictions == ({"file": "a"},)
    assert "<h1>Run r1" in page.render(data)


def test_tracking_paths_are_relative_to_config_json():
    base = Path("/base")
    resolved = MlflowTracking(tracking_uri="sqlite:///state/mlflow.db").resolved(base)
    assert resolved.tracking_uri == "sqlite:////base/state/mlflow.db"
    assert resolved.artifact_location == "/base/state/mlartifacts"
    assert MlflowTracking(tracking_uri="http://127.0.0.1:5000").resolved(base).artifact_location is None
    assert MlflowTracking(tracking_uri="mlruns").resolved(base).tracking_uri == "/base/mlruns"
    assert MlflowTracking(tracking_uri="file:/abs/mlruns").resolved(base).tracking_uri == "file:/abs/mlruns"
