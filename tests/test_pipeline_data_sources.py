"""Pipelines pointed at the user's own data: any image folder (one sub-folder per class,
mixed formats), or RecordIO files packed elsewhere (MXNet's im2rec names), uploaded as is."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import UserError
from orchestrator.factory import load_plan
from pipelines import REPO, cli, tiny_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Three classes with the user's own names; some PNG, grayscale and RGBA images among JPEGs."""
    root = tmp_path_factory.mktemp("user") / "photos"
    subprocess.run([sys.executable, "-m", "jobs.data.generate_classification", str(root / "gen"), "--classes", "3",
                    "--images-per-class", "15", "--seed", "2", "--min-size", "40", "--max-size", "80"],
                   cwd=REPO, check=True, capture_output=True)
    for i, cls in enumerate(sorted(p for p in (root / "gen").iterdir() if p.is_dir())):
        target = root / ["Airplanes", "Motorbikes", "faces_easy"][i]
        target.mkdir()
        for j, img in enumerate(sorted(cls.glob("*.jpg"))):
            im = Image.open(img)
            if j % 5 == 1:
                im.convert("L").save(target / f"img{j}.png")
            elif j % 5 == 2:
                im.convert("RGBA").save(target / f"img{j}.PNG")
            else:
                shutil.copy(img, target / f"img{j}.jpeg")
    shutil.rmtree(root / "gen")
    return root


def test_any_image_folder_with_only_hyperparameters_set(tmp_path, image_folder):
    path = tiny_pipeline(tmp_path, data={"source": str(image_folder), "generate": None})
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    report = json.loads(result.stdout)
    assert report["steps"]["predict"]["count"] == 9 and report["steps"]["predict"]["errors"] == 0
    answers = [json.loads(line) for line in (Path(report["paths"]["run_dir"]) / "predictions.jsonl").open()]
    assert {a["expected"] for a in answers} == {"Airplanes", "Motorbikes", "faces_easy"}
    assert {a["predicted_label"] for a in answers} <= {"Airplanes", "Motorbikes", "faces_easy"}


def packed_like_mxnet_im2rec(image_folder: Path, out: Path) -> Path:
    """Our packer's records under MXNet im2rec's names (prefix_train.rec/.idx), no labels.txt."""
    subprocess.run([sys.executable, "-m", "jobs.data.im2rec", str(image_folder), str(out / "tmp"), "--val-ratio",
                    "0.2", "--test-ratio", "0", "--resize", "36"], cwd=REPO, check=True, capture_output=True)
    out.mkdir(exist_ok=True)
    for split in ("train", "val"):
        for ext in ("rec", "idx"):
            shutil.move(out / "tmp" / f"{split}.{ext}", out / f"caltech_{split}.{ext}")
    shutil.rmtree(out / "tmp")
    return out


def test_existing_recordio_files_are_uploaded_as_they_are(tmp_path, image_folder):
    packed = packed_like_mxnet_im2rec(image_folder, tmp_path / "packed")
    before = {p.name: p.read_bytes() for p in packed.iterdir()}
    sections = dict(predict={"images": str(image_folder), "limit": 6},
                    train={"hyperparameters": {"num_layers": 20, "image_shape": "3,32,32", "num_epochs": 1,
                                               "batch_size": 8, "num_classes": 3}})
    # im2rec numbers the classes; without their names the test folders' names cannot be scored
    path = tiny_pipeline(tmp_path, data={"source": str(packed)}, **sections)
    with pytest.raises(UserError, match="numeric labels cannot be matched") as err:
        load_plan(path, None, None)
    assert "data.labels" in err.value.hint
    path = tiny_pipeline(tmp_path, data={"source": str(packed), "labels": ["Airplanes", "Motorbikes", "faces_easy"]},
                         **sections)
    plan, _, _ = load_plan(path, None, None)
    assert plan.data.mode == "prepared" and plan.steps[0].details[0].startswith("use the RecordIO files")
    result = cli("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    report = json.loads(result.stdout)
    assert report["steps"]["upload"]["files"] == 4
    assert report["steps"]["predict"]["count"] == 6 and report["steps"]["predict"]["errors"] == 0
    answers = [json.loads(line) for line in (Path(report["paths"]["run_dir"]) / "predictions.jsonl").open()]
    assert all(a["correct"] is not None for a in answers), "every answer is scored through data.labels"
    assert {a["predicted_label"] for a in answers} <= {"Airplanes", "Motorbikes", "faces_easy"}
    assert {p.name: p.read_bytes() for p in packed.iterdir()} == before, "the user's files are left alone"


def test_prepared_data_has_no_holdout(tmp_path, image_folder):
    packed = packed_like_mxnet_im2rec(image_folder, tmp_path / "packed")
    path = tiny_pipeline(tmp_path, data={"source": str(packed)})
    with pytest.raises(UserError, match="no images are held out") as err:
        load_plan(path, None, None)
    assert "predict.images" in err.value.hint
