"""The example face pipelines (examples/face_*.yaml, the tutorials' recipes) train end to
end: each one's hyperparameters (network, embedding, loss, margins, optimiser, schedule)
run through the real job on tiny generated faces, shortened to 1-2 updates per phase at
48x48 (the networks are the full-size ones; 112x112 costs minutes per test on 2 shared
cores), small batches, no verification pairs and no export. The triplet recipe runs once
per mining strategy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.data import generate_faces

REPO = Path(__file__).resolve().parent.parent
TRAIN_PY = REPO / "jobs" / "face_recognition" / "train.py"
SHORT = {"num_epochs": 1, "num_epoch": 1, "epoch_size": 2, "epoch_image_num": None,
         "pretrain_epochs": 1, "export_model": False, "verbose": 0, "frequent": 1,
         "per_batch_size": 8}
STRATEGIES = ("batch_all", "batch_random", "batch_min_min", "batch_min_max", "batch_hardest")


def hyperparameters(name):
    spec = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    return spec["train"]["hyperparameters"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("faces")
    generate_faces.generate(base / "gen", identities=6, images_per_identity=6,
                            verify_identities=4, pairs=20, seed=7, progress=False)
    no_pairs = base / "no-pairs"  # IResNet-50: verifying 40 faces costs more than training
    shutil.copytree(base / "gen" / "packed", no_pairs)
    (no_pairs / "lfw.bin").unlink()
    return no_pairs


def run(data, out, hp, **override):
    """train.py with the example's hyperparameters, shortened (SHORT where they set it)."""
    hp = dict(hp)
    hp.update({k: v for k, v in SHORT.items()
               if k in hp or k in ("epoch_size", "export_model", "per_batch_size")})
    size = min(int(str(hp.get("image_size", "112")).split(",")[0]), 48)
    hp["image_size"] = f"{size},{size}"
    hp.update(override)
    hp.pop("target", None)   # no pairs in the data folder
    args = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in hp.items()
            if v is not None]
    proc = subprocess.run([sys.executable, str(TRAIN_PY), f"--data_url={data}",
                           f"--train_url={out}", *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), proc


@pytest.mark.slow
@pytest.mark.parametrize("name", ["face_arcface_mobilefacenet", "face_softmax", "face_cosface_small"])
def test_classification_recipes_train(data, tmp_path, name):
    hp = hyperparameters(name)
    metrics, _ = run(data, tmp_path, hp)
    assert [e["epoch"] for e in metrics["epochs"]] == [0]
    assert metrics["loss"] == hp["loss"] and metrics["emb_size"] == hp.get("emb_size", hp.get("num_embed"))
    assert metrics["final"]["train_loss"] > 0


@pytest.mark.slow
def test_iresnet50_recipe_takes_real_steps(data, tmp_path):
    hp = hyperparameters("face_arcface_iresnet50")
    assert hp["network"] == "r50" and hp["emb_size"] == 512
    metrics, proc = run(data, tmp_path, hp, per_batch_size=2, epoch_size=1)
    assert "Network iresnet-50 width=1.0 emb 512" in proc.stdout
    assert metrics["epochs"][0]["train_loss"] > 0 and (tmp_path / "model-0001.params").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("mining", STRATEGIES)
def test_triplet_recipe_with_each_mining_strategy(data, tmp_path, mining):
    hp = dict(hyperparameters("face_triplet"), mining=mining)
    metrics, proc = run(data, tmp_path, hp, epoch_size=1, images_per_identity=3,
                        per_batch_size=9)
    assert [p["name"] for p in metrics["phases"]] == ["pretrain", "train"]
    assert metrics["mining"] == mining and [e["stage"] for e in metrics["epochs"]] == ["pretrain", "train"]
    assert metrics["epochs"][1]["triplets_per_batch"] >= 0
