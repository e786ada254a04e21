"""Workflows end to end on the local backend: parameters, when: conditions (skipped steps,
teardown still runs) and caching across runs (reuse, --no-cache, a changed
hyperparameter re-trains)."""

import json
import sys

import pytest

from orchestrator.cache import CacheStore
from pipelines import cli, fake_job, tiny_pipeline
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


def test_changing_model_optimize_reuses_the_training_but_never_a_converted_package(tmp_path):
    """int8 in the first run, fp32 in the second: the second reuses the cached training
    output, and that output is still the network as trained (the conversion was stored under
    the first run's own prefix), so the second run imports and serves fp32."""
    from test_optimize import tiny_package

    from orchestrator.predictor.loader import runtime_dir

    package = tiny_package(tmp_path / "trained")        # what the (fake, instant) training job exports
    code = fake_job(tmp_path, "import os, shutil\n"
                    "out = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--train_url=')][0]\n"
                    f"shutil.copytree({str(package)!r}, os.path.join(out, 'model'))")
    sections = {"train": {"code_dir": str(code), "hyperparameters": {}},
                "parameters": {"serve": 0}, "service": {"when": "params.serve > 0"}}   # import, then skip deploy
    tiny_pipeline(tmp_path, model={"optimize": "int8", "min_top1_agreement": 0.0}, **sections)
    first = run(tmp_path)
    assert first["steps"]["import_model"]["optimize"]["mode"] == "int8"
    tiny_pipeline(tmp_path, model={"optimize": "fp32"}, **sections)
    second = run(tmp_path)
    assert second["steps"]["train"]["cached_from"] == first["run_id"]
    assert "optimize" not in second["steps"]["import_model"]

    sys.path.insert(0, runtime_dir())
    from mms import optimized

    runs = tmp_path / "state" / "runs"
    assert optimized.read_manifest(str(runs / first["run_id"] / "model"))["mode"] == "int8"
    assert optimized.read_manifest(str(runs / second["run_id"] / "model")) is None, "the imported package is fp32"
    cached = [p.parent for p in (tmp_path / "state" / "obs").rglob("cache/*/output/model/customize_service.py")]
    assert len(cached) == 1 and not (cached[0] / "optimize.json").exists() and not (cached[0] / "optimized").exists()
    assert_nothing_left(tmp_path)
