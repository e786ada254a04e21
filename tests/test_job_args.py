"""Jobs declare their arguments once (arguments.json): the jobs' parsers are built from the
declaration, `validate`/`plan` check hyperparameters against it, docs/jobs.md shows it."""

import json
import subprocess
import sys

import pytest

from jobs.face_recognition import triplet
from jobs.common import arguments as job_args
from orchestrator import jobdocs
from orchestrator.cli import main
from pipelines import REPO, cli, tiny_pipeline

JOBS = {"classification": REPO / "jobs" / "image_classification", "face": REPO / "jobs" / "face_recognition"}


def validate(path, capsys):
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("task, hyperparameters, expected", [
    ("classification", {"num_layer": 20}, "has no argument 'num_layer' (did you mean 'num_layers'?)"),
    ("classification", {"optimizer": "ADAM"}, "has no argument 'optimizer'"),
    ("classification", {"max_runtime": "1h"}, "'max_runtime' is a key of train:, not a hyperparameter"),
    ("classification", {"num_epochs": 0}, "train.hyperparameters.num_epochs: must be >= 1, got 0"),
    ("classification", {"lr": "fast"}, "train.hyperparameters.lr: expected a number, got 'fast'"),
    ("classification", {"lr": float("inf")}, "expected a finite number, got 'inf'"),
    ("classification", {"rand_crop": "maybe"}, "expected true or false, got 'maybe'"),
    ("classification", {"image_shape": "64,64"}, "must be 3,H,W such as 3,224,224, got '64,64'"),
    ("classification", {"kv_store": "horovod"}, "must be one of local, device"),
    ("classification", {"data_url": "/x"}, "--data_url is passed by the platform"),
    ("face", {"emb_sise": 128}, "has no argument 'emb_sise' (did you mean 'emb_size'?)"),
    ("face", {"mining": "hardest_ever"}, "train.hyperparameters.mining: must be one of batch_all"),
    ("face", {"dropout": 1}, "train.hyperparameters.dropout: must be < 1, got 1.0"),
])
def test_a_bad_hyperparameter_is_exit_2_naming_file_line_and_key(tmp_path, capsys, task, hyperparameters, expected):
    path = tiny_pipeline(tmp_path, data={"task": task}, train={"code_dir": str(JOBS[task]),
                                                                "hyperparameters": {"lr": 0.1, **hyperparameters}})
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.strip().startswith(f"{next(iter(hyperparameters))}:"))
    code, err = validate(path, capsys)
    assert code == 2, err
    assert err.startswith(f"error: {path}:{line}: "), err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("task, hyperparameters", [
    ("classification", {"num-epochs": 2, "kv_store": "Device", "rand_mirror": False, "lr_step": "5, 8"}),
    ("face", {"batch_size": 16, "num_embed": 64, "loss": "ArcFace", "strategy": "min_max", "margin_a": 1.0,
              "network": "y1", "end_epoch": 3}),
])
def test_aliases_dashed_names_and_case_are_accepted(tmp_path, capsys, task, hyperparameters):
    path = tiny_pipeline(tmp_path, data={"task": task}, train={"code_dir": str(JOBS[task]),
                                                                "hyperparameters": hyperparameters})
    code, err = validate(path, capsys)
    assert code == 0, err


def test_a_users_own_script_accepts_anything_and_the_plan_says_it_is_not_checked(tmp_path, capsys):
    code_dir = tmp_path / "my_code"
    code_dir.mkdir()
    (code_dir / "train.py").write_text("print('hello')\n")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code_dir),
                                          "hyperparameters": {"whatever_i_like": "x", "optimizer": "ADAM"}})
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"hyperparameters are not checked: {code_dir} has no arguments.json" in out
    # A user's folder may declare its own arguments and is then checked the same way.
    (code_dir / "arguments.json").write_text(json.dumps(
        {"arguments": [{"name": "depth", "type": "int", "min": 1}]}))
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code_dir), "hyperparameters": {"dept": 3}})
    code, err = validate(path, capsys)
    assert code == 2 and "did you mean 'depth'?" in err
    (code_dir / "arguments.json").write_text('{"arguments": [{"name": "depth", "type": "integer"}]}')
    code, err = validate(path, capsys)
    assert code == 2 and "arguments.json: arguments[0] (depth): type must be one of" in err


@pytest.mark.parametrize("job", sorted(JOBS.values()))
def test_every_declared_name_reaches_the_jobs_own_parser(job):
    """The parser is built from the declaration: --help lists every name, alias and dashed
    twin, and the job refuses what the declaration refuses, in the same words."""
    decl = job_args.load(str(job))
    proc = subprocess.run([sys.executable, str(job / "train.py"), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in job_args.all_names(decl):
        assert f"--{name}" in proc.stdout and f"--{name.replace('_', '-')}" in proc.stdout, name
    proc = subprocess.run([sys.executable, str(job / "train.py"), "--data_url=x", "--train_url=y", "--lr=-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--lr must be > 0, got -1.0" in proc.stderr, proc.stderr


def test_face_declaration_lists_what_the_job_accepts():
    decl = job_args.load(str(JOBS["face"]))
    mining = job_args.find(decl, "mining")["choices"]
    assert set(mining) == set(triplet.STRATEGIES) | set(triplet.ALIASES)
    assert job_args.find(decl, "strategy")["name"] == "mining"


def test_docs_jobs_md_is_generated_from_the_declarations():
    doc = (REPO / "docs" / "jobs.md").read_text()
    expected = jobdocs.markdown(jobdocs.project_declarations())
    assert jobdocs.generated_block(doc) == expected, \
        "docs/jobs.md is stale: regenerate the block with `python -m orchestrator args --markdown`"


def test_args_command_lists_a_job_and_refuses_a_folder_without_declaration(tmp_path, capsys):
    assert main(["args", str(JOBS["face"])]) == 0
    out = capsys.readouterr().out
    assert "--per_batch_size --batch_size" in out and "Loss:" in out
    assert main(["args", str(tmp_path)]) == 2
    assert "declares no arguments" in capsys.readouterr().err


def test_version_of_the_cli_and_the_predictor():
    for module in ("orchestrator", "orchestrator.predictor"):
        proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("mxnet-orchestrator 0.1.0 (mxnet 1.9.1, Python 3.11"), proc.stdout


def test_plan_says_what_the_split_takes_and_resolves_the_predict_folder(tmp_path):
    images = tmp_path / "photos"
    for name, count in (("cat", 10), ("dog", 7)):
        (images / name).mkdir(parents=True)
        for i in range(count):
            (images / name / f"{i}.jpg").write_bytes(b"")
    (tmp_path / "test_images" / "cat").mkdir(parents=True)
    path = tiny_pipeline(tmp_path, data={"source": "photos", "generate": None},
                         predict={"images": "test_images"})
    result = cli("plan", "pipeline.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"use image folder {images}: 17 images in 2 classes; the split takes 3 (20%, data.val_ratio) for "
            f"validation and 3 (20%, data.test_ratio) held out for predict, 11 images train") in result.stdout
    assert f"images under {tmp_path / 'test_images'} (scored when their sub-folder is a class name)" in result.stdout
    (images / "empty").mkdir()
    result = cli("validate", str(path), cwd=REPO)
    assert result.returncode == 2
    assert "1 of the 3 class folders" in result.stderr and "hold no images: empty" in result.stderr
    for name in ("dog", "empty"):
        for f in (images / name).iterdir():
            f.unlink()
        (images / name).rmdir()
    result = cli("validate", str(path), cwd=REPO)
    assert result.returncode == 2 and "must hold at least 2 class sub-folders" in result.stderr
