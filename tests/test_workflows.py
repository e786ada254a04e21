"""Workflows end to end on the local backend: parameters, when: conditions (skipped steps,
teardown still runs) and caching across runs (reuse, --no-cache, a changed
hyperparameter re-trains)."""

import json

import pytest

from orchestrator.cache import CacheStore
from pipelines import cli, tiny_pipeline
from test_pipeline_local import assert_nothing_left

pytestmark = pytest.mark.slow

GATED = {"parameters": {"gate": {"type": "float", "default": 2.0, "description": "deploy above this accuracy"},
                        "lr": 0.05},
         "train": {"hyperparameters": {"num_layers": 20, "image_shape": "3,32,32", "num_epochs": 1, "batch_size": 8,
                                       "lr": "${params.lr}", "disp_batches": 2}},
         "service": {"when": "train.metrics.val_accuracy >= params.gate"}}


def run(tmp_path, *args):
    result = cli("run", str(tmp_path / "pipeline.yaml"), "--json", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def test_conditions_skip_and_cache_reuses_across_runs(tmp_path):
    tiny_pipeline(tmp_path, **GATED)
    first = run(tmp_path)
    steps = first["steps"]
    assert steps["import_model"]["status"] == "succeeded"
    assert steps["deploy"]["status"] == steps["predict"]["status"] == "skipped"
    assert steps["deploy"]["reason"] == "condition is false: train.metrics.val_accuracy >= params.gate"
    assert steps["predict"]["reason"] == "needs deploy, which was skipped"
    assert steps["teardown"]["status"] == "succeeded" and first["status"] == "succeeded"
    assert first["parameters"] == {"gate": {"value": 2.0, "source": "default"}, "lr": {"value": 0.05, "source": "default"}}
    assert all(steps[s]["cache"]["hit"] is False for s in ("prepare", "upload", "train"))
    assert_nothing_left(tmp_path)                     # cached outputs are not leftovers

    second = run(tmp_path, "-p", "gate=0")            # same data, code and hyperparameters
    for step in ("prepare", "upload", "train"):
        assert second["steps"][step]["cached_from"] == first["run_id"], step
    assert second["steps"]["train"]["metrics"] == steps["train"]["metrics"]
    assert second["steps"]["deploy"]["status"] == "succeeded" and second["steps"]["predict"]["count"] == 9
    assert second["parameters"]["gate"] == {"value": 0.0, "source": "-p"}

    third = run(tmp_path, "-p", "lr=0.07")            # one hyperparameter changed: trains again
    assert third["steps"]["upload"]["cached_from"] == first["run_id"]
    assert "cached_from" not in third["steps"]["train"] and third["steps"]["train"]["cache"]["hit"] is False

    cleaned = cli("cleanup", "--cache", cwd=tmp_path)
    assert cleaned.returncode == 0 and "deleted cached train output" in cleaned.stdout
    assert not list((tmp_path / "state" / "obs").rglob("*.params")), "cached models removed"
    assert CacheStore(tmp_path / "state").entries() == [] and not (tmp_path / "state" / "cache").exists()
    assert_nothing_left(tmp_path)
