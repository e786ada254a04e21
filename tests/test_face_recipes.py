"""The face job's recipe features end to end on tiny generated faces: resume after a real
SIGKILL, --eval_only of a checkpoint and of a model package, the triplet recipe's two
phases with the exported checkpoint chosen within the final phase, and the MXNet
notebook's data arguments (a plain .rec without .idx or property)."""
import json
import os
import shutil
import signal
import subprocess
import sys

import cv2
import mxnet as mx
import pytest

from jobs.data import generate_faces

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "jobs", "face_recognition", "train.py")
TINY = ["--network=iresnet", "--net_units=1,1,1,1", "--width_mult=0.125", "--emb_size=32",
        "--per_batch_size=16", "--frequent=1", "--lr=0.1", "--verbose=0", "--gallery_images=2",
        "--image_size=48,48", "--num_gpus=0"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def command(data, out, *args):
    return [sys.executable, TRAIN_PY, f"--data_url={data}", f"--train_url={out}", *TINY, *args]


def train(data, out, *args):
    proc = subprocess.run(command(data, out, *args), capture_output=True, text=True,
                          timeout=400, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("faces")
    generate_faces.generate(base / "gen", identities=6, images_per_identity=8,
                            verify_identities=4, pairs=20, seed=5, progress=False)
    return base / "gen"


@pytest.mark.slow
def test_resume_after_sigkill_then_eval_only(data, tmp_path):
    out = tmp_path / "run"
    args = ["--loss=arcface", "--margin_s=16", "--num_epochs=3", "--epoch_size=2",
            "--optimizer=nag", "--lr_schedule=cosine"]
    proc = subprocess.Popen(command(data / "packed", out, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        for line in proc.stdout:
            if line.startswith("Saved checkpoint") and "model-0001.params" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(int(f.name[6:10]) for f in out.glob("model-000?.params"))
    assert [e["epoch"] for e in metrics(out)["epochs"]][:killed_at] == list(range(killed_at))
    assert not (out / "model").exists()

    resumed = train(data / "packed", out, *args)
    assert f"Resuming from model-{killed_at:04d}.params" in resumed.stdout
    assert not any(f"Epoch[{e}] Batch" in resumed.stdout for e in range(killed_at))
    m = metrics(out)
    assert [e["epoch"] for e in m["epochs"]] == [0, 1, 2]
    assert [v["epoch"] for v in m["verification"]] == [0, 1, 2]
    assert m["epochs"][-1]["lr"] == pytest.approx(0.0)  # the cosine schedule ran to its end
    assert m["best"]["accuracy"] == max(v["accuracy"] for v in m["verification"])
    exported = m["final"]["lfw_accuracy"]

    # The exported package and a checkpoint, verified unchanged (no --network needed).
    for pretrained, expected in ((out / "model", exported),
                                 (f"{out / 'model'},3", m["verification"][2]["accuracy"])):
        evaluated = tmp_path / f"eval-{len(str(pretrained))}"
        proc = train(data / "packed", evaluated, "--eval_only", f"--pretrained={pretrained}",
                     "--num_epochs=0", "--lr=0")
        e = metrics(evaluated)
        assert e["mode"] == "eval_only" and e["epochs"] == [] and "Epoch[" not in proc.stdout
        assert e["final"]["lfw_accuracy"] == pytest.approx(expected)
        assert (evaluated / "model" / "face.json").is_file()


def test_eval_only_needs_pretrained(data, tmp_path):
    proc = subprocess.run(command(data / "packed", tmp_path, "--eval_only"), capture_output=True,
                          text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and "--eval_only needs --pretrained" in proc.stderr


@pytest.mark.slow
def test_triplet_recipe_has_two_phases_and_exports_the_final_phase(data, tmp_path):
    proc = train(data / "packed", tmp_path, "--loss=triplet", "--pretrain_epochs=2",
                 "--num_epochs=1", "--epoch_size=2", "--images_per_identity=4",
                 "--mining=batch_min_max", "--pretrain_lr=0.1", "--lr=0.01")
    assert "Phase[1/2] pretrain: loss softmax, epochs 0-1" in proc.stdout
    assert "Phase[2/2] train: loss triplet (batch_min_max), epochs 2-2" in proc.stdout
    m = metrics(tmp_path)
    assert [(p["name"], p["epochs"]) for p in m["phases"]] == [("pretrain", [0, 1]), ("train", [2, 2])]
    assert [e["stage"] for e in m["epochs"]] == ["pretrain", "pretrain", "train"]
    assert m["best"]["phase"] == "train" and m["best"]["epoch"] == 2
    pre_best = m["phases"][0]["best"]["accuracy"]
    assert pre_best == max(v["accuracy"] for v in m["verification"] if v["epoch"] < 2)
    assert m["final"]["lfw_accuracy"] == pytest.approx(m["verification"][-1]["accuracy"])
    never_beat = m["best"]["accuracy"] <= pre_best
    assert bool(m["warnings"]) == never_beat == ("never beat the pre-training" in proc.stderr)
    assert (tmp_path / "model-pretrain-best-0000.params").is_file()


def write_plain_rec(folder, name, images):
    """An im2rec-style .rec (label in the header, no identity table), no .idx."""
    writer = mx.recordio.MXRecordIO(str(folder / name), "w")
    for i, (label, path) in enumerate(images):
        header = mx.recordio.IRHeader(0, float(label), i, 0)
        writer.write(mx.recordio.pack(header, path.read_bytes()))
    writer.close()


@pytest.mark.slow
def test_notebook_data_arguments(data, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    people = sorted((data / "images").iterdir())[:4]
    images = [(label, p) for label, person in enumerate(people) for p in sorted(person.iterdir())]
    write_plain_rec(folder, "celeb_train.rec", images[::2] + images[1::4])
    write_plain_rec(folder, "celeb_val.rec", images[3::4])
    shutil.copy(data / "packed" / "lfw.bin", folder / "lfw.bin")
    assert cv2.imread(str(images[0][1])).shape == (112, 112, 3)
    proc = subprocess.run([sys.executable, TRAIN_PY, f"--data_dir={folder}",
                           f"--train_url={tmp_path / 'out'}", "--train_file=celeb_train.rec",
                           "--val_file=celeb_val.rec", "--num_epoch=1", "--epoch_image_num=32",
                           "--num_embed=16", "--loss=softmax", "--network=iresnet",
                           "--net_units=1,1,1,1", "--width_mult=0.125", "--per_batch_size=16",
                           "--verbose=0", "--image_size=48,48", "--gallery_images=2"],
                          capture_output=True, text=True, timeout=400, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Start training: num_epochs=1 epoch_size=2 batch_size=16" in proc.stdout
    m = metrics(tmp_path / "out")
    assert m["num_classes"] == 4 and m["emb_size"] == 16 and m["targets"] == ["lfw"]
    assert 0 <= m["epochs"][0]["celeb_val_accuracy"] <= 1
    assert "Epoch[0] Validation-celeb_val-accuracy=" in proc.stdout
