"""ModelArts' documented conventions, one behaviour each: the job's layout, working directory,
import path and environment; the hint for MXNet reads of obs:// paths; the answer shapes the
predict step scores; how model/ is assembled; raw data and runtimes in the plan."""

import json
import time
from pathlib import Path

import pytest

from jobmodules import job_modules
from orchestrator.backends.base import JobSpec
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.errors import UserError
from orchestrator.model_package import model_files
from orchestrator.predictions import interpret, matches
from orchestrator.spec import PipelineSpec, load_pipeline
from pipelines import tiny_pipeline

ENV_JOB = '''
import argparse, json, os, sys
from codes.helpers.layout import where            # the code folder's own package, as tutorials import it
parser = argparse.ArgumentParser()
parser.add_argument("--data_url"); parser.add_argument("--train_url")
args, unknown = parser.parse_known_args()
with open("./codes/settings.txt") as fh:          # read relative to the working directory
    settings = fh.read()
names = [n for n in os.environ if n.startswith(("MA_", "VC_", "DLS_"))]
report = {"cwd": os.getcwd(), "file": os.path.abspath(__file__), "sys_path": sys.path, "where": where(),
          "env": {n: os.environ[n] for n in names}, "pythonpath": os.environ.get("PYTHONPATH", ""),
          "settings": settings, "args": sys.argv[1:], "data": sorted(os.listdir(args.data_url))}
with open(os.path.join(args.train_url, "report.json"), "w") as fh:
    json.dump(report, fh)
'''


def _run_job(tmp_path: Path, code: Path, boot: str = "train.py", hp=()) -> tuple[LocalBackend, JobSpec, object]:
    backend = LocalBackend(tmp_path / "state")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x,y\n")
    backend.storage.put(str(tmp_path / "data"), "obs://bkt/run/data/")
    spec = JobSpec(name="env-1-train", run_id="1", code_dir=str(code), boot_file=boot, data_url="obs://bkt/run/data/",
                   train_url="obs://bkt/run/output/", hyperparameters=tuple(hp), max_runtime_s=60)
    ref = backend.submit_job(spec)
    deadline = time.time() + 60
    while not (state := backend.job_status(ref)).terminal and time.time() < deadline:
        time.sleep(0.1)
    return backend, spec, state


