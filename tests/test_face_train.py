"""jobs/face_recognition/train.py end to end on tiny generated faces: ArcFace training with
verification, metrics.json, the exported package (validated and served), then triplet
fine-tuning from its checkpoint; plus one-line errors for bad input."""
import importlib.util
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jobs.data import generate_faces
from orchestrator.model_package import validate_package
from orchestrator.progress import TrainingProgress, update

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "jobs", "face_recognition", "train.py")
RUNTIME = os.path.join(REPO, "orchestrator", "runtime")
TINY = ["--network=iresnet", "--net_units=1,1,1,1", "--width_mult=0.125", "--emb_size=32",
        "--per_batch_size=16", "--frequent=2", "--lr=0.1", "--wd=0.0005"]


def train(data, out, *args, timeout=400):
    return subprocess.run([sys.executable, TRAIN_PY, f"--data_url={data}", f"--train_url={out}",
                           "--num_gpus=0", *TINY, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("faces")
    generate_faces.generate(base / "gen", identities=6, images_per_identity=8,
                            verify_identities=4, pairs=20, seed=3, progress=False)
    return base / "gen" / "packed"


@pytest.fixture(scope="module")
def arcface_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("arcface")
    proc = train(data, out, "--loss=arcface", "--margin_s=16", "--num_epochs=2", "--verbose=2",
                 "--epoch_size=3", "--some_platform_flag=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def face_service(model):
    """The package's own customize_service.py, loaded as the runtime does."""
    if RUNTIME not in sys.path:
        sys.path.insert(0, RUNTIME)
    spec = importlib.util.spec_from_file_location("trained_face_service", model / "customize_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FaceRecognitionService("face", str(model))


@pytest.mark.slow
def test_log_has_speedometer_and_verification_lines(arcface_run):
    _, proc = arcface_run
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Start training: num_epochs=2 epoch_size=3 batch_size=16")
    progress = TrainingProgress()
    for line in lines:
        progress = update(progress, line) or progress
    assert progress.num_epochs == 2 and progress.epochs_done == 2 and progress.speed > 0
    assert "Train-accuracy" in progress.metrics and "Validation-accuracy" in progress.metrics
    assert any(re.fullmatch(r"Epoch\[1\] Batch \[\d+-\d+\]\tSpeed: [\d.]+ samples/sec\t"
                            r"accuracy=[\d.]+\tloss=[\d.]+", line) for line in lines)
    for kind in (r"Accuracy-Flip: [\d.]+\+-[\d.]+", r"XNorm: [\d.]+", r"VAL@FAR=0.001: [\d.]+"):
        assert any(re.match(r"\[lfw\]\[2\]" + kind, line) for line in lines), kind
        assert any(re.match(r"\[lfw\]\[final\]" + kind, line) for line in lines), kind
    assert "ignoring unknown arguments: --some_platform_flag=1" in proc.stderr


@pytest.mark.slow
def test_metrics_checkpoints_and_best(arcface_run):
    out, _ = arcface_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["targets"] == ["lfw"] and metrics["num_classes"] == 6
    checks = metrics["verification"]
    assert [c["batch"] for c in checks] == [2, 3, 4, 6]  # every 2 batches + epoch ends
    for c in checks:
        assert 0 <= c["accuracy"] <= 1 and c["xnorm"] > 0 and 0 <= c["threshold"] < 4
    best = max(checks, key=lambda c: (c["accuracy"], c["batch"]))
    assert metrics["best"]["accuracy"] == best["accuracy"]
    assert metrics["best"]["batch"] == best["batch"]
    final = metrics["final"]
    assert final["lfw_accuracy"] == pytest.approx(best["accuracy"])  # the exported weights
    assert final["val_accuracy"] == final["lfw_accuracy"]
    assert final["threshold_cosine"] == pytest.approx(1 - final["lfw_threshold"] / 2)
    for name in ("model-symbol.json", "model-0001.params", "model-0002.params",
                 "model-best-symbol.json", "model-best-0000.params"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_exported_package_is_valid_and_answers_both_request_kinds(arcface_run, data):
    out, _ = arcface_run
    model = out / "model"
    assert validate_package(model) == []
    face = json.loads((model / "face.json").read_text())
    assert face["image_size"] == [112, 112] and face["emb_size"] == 32
    service = face_service(model)
    labels = (data / "labels.txt").read_text().split()
    images = sorted((data.parent / "images" / labels[2]).iterdir())
    one = service.inference({"images": {images[0].name: io.BytesIO(images[0].read_bytes())}})
    assert len(one["embedding"]) == 32
    assert one["predicted_label"] in labels and len(one["scores"]) == 5
    two = service.inference({"images": {"a.jpg": io.BytesIO(images[0].read_bytes())},
                             "images2": {"b.jpg": io.BytesIO(images[1].read_bytes())}})
    assert set(two) == {"same_person", "similarity", "threshold"}
    assert two["threshold"] == pytest.approx(face["threshold"], abs=1e-6)
    assert two["same_person"] == (two["similarity"] >= two["threshold"])


@pytest.mark.slow
def test_triplet_finetuning_from_the_softmax_checkpoint(arcface_run, data, tmp_path):
    out, _ = arcface_run
    proc = train(data, tmp_path, "--loss=triplet", "--mining=batch_hardest",
                 "--images_per_identity=4", f"--pretrained={out / 'model'},2", "--num_epochs=1",
                 "--epoch_size=3", "--verbose=0", "--lr=0.01", "--gallery_images=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loaded pretrained weights" in proc.stdout
    # batch_hardest: one triplet per anchor, P=4 identities x (K-1)=3 anchors per batch.
    assert re.search(r"Epoch\[0\] Batch \[0-2\]\tSpeed: [\d.]+ samples/sec\tloss=[\d.]+"
                     r"\ttriplets=12\.0+", proc.stdout), proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["loss"] == "triplet" and metrics["mining"] == "batch_hardest"
    assert metrics["epochs"][0]["triplets_per_batch"] == 12
    assert validate_package(tmp_path / "model") == []


def test_bfloat16_training_exports_a_float32_model_the_service_loads(data, tmp_path):
    """--dtype=bfloat16 (AMP) on a CPU with bf16 instructions, float32 with a warning
    elsewhere; either way checkpoints and the package are the plain float32 network."""
    import mxnet as mx
    from jobs.common.runtime import cpu_has_bf16

    proc = train(data, tmp_path, "--loss=arcface", "--margin_s=16", "--dtype=bfloat16", "--num_epochs=1",
                 "--epoch_size=2", "--verbose=0", "--gallery_images=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = "bfloat16" if cpu_has_bf16() else "float32"
    assert f"training in {used}" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["dtype"] == used
    model = tmp_path / "model"
    nodes = json.loads((model / "model-symbol.json").read_text())["nodes"]
    assert not [n for n in nodes if n["op"].startswith("amp_")]
    assert {v.dtype for v in mx.nd.load(str(model / "model-0000.params")).values()} == {np.float32}
    image = next((data.parent / "images").glob("*/*"))
    answer = face_service(model).inference({"images": {image.name: io.BytesIO(image.read_bytes())}})
    assert len(answer["embedding"]) == 32 and np.isfinite(answer["embedding"]).all()


@pytest.mark.parametrize("args,message", [
    (["--network=vgg16"], "--network must be one of iresnet, resnet"),
    (["--mining=semi_hard"], "--mining must be one of batch_all, batch_random"),
    (["--target=cfp_fp"], "no cfp_fp.bin"),
    (["--loss=triplet", "--pretrained=nowhere,3"], "nowhere-0003.params not found"),
    (["--image_size=100,100"], "multiples of 16"),
])
def test_bad_input_is_one_line_exit_2(data, tmp_path, args, message):
    proc = train(data, tmp_path, *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_folder_is_one_line_exit_2(tmp_path):
    proc = train(tmp_path / "absent", tmp_path / "out", timeout=120)
    assert proc.returncode == 2
    assert "train.py: error:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_pair_distances_and_the_face_report(arcface_run, data, tmp_path):
    """verification_pairs.json holds what verify() thresholds; report.html draws ROC, the
    distance histograms with the threshold, accuracy per set, and warns that 20 pairs cannot
    measure VAL@FAR=1e-3."""
    from jobs.data.face_bin import load_bin
    from orchestrator.results import page

    out, _ = arcface_run
    pairs = json.loads((out / "verification_pairs.json").read_text())
    final = json.loads((out / "metrics.json").read_text())["final"]
    _, issame = load_bin(str(data / "lfw.bin"))
    lfw = pairs["lfw"]
    assert lfw["issame"] == [bool(s) for s in issame] and len(lfw["distances"]) == 20
    assert all(0 <= d <= 4 for d in lfw["distances"]) and lfw["folds"] == 10 and lfw["far_target"] == 1e-3
    assert lfw["threshold"] == pytest.approx(final["lfw_threshold"])
    run = tmp_path / "run"
    run.mkdir()
    for name in ("metrics.json", "verification_pairs.json"):
        (run / name).write_bytes((out / name).read_bytes())
    (run / "report.json").write_text(json.dumps({"run_id": "r1", "pipeline": "faces", "status": "succeeded",
                                                 "steps": {"train": {"status": "succeeded", "seconds": 3.0}}}))
    html = page.write(run).read_text()
    assert html.count("<img class='plot'") == 5   # timeline, curves, accuracy per set, ROC, distances
    assert "lfw: 10 different-person pairs, 1 per fold of 10" in html and "not meaningful" in html
    assert "<h2>Verification</h2>" in html and "Mispredicted" not in html
