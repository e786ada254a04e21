"""jobs/image_classification/train.py run as ModelArts runs it: a subprocess with --k=v args."""
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

from jobs.data import generate_classification as gen
from jobs.data import im2rec as i2r

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "jobs", "image_classification", "train.py")
START = re.compile(r"^Start training: num_epochs=(\d+) epoch_size=(\d+) batch_size=(\d+) "
                   r"num_examples=(\d+)$")
SPEED = re.compile(r"Epoch\[(\d+)\] Batch \[(\d+)-(\d+)\]\tSpeed: [\d.]+ samples/sec\t"
                   r"accuracy=[\d.]+")
TINY = ["--num_layers=8", "--image_shape=3,32,32", "--batch_size", "8", "--lr=0.05",
        "--lr-step=1", "--disp_batches=2"]


def run_train(*args, cwd=None):
    return subprocess.run([sys.executable, TRAIN_PY, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=240)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    gen.generate(base / "images", classes=3, images_per_class=16, seed=0, min_size=40,
                 max_size=64, progress=False)
    i2r.im2rec(base / "images", base / "rec", val_ratio=0.25, test_ratio=0.0, resize=36,
               seed=0, workers=1, progress=False)
    return base / "rec"


@pytest.fixture(scope="module")
def first_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "train_url"
    proc = run_train(f"--data_url={data_dir}", f"--train_url={out}", "--num_gpus=0",
                     "--num-epochs=2", "--made_up_flag=1", *TINY, cwd=str(out.parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_log_lines(first_run, data_dir):
    _, proc = first_run
    lines = proc.stdout.splitlines()
    m = START.match(lines[0])
    assert m, lines[:3]
    num_epochs, epoch_size, batch_size, num_examples = map(int, m.groups())
    info = json.loads((data_dir / "dataset.json").read_text())
    assert (num_epochs, batch_size, num_examples) == (2, 8, info["num_train"])
    assert epoch_size == math.ceil(num_examples / batch_size)
    speed = [SPEED.search(line).groups() for line in lines if SPEED.search(line)]
    # Every disp_batches=2 batches; (round_batch carries the wrapped samples into the
    # next epoch, so epoch 1 may be one batch shorter).
    assert ("0", "0", "2") in speed and ("0", "2", "4") in speed and ("1", "0", "2") in speed
    for epoch in (0, 1):
        for key in ("Train-accuracy", "Time cost", "Validation-accuracy",
                    "Validation-cross-entropy", "Validation-top_k_accuracy_3"):
            assert any(line.startswith(f"Epoch[{epoch}] {key}=") for line in lines), key
    assert "ignoring unknown arguments: --made_up_flag=1" in proc.stderr


@pytest.mark.slow
def test_checkpoints_metrics_and_export(first_run, data_dir):
    out, _ = first_run
    assert {"resnet-8-symbol.json", "resnet-8-0001.params", "resnet-8-0002.params",
            "metrics.json", "model"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["final"] == metrics["epochs"][-1]
    assert metrics["num_classes"] == 3 and metrics["image_shape"] == [3, 32, 32]
    for entry in metrics["epochs"]:
        for key in ("train_accuracy", "val_accuracy", "val_cross_entropy",
                    "val_top_k_accuracy_5"):
            assert 0 <= entry[key] <= (1 if "accuracy" in key else 100), key
        assert entry["val_top_k_accuracy_5"] == 1.0          # k = min(5, 3 classes)
        assert entry["time_s"] > 0 and entry["samples_per_s"] > 0
    model = out / "model"
    assert sorted(os.listdir(model)) == sorted(
        ["resnet-8-symbol.json", "resnet-8-0000.params", "labels.txt", "preprocess.json",
         "customize_service.py", "config.json"])
    assert (model / "labels.txt").read_text() == (data_dir / "labels.txt").read_text()
    pre = json.loads((model / "preprocess.json").read_text())
    assert pre["image_shape"] == [3, 32, 32] and pre["resize"] == 36
    assert json.loads((model / "config.json").read_text())["model_type"] == "MXNet"
    symbol = json.loads((model / "resnet-8-symbol.json").read_text())
    assert symbol["nodes"][-1]["op"] == "SoftmaxOutput"


@pytest.mark.slow
def test_resume_continues_epoch_numbering(first_run, data_dir, tmp_path):
    out = tmp_path / "train_url"
    shutil.copytree(first_run[0], out)
    os.remove(out / "resnet-8-0002.params")  # as if killed during epoch 2 (index 1)
    proc = run_train(f"--data_url={data_dir}", f"--train_url={out}", "--num_epochs=3",
                     "--load_epoch=1", "--export_model=False", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert START.match(proc.stdout.splitlines()[0])
    assert "Epoch[0]" not in proc.stdout
    assert "Epoch[1] Validation-accuracy=" in proc.stdout
    assert "Epoch[2] Validation-accuracy=" in proc.stdout
    assert (out / "resnet-8-0003.params").exists()
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]

    # --resume=auto finds the newest checkpoint (3) and trains only epoch index 3.
    proc = run_train(f"--data_url={data_dir}", f"--train_url={out}", "--num_epochs=4",
                     "--resume=auto", "--export_model=False", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = set(re.findall(r"Epoch\[(\d+)\] Train-accuracy", proc.stdout))
    assert trained == {"3"}


def test_bad_data_url_exits_2_with_one_line(tmp_path):
    proc = run_train(f"--data_url={tmp_path / 'missing'}", f"--train_url={tmp_path / 'o'}")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("train.py: error: --data_url ")
    assert str(tmp_path / "missing") in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--load_epoch=7"], "resnet-8-0007.params not found"),
    (["--image_shape=64,64"], "--image_shape must be 3,H,W"),
    (["--num_layers=19"], "--num_layers 19 is not supported"),
    (["--num_classes=5"], "labels.txt"),
    (["--inference_dir=/nonexistent"], "customize_service.py and config.json not found"),
    (["--num_epochs=two"], "--num_epochs/--num-epochs: expected a whole number, got 'two'"),
    (["--num_epochs=0"], "--num_epochs must be >= 1, got 0"),
    (["--resume=sometimes"], "--resume must be one of auto, no"),
])
def test_bad_arguments_exit_2(data_dir, tmp_path, args, message):
    proc = run_train(f"--data_url={data_dir}", f"--train_url={tmp_path / 'o'}",
                     "--num_layers=8", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_with_another_network_exits_2(first_run, data_dir, tmp_path):
    out = tmp_path / "train_url"
    shutil.copytree(first_run[0], out)
    proc = run_train(f"--data_url={data_dir}", f"--train_url={out}", "--num_epochs=3",
                     "--load_epoch=2", "--model_prefix=resnet-8", *TINY, "--num_layers=14")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not fit this network" in proc.stderr and "Traceback" not in proc.stderr


FAKE_MOXING = '''
"""Test double of ModelArts' moxing: s3://bucket/key -> $FAKE_OBS_ROOT/bucket/key."""
import os, shutil
class file:
    @staticmethod
    def _local(url):
        return os.path.join(os.environ["FAKE_OBS_ROOT"], url.split("://", 1)[1])
    @staticmethod
    def exists(url):
        return os.path.exists(file._local(url))
    @staticmethod
    def copy_parallel(src, dst):
        src = file._local(src) if "://" in src else src
        dst = file._local(dst) if "://" in dst else dst
        shutil.copytree(src, dst, dirs_exist_ok=True)
'''


@pytest.mark.slow
def test_remote_urls_go_through_moxing(data_dir, tmp_path):
    (tmp_path / "mods" / "moxing").mkdir(parents=True)
    (tmp_path / "mods" / "moxing" / "__init__.py").write_text(FAKE_MOXING)
    shutil.copytree(data_dir, tmp_path / "obs" / "bucket" / "data")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "mods"), FAKE_OBS_ROOT=str(tmp_path / "obs"))
    proc = subprocess.run([sys.executable, TRAIN_PY, "--data_url=s3://bucket/data",
                           "--train_url=s3://bucket/job/out", "--num_epochs=1", *TINY],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "obs" / "bucket" / "job" / "out"
    assert {"resnet-8-0001.params", "metrics.json", "model"} <= set(os.listdir(out))
    assert (out / "model" / "customize_service.py").is_file()


@pytest.mark.slow
def test_killed_job_resumes_from_its_last_checkpoint(data_dir, tmp_path):
    """SIGKILL mid-training (no chance to clean up), then --resume=auto finishes the job."""
    import signal
    import time

    out = tmp_path / "train_url"
    args = [f"--data_url={data_dir}", f"--train_url={out}", "--num_epochs=40", "--export_model=False", *TINY]
    proc = subprocess.Popen([sys.executable, TRAIN_PY, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "resnet-8-0002.params").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {int(p.name[9:13]) for p in out.glob("resnet-8-*.params")}
    assert 2 <= max(done) < 40, done
    # the newest file may have been cut short by the kill: truncate it to make sure
    newest = out / ("resnet-8-%04d.params" % max(done))
    newest.write_bytes(newest.read_bytes()[:100])

    resumed = run_train(*args, "--resume=auto", "--num_epochs=%d" % (max(done) + 2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "trying the previous checkpoint" in resumed.stderr
    begin = max(done) - 1                        # the last checkpoint that reads back
    assert f"Resuming from resnet-8-{begin:04d}.params" in resumed.stdout
    trained = sorted({int(e) for e in re.findall(r"Epoch\[(\d+)\] Train-accuracy", resumed.stdout)})
    assert trained == list(range(begin, max(done) + 2))
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(max(done) + 2))


def test_data_packed_without_a_validation_split_trains(tmp_path):
    """`data.val_ratio: 0` makes im2rec write an empty val.rec; the job trains without
    validation instead of failing inside ImageRecordIter."""
    gen.generate(tmp_path / "images", classes=2, images_per_class=6, seed=0, min_size=40, max_size=48,
                 progress=False)
    i2r.im2rec(tmp_path / "images", tmp_path / "rec", val_ratio=0.0, test_ratio=0.0, resize=36, seed=0,
               workers=1, progress=False)
    assert (tmp_path / "rec" / "val.rec").stat().st_size == 0
    proc = run_train(f"--data_url={tmp_path / 'rec'}", f"--train_url={tmp_path / 'out'}", "--num_epochs=1",
                     "--export_model=False", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    epochs = json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs"]
    assert len(epochs) == 1 and epochs[0]["val_accuracy"] is None


def test_bfloat16_training_saves_a_float32_checkpoint(data_dir, tmp_path):
    """--dtype=bfloat16 trains under MXNet AMP where the CPU has bf16 (else float32, with a
    warning); either way the checkpoint is the plain float32 network, servable anywhere."""
    from jobs.common.runtime import cpu_has_bf16

    out = tmp_path / "out"
    proc = run_train(f"--data_url={data_dir}", f"--train_url={out}", "--num_epochs=1", "--export_model=False",
                     "--dtype=bfloat16", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    if cpu_has_bf16():   # the casts must really be in the trained graph (tojson() drops them by default)
        assert int(re.search(r"training in bfloat16 .*?(\d+) casts to bfloat16", log).group(1)) > 0, log[-2000:]
    else:
        assert "training in float32" in log
    symbol = (out / "resnet-8-symbol.json").read_text()
    assert "amp_cast" not in symbol and len(json.loads((out / "metrics.json").read_text())["epochs"]) == 1


def test_bfloat16_training_symbol_computes_in_bfloat16():
    """The symbol Module trains with --dtype=bfloat16 holds AMP's bf16 casts (an earlier
    version rebuilt it through Symbol.tojson(), which drops them, and trained in float32)."""
    import logging

    from jobmodules import job_modules
    from jobs.common.runtime import cpu_has_bf16, mixed_precision

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    resnet = job_modules("image_classification", "resnet")
    symbol, dtype = mixed_precision("bfloat16", lambda: resnet.get_symbol(3, 8, (3, 16, 16)),
                                    ("data", "softmax_label"), logging.getLogger("test"))
    graph = json.loads(symbol.tojson(remove_amp_cast=False))["nodes"]
    casts = [n for n in graph if n["op"] == "amp_cast" and n["attrs"]["dtype"] == "bfloat16"]
    assert dtype == "bfloat16" and casts
    assert all(n["attrs"].get("__dtype__") == "0" for n in graph if n["op"] == "null" and n["name"].endswith("weight"))
