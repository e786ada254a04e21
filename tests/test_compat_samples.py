"""Code written in the styles of public ModelArts MXNet tutorials (tests/compat_samples/, see its
README) runs through the whole pipeline as it is, and no file of it is changed.

One generated image set feeds every sample: as class folders (packed by the pipeline), as the
four MNIST idx files (uploaded raw), and as RecordIO made by MXNet's own tools/im2rec.py. The
pipelines run side by side in one fixture to keep the suite short."""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import mxnet
import numpy as np
import pytest
import yaml
from PIL import Image

from pipelines import REPO, cli

SAMPLES = Path(__file__).parent / "compat_samples"
IM2REC = Path(mxnet.__file__).parent / "tools" / "im2rec.py"
pytestmark = pytest.mark.slow


def _snapshot() -> dict:
    return {p: p.read_bytes() for p in SAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _mnist_files(images: list[tuple[Path, int]], folder: Path, prefix: str) -> None:
    """The MNIST download's format: big-endian idx headers, gzip."""
    pixels = np.stack([np.asarray(Image.open(p).convert("L").resize((28, 28)), dtype=np.uint8) for p, _ in images])
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, len(images), 28, 28) + pixels.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(images)) + bytes(label for _, label in images))


def _data(root: Path) -> dict:
    """The users' data, all made from one generated image set (3 classes x 12 images)."""
    gen = root / "photos"
    subprocess.run([sys.executable, "-m", "jobs.data.generate_classification", str(gen), "--classes", "3",
                    "--images-per-class", "12", "--seed", "5", "--min-size", "32", "--max-size", "48"],
                   cwd=REPO, check=True, capture_output=True)
    classes = sorted(p.name for p in gen.iterdir() if p.is_dir())
    train, test = [], []
    for label, name in enumerate(classes):
        files = sorted((gen / name).glob("*.jpg"))
        train += [(f, label) for f in files[:9]]
        test += [(f, label) for f in files[9:]]
    mnist, digits, flowers, flowers_test = (root / n for n in ("mnist", "digits", "flowers_src", "flowers_test"))
    mnist.mkdir()
    _mnist_files(train, mnist, "train")
    _mnist_files(test, mnist, "t10k")
    for path, label in test:   # the test images as the MNIST tutorial's users send them
        (digits / str(label)).mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("L").resize((28, 28)).save(digits / str(label) / (path.stem + ".png"))
        (flowers_test / classes[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, flowers_test / classes[label] / path.name)
    for path, label in train:
        (flowers / classes[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, flowers / classes[label] / path.name)
    rec = root / "flowers_rec"
    rec.mkdir()
    subprocess.run([sys.executable, str(IM2REC), "--list", "--recursive", "--train-ratio", "0.8", "flowers",
                    str(flowers)], cwd=rec, check=True, capture_output=True)
    subprocess.run([sys.executable, str(IM2REC), "--resize", "28", "--num-thread", "1", "flowers", str(flowers)],
                   cwd=rec, check=True, capture_output=True)
    for lst in rec.glob("*.lst"):
        lst.unlink()        # the user uploads the .rec/.idx files only
    (root / "classes.txt").write_text("\n".join(classes) + "\n")   # im2rec numbers sorted folder names
    packed = root / "notebook_data" / "packed"   # what the notebook uploads: RecordIO with labels.txt
    subprocess.run([sys.executable, "-m", "jobs.data.im2rec", str(flowers), str(packed), "--val-ratio", "0.2",
                    "--test-ratio", "0", "--resize", "32", "--workers", "1"], cwd=REPO, check=True, capture_output=True)
    return {"photos": gen, "mnist": mnist, "digits": digits, "rec": rec, "flowers_test": flowers_test,
            "classes": classes, "labels_file": root / "classes.txt", "packed": packed,
            "test_image": test[0][0]}


def _notebook(data: dict, folder: Path) -> subprocess.Popen:
    """The classic-SDK notebook with its import lines changed, and nothing else; run in a
    folder without config.json, so it uses the user-level store (ORCHESTRATOR_HOME)."""
    source = (SAMPLES / "notebook" / "caltech_notebook.py").read_text()
    script = source.replace("from modelarts.", "from orchestrator.sdk.")
    changed = [line for line, was in zip(script.splitlines(), source.splitlines()) if line != was]
    assert len(changed) == 4 and all(line.startswith("from orchestrator.sdk.") for line in changed)
    (folder / "notebook.py").write_text(script)
    env = {**os.environ, "ORCHESTRATOR_HOME": str(folder / "home"), "DATA_DIR": str(data["packed"]),
           "CODE_DIR": str(SAMPLES / "caltech_codes" / "codes"), "SERVICE_DIR": str(SAMPLES / "caltech_service"),
           "TEST_IMAGE": str(data["test_image"])}
    return subprocess.Popen([sys.executable, "notebook.py"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _pipelines(data: dict, work: Path) -> dict[str, dict]:
    common = {"teardown": {"when": "always"}, "service": {"deploy_timeout": "2m"}}
    return {
        "caltech": {**common, "name": "caltech-codes",
                    "data": {"source": str(data["photos"]), "val_ratio": 0.2, "test_ratio": 0.25, "resize": 32,
                             "workers": 1},
                    "train": {"code_dir": str(SAMPLES / "caltech_codes" / "codes"), "boot_file": "train_caltech.py",
                              "hyperparameters": {"num_epochs": 2, "batch_size": 8, "lr": 0.05, "num_classes": 3},
                              "max_runtime": "5m"},
                    "model": {"inference_code": str(SAMPLES / "caltech_service")}},
        "mnist": {**common, "name": "mnist-gluon",
                  "data": {"source": str(data["mnist"])},
                  "train": {"code_dir": str(SAMPLES / "mnist_gluon" / "mnist_code"), "boot_file": "train_mnist.py",
                            "hyperparameters": {"epochs": 2, "batch_size": 8}, "max_runtime": "5m"},
                  "model": {"inference_code": str(SAMPLES / "mnist_service"), "runtime": "python3.6"},
                  "predict": {"images": str(data["digits"])}},
        "im2rec": {**common, "name": "im2rec-legacy",
                   "data": {"source": str(data["rec"]), "labels": str(data["labels_file"])},
                   "train": {"code_dir": str(SAMPLES / "im2rec_legacy" / "src"),
                             "hyperparameters": {"num_epoch": 2, "batch_size": 8, "num_classes": 3},
                             "max_runtime": "5m"},
                   "service": {"deploy_timeout": "2m",   # the legacy service reads its Signature from these
                               "envs": {"input_data_name": "data", "input_data_shape": "0,3,28,28"}},
                   "predict": {"images": str(data["flowers_test"])}},
        "failing": {**common, "name": "failing-service",   # every request answers 500
                    "data": {"source": str(data["mnist"]), "format": "raw"},
                    "train": {"code_dir": str(SAMPLES.parent / "fixtures" / "export_job"), "max_runtime": "2m",
                              "hyperparameters": {"service": "broken"}},
                    "predict": {"images": str(data["digits"]), "limit": 3}},
        "no_service": {**common, "name": "no-service",   # model/ without customize_service.py and config.json
                       "data": {"source": str(data["mnist"])},
                       "train": {"code_dir": str(SAMPLES.parent / "fixtures" / "export_job"),
                                 "max_runtime": "2m"},
                       "predict": {"images": str(data["digits"])}},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    before = _snapshot()
    data = _data(root)
    procs = {}
    for name, spec in _pipelines(data, root).items():
        folder = root / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({
            "profiles": {"local": {"backend": "local", "root": str(folder / "state")}}, "poll_interval": 0.2}))
        (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        procs[name] = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "pipeline.yaml", "--json"],
                                       cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (root / "runs" / "notebook").mkdir()
    procs["notebook"] = _notebook(data, root / "runs" / "notebook")
    results = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            results[name] = {"code": proc.returncode, "stdout": out, "stderr": err, "data": data,
                             "folder": root / "runs" / name}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results, before


def _report(result: dict, succeeded: bool = True) -> dict:
    assert (result["code"] == 0) is succeeded, result["stderr"][-3000:] + result["stdout"][-3000:]
    report = json.loads(result["stdout"])
    assert report["status"] == ("succeeded" if succeeded else "failed")
    return report


def _answers(report: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(report["paths"]["run_dir"]) / "predictions.jsonl").open()]


def test_module_script_importing_its_code_package_with_a_python27_service(runs):
    """codes/ package imports, ./codes/ reads, moxing copies, model/ + model.inference_code,
    a Python 2.7 service whose config.json has no runtime."""
    result = runs[0]["caltech"]
    report = _report(result)
    predict = report["steps"]["predict"]
    assert predict["count"] == 9 and predict["errors"] == 0 and predict["unscored"] == 0
    assert {a["predicted_label"] for a in _answers(report)} <= set(result["data"]["classes"])
    model = Path(report["paths"]["model"])
    assert sorted(p.name for p in model.iterdir()) == [
        "config.json", "customize_service.py", "labels.txt", "resnet-0000.params", "resnet-symbol.json"]
    assert (model / "customize_service.py").read_bytes() == (SAMPLES / "caltech_service" / "customize_service.py"
                                                             ).read_bytes()
    log = (Path(report["paths"]["run_dir"]) / "logs" / "train.log").read_text()
    assert "data copied to" in log and "training done" in log


def test_gluon_on_raw_mnist_files_with_list_answers(runs):
    report = _report(runs[0]["mnist"])
    assert report["steps"]["upload"]["files"] == 4          # the idx files, as they are
    predict = report["steps"]["predict"]
    assert predict["count"] == 9 and predict["errors"] == 0 and predict["unscored"] == 0
    answers = _answers(report)
    assert all(a["predicted_label"] in {"0", "1", "2"} and a["correct"] is not None for a in answers)
    assert all(0 <= a["score"] <= 1 for a in answers)
    model = Path(report["paths"]["model"])   # symbol + the last params of the output, then the service folder
    assert sorted(p.name for p in model.iterdir()) == [
        "config.json", "customize_service.py", "mnist-0002.params", "mnist-symbol.json"]


def test_im2rec_records_with_a_labels_file_and_a_legacy_service(runs):
    """RecordIO from MXNet's im2rec.py (numbers only), class folders for the test images and
    data.labels to match them; the legacy service answers a bare index."""
    report = _report(runs[0]["im2rec"])
    predict = report["steps"]["predict"]
    assert predict["count"] == 9 and predict["errors"] == 0 and predict["unscored"] == 0
    answers = _answers(report)
    assert {a["predicted_label"] for a in answers} <= {"0", "1", "2"}
    assert all(a["correct"] is not None for a in answers)
    assert predict["correct"] == sum(a["predicted_label"] == str(runs[0]["im2rec"]["data"]["classes"].index(
        a["expected"])) for a in answers)


def test_a_run_whose_predictions_fail_is_a_failure(runs):
    report = _report(runs[0]["failing"], succeeded=False)
    assert runs[0]["failing"]["code"] == 1
    assert report["steps"]["predict"]["status"] == "failed"
    assert "3 of 3 requests failed" in report["error"] and "model file is corrupt" in report["error"]


def test_a_classic_sdk_notebook_runs_with_only_its_imports_changed(runs):
    """Session/Estimator/Model/Predictor cells as a ModelArts notebook has them, including the
    class-level listings, update_service_config and obs.download_file to a file name. The
    notebook ran where there is no config.json and never cleaned its uploads: the CLI, run
    from elsewhere, sees its run in the same user-level store and cleans it up."""
    result = runs[0]["notebook"]
    assert result["code"] == 0, result["stderr"][-3000:] + result["stdout"][-3000:]
    out, classes = result["stdout"], result["data"]["classes"]
    assert "bucket: orchestrator-demo" in out and "jobs: 1, status of the first: 10" in out
    assert any(line.startswith("predicted: ") and line.split(": ", 1)[1] in classes for line in out.splitlines())
    assert str(classes) in out                      # labels.txt downloaded to a file of that name
    run_id = out.strip().splitlines()[-1].split()[-1]
    env = {"ORCHESTRATOR_HOME": str(result["folder"] / "home")}
    elsewhere = result["folder"].parent
    status = cli("status", "--json", cwd=elsewhere, env=env)
    assert status.returncode == 0 and run_id in status.stdout
    cleaned = cli("cleanup", "--json", cwd=elsewhere, env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cli("cleanup", "--dry-run", "--json", cwd=elsewhere, env=env).stdout) == []


def test_a_package_without_service_code_says_to_set_inference_code(runs):
    report = _report(runs[0]["no_service"], succeeded=False)
    assert report["steps"]["import_model"]["status"] == "failed"
    assert "config.json is missing from the model/ folder" in report["error"]
    assert "set model.inference_code in pipeline.yaml" in report["error"]


def test_the_samples_are_left_byte_identical(runs):
    assert _snapshot() == runs[1]