def test_the_job_layout_import_path_and_environment_of_modelarts(tmp_path):
    code = tmp_path / "codes"
    (code / "helpers").mkdir(parents=True)
    (code / "helpers" / "__init__.py").write_text("")
    (code / "helpers" / "layout.py").write_text("import os\ndef where():\n    return os.path.abspath(__file__)\n")
    (code / "settings.txt").write_text("lr=0.1")
    (code / "train.py").write_text(ENV_JOB)
    backend, spec, state = _run_job(tmp_path, code, hp=[("lr", "0.1")])
    assert state.phase == "Completed", state.reason
    backend.storage.get("obs://bkt/run/output/report.json", str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    job_dir = Path(report["file"]).parent            # <job dir>/code/codes, as /home/work/user-job-dir/codes
    assert job_dir.name == "codes" and report["cwd"] == str(job_dir.parent)
    assert report["where"] == str(job_dir / "helpers" / "layout.py") and report["settings"] == "lr=0.1"
    assert str(job_dir.parent) in report["pythonpath"].split(":") and str(job_dir.parent) in report["sys_path"]
    env = report["env"]
    assert env["MA_JOB_DIR"] == str(job_dir.parent) and env["DLS_APP_URL"] == str(job_dir)
    assert env["MA_NUM_HOSTS"] == env["VC_WORKER_NUM"] == env["DLS_TASK_NUMBER"] == "1"
    assert env["VC_TASK_INDEX"] == env["MA_TASK_INDEX"] == env["DLS_TASK_INDEX"] == "0"
    assert (env["DLS_DATA_URL"], env["DLS_TRAIN_URL"]) == (spec.data_url, spec.train_url)
    assert {"MA_NUM_GPUS", "MA_TASK_NAME", "MA_LOG_DIR", "MA_CURRENT_IP", "VC_WORKER_HOSTS"} <= set(env)
    assert "--lr=0.1" in report["args"] and any(a.startswith("--data_url=") for a in report["args"])
    assert report["data"] == ["train.csv"]


def test_mxnet_reading_obs_paths_fails_with_what_to_do(tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text(   # what MXNet 1.9.1's pip wheel prints for ImageRecordIter('s3://...')
        "import sys\nprint('mxnet.base.MXNetError: Please compile with DMLC_USE_S3=1 to use S3')\nsys.exit(1)\n")
    _, _, state = _run_job(tmp_path, code)
    assert state.phase == "Failed" and "DMLC_USE_S3" in state.reason
    assert "mox.file.copy_parallel(args.data_url, local_dir)" in state.reason


@pytest.mark.parametrize("body, expected", [
    ({"predicted_label": "cat", "scores": [["cat", 0.9], ["dog", 0.1]]}, ("cat", 0.9)),
    ({"scores": [["dog", 0.7], ["cat", 0.3]]}, ("dog", 0.7)),
    ([{"class": "3", "probability": 0.2}, {"class": "7", "probability": 0.8}], ("7", 0.8)),
    ([{"label": "ant", "score": 0.6}], ("ant", 0.6)),
    ([["ant", 0.1], ["bee", 0.9]], ("bee", 0.9)),
    ("tulip", ("tulip", None)),
    (2, ("2", None)),
    (2.0, ("2", None)),
    ({"result": {"label": "rose", "confidence": 0.5}}, ("rose", 0.5)),
    ({"meta": {"uuid": "u"}, "data": {"resp_data": [{"predicted_label": "x"}]}}, ("x", None)),
    ({"embedding": [0.1, 0.2]}, (None, None)),
    ([], (None, None)),
    (None, (None, None)),
    (True, (None, None)),
])
def test_common_answer_shapes_are_understood_and_others_left_unscored(body, expected):
    assert interpret(body) == expected


def test_numeric_answers_match_names_through_labels():
    assert matches("2", "tulip", ("daisy", "rose", "tulip")) and not matches("1", "tulip", ("daisy", "rose", "tulip"))
    assert matches("tulip", "tulip", None) and not matches("2", "tulip", None)


def test_model_files_come_from_model_or_the_last_checkpoint():
    out = "obs://b/out/"
    assert model_files([out + "a-symbol.json", out + "model/x-symbol.json", out + "model/x-0000.params"], out) == [
        out + "model/x-symbol.json", out + "model/x-0000.params"]
    found = model_files([out + "net-symbol.json", out + "net-0002.params", out + "net-0010.params", out + "log.txt"],
                        out)
    assert found == [out + "net-symbol.json", out + "net-0010.params"]
    with pytest.raises(UserError, match="exactly one"):
        model_files([out + "a-symbol.json", out + "b-symbol.json"], out)
    with pytest.raises(UserError, match="did the training save a checkpoint"):
        model_files([out + "a-symbol.json"], out)


def test_raw_data_uploads_as_it_is_and_needs_explicit_images(tmp_path):
    from orchestrator.factory import load_plan
    raw = tmp_path / "mnist"
    raw.mkdir()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\0")
    path = tiny_pipeline(tmp_path, data={"source": str(raw), "generate": None})
    with pytest.raises(UserError, match="uploaded as it is") as err:
        load_plan(path, None, None)
    assert "predict.images" in err.value.hint
    (tmp_path / "test" / "0").mkdir(parents=True)
    path = tiny_pipeline(tmp_path, data={"source": str(raw), "generate": None},
                         predict={"images": str(tmp_path / "test")})
    plan, _, _ = load_plan(path, None, None)
    assert plan.data.mode == "raw" and plan.data.packed_dir == raw
    assert "as it is" in plan.steps[0].details[0]


def test_runtimes_default_to_config_json_and_unknown_ones_are_refused(tmp_path):
    from orchestrator.factory import load_plan
    plan, _, _ = load_plan(tiny_pipeline(tmp_path), None, None)
    assert plan.model.runtime is None and "python2.7 when unset" in " ".join(plan.steps[3].details)
    plan, _, _ = load_plan(tiny_pipeline(tmp_path, model={"runtime": "python3.6"}), None, None)
    assert plan.model.runtime == "python3.6"
    with pytest.raises(UserError, match="not one of ModelArts' MXNet runtimes"):
        load_pipeline(tiny_pipeline(tmp_path, model={"runtime": "python3.9"}))


def test_user_code_gets_no_project_inference_code_merged_in(tmp_path):
    from orchestrator.factory import load_plan
    code = tmp_path / "mycode"
    code.mkdir()
    (code / "train.py").write_text("")
    path = tiny_pipeline(tmp_path, train={"code_dir": str(code), "hyperparameters": None})
    plan, _, _ = load_plan(path, None, None)
    assert plan.job.include_dirs == ()
    assert PipelineSpec(name="demo").train.inference_code == "inference/image_classification"


def test_the_caltech_tutorial_hyperparameters_reach_the_job(tmp_path):
    """train_file, val_file, epoch_image_num and save_frequency (the ModelArts Caltech101
    tutorial's) are understood by the project's classification job."""
    from jobmodules import job_modules
    rec_data, train_args = job_modules("image_classification", "rec_data", "train_args")
    args, _ = train_args.parse(["--data_url=d", "--train_url=o", "--train_file=caltech_tr.rec",
                                "--val_file=caltech_va.rec", "--epoch_image_num=20", "--save_frequency=2"])
    assert (args.train_file, args.val_file, args.num_examples, args.save_frequency) == (
        "caltech_tr.rec", "caltech_va.rec", 20, 2)
    for name in ("caltech_tr.rec", "caltech_tr.idx", "caltech_va.rec", "train.rec"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "caltech_tr.idx").write_text("0\t0\n1\t10\n")
    data = rec_data.describe(str(tmp_path), "caltech_tr.rec", "caltech_va.rec")
    assert data["train"] == (str(tmp_path / "caltech_tr.rec"), str(tmp_path / "caltech_tr.idx"))
    assert data["val"] == (str(tmp_path / "caltech_va.rec"), None) and data["num_train"] == 2
    with pytest.raises(rec_data.DataError, match="--val_file missing.rec .* caltech_tr.rec, caltech_va.rec"):
        rec_data.describe(str(tmp_path), "caltech_tr.rec", "missing.rec")


def test_model_is_assembled_from_the_output_and_the_inference_code(tmp_path):
    from orchestrator.backends.local.storage import LocalObjectStore
    from orchestrator.model_package import assemble
    store = LocalObjectStore(tmp_path / "store")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("net-symbol.json", "net-0001.params", "net-0002.params", "train.log"):
        (out / name).write_text(name)
    store.put(str(out), "obs://bkt/run/output/")
    code = tmp_path / "infer"
    code.mkdir()
    (code / "customize_service.py").write_text("# service\n")
    with pytest.raises(UserError, match="config.json is missing") as err:   # hostile: half a service folder
        assemble(store, "obs://bkt/run/output/", code, tmp_path / "work", "obs://bkt/run/model-package/")
    assert "model.inference_code must hold customize_service.py and config.json" in err.value.hint
    assert not store.exists("obs://bkt/run/model-package/"), "nothing is uploaded when the package is invalid"
    (code / "config.json").write_text(json.dumps({"model_type": "MXNet", "model_algorithm": "x",
                                                  "apis": [{"url": "/", "method": "post"}]}))
    files = assemble(store, "obs://bkt/run/output/", code, tmp_path / "work", "obs://bkt/run/model-package/")
    assert files == ["config.json", "customize_service.py", "net-0002.params", "net-symbol.json"]
    assert sorted(u.rsplit("/", 1)[-1] for u in store.list("obs://bkt/run/model-package/model/")) == files
    assert sorted(u.rsplit("/", 1)[-1] for u in store.list("obs://bkt/run/output/")) == [
        "net-0001.params", "net-0002.params", "net-symbol.json", "train.log"], "the training output is unchanged"
