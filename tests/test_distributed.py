"""instance_count > 1 on the local backend: a real MXNet parameter-server job on loopback
(scheduler, servers, workers), per-worker logs, failure and stop of every role, and a
2-worker classification run that learns as well as a 1-worker run."""

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobs.data import generate_classification as gen
from jobs.data import im2rec as i2r
from orchestrator.backends.base import JobSpec
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.errors import UserError
from orchestrator.plan import build_plan
from orchestrator.spec import ConfigSpec, load_pipeline
from pipelines import tiny_pipeline

REPO = Path(__file__).resolve().parents[1]
RUN = "261124-120000-d157"
ROLE_LOGS = {"scheduler.log", "server-0.log", "server-1.log", "worker-0.log", "worker-1.log"}

# A worker that talks to the parameter servers like a training script: every worker pushes
# its rank + 1, so the pulled sum proves both workers and the servers took part.
KV_SCRIPT = """
import json, os, sys
import mxnet as mx
args = dict(a.split("=", 1) for a in sys.argv[1:])
keys = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_WORKER", "DMLC_NUM_SERVER",
        "DMLC_NODE_HOST", "DMLC_INTERFACE", "VC_TASK_INDEX", "MA_NUM_HOSTS", "VC_WORKER_NUM",
        "VC_WORKER_HOSTS", "MA_CURRENT_INSTANCE_NAME", "OMP_NUM_THREADS", "MY_FLAG")
kv = mx.kv.create(args.get("--kv_store") or args["--kv-store"])
kv.init(0, mx.nd.zeros(3))
kv.push(0, mx.nd.ones(3) * (kv.rank + 1))
out = mx.nd.zeros(3)
kv.pull(0, out=out)
node = os.environ["VC_TASK_INDEX"]
seen = {"env": {k: os.environ.get(k) for k in keys}, "args": args, "rank": kv.rank, "sum": out.asnumpy().tolist()}
with open(os.path.join(args["--train_url"], "seen-%s.json" % node), "w") as f:
    json.dump(seen, f)
print("node", node, "has rank", kv.rank, flush=True)
"""


def kv_job(tmp_path: Path, body: str, **kw) -> JobSpec:
    code = tmp_path / "kvjob"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(body)
    return JobSpec(name=f"kv-{RUN}-train", run_id=RUN, code_dir=str(code), boot_file="train.py",
                   data_url="obs://dist-in/data/", train_url="obs://dist-in/out/", instance_count=2, **kw)


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path / "root")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    b.storage.put(str(tmp_path / "data"), "obs://dist-in/data/")
    return b


def wait_terminal(backend, ref, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = backend.job_status(ref)
        if state.terminal:
            return state
        time.sleep(0.2)
    backend.stop_job(ref)
    raise AssertionError("job did not finish")


def wait_running(backend, ref) -> dict:
    """state.json once every process of the job has been started."""
    deadline = time.time() + 60
    while time.time() < deadline:
        state = json.loads((backend.training.dir(ref) / "state.json").read_text())
        if "worker-1" in (state.get("processes") or {}):
            return state
        time.sleep(0.1)
    raise AssertionError("the job never ran")


def all_log_lines(backend, ref) -> list[str]:
    lines, offset = backend.job_logs(ref)
    assert backend.job_logs(ref, offset) == ([], offset)
    return lines


def assert_nothing_left(backend, ref):
    """Every process the job started is gone, and no process runs inside its folder."""
    job_dir = backend.training.dir(ref)
    state = json.loads((job_dir / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"].values()] + [state["supervisor"]["pid"]]
    deadline = time.time() + 10   # the supervisor may still be writing its last words
    while time.time() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    assert not [pid for pid in pids if _running(pid)]
    inside = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        if proc.info["cwd"] and str(job_dir) in proc.info["cwd"] and _running(proc.info["pid"]):
            inside.append(proc.info["pid"])
    assert inside == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_two_nodes_run_scheduler_servers_and_workers_on_loopback(backend, tmp_path):
    ref = backend.submit_job(kv_job(tmp_path, KV_SCRIPT, envs=(("MY_FLAG", "1"),)))
    state = wait_terminal(backend, ref)
    assert state.phase == "Completed", state.reason
    job_dir = backend.training.dir(ref)
    seen = {}
    for node in ("0", "1"):
        backend.storage.get(f"obs://dist-in/out/seen-{node}.json", str(tmp_path / f"seen-{node}.json"))
        seen[node] = json.loads((tmp_path / f"seen-{node}.json").read_text())
    for node, s in seen.items():
        env = s["env"]
        assert env["DMLC_ROLE"] == "worker" and env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
        assert env["DMLC_NODE_HOST"] == "127.0.0.1" and env["DMLC_INTERFACE"] == "lo"
        assert (env["DMLC_NUM_WORKER"], env["DMLC_NUM_SERVER"]) == ("2", "2")
        assert env["VC_TASK_INDEX"] == node and env["MA_NUM_HOSTS"] == env["VC_WORKER_NUM"] == "2"
        assert env["VC_WORKER_HOSTS"] == "127.0.0.1,127.0.0.1"
        assert env["MA_CURRENT_INSTANCE_NAME"] == f"kv-{RUN}-train-worker-{node}"
        assert int(env["OMP_NUM_THREADS"]) >= 1 and env["MY_FLAG"] == "1"
        assert s["args"]["--kv_store"] == "dist_sync", "the supervisor passes dist_sync to every worker"
        assert s["sum"] == [3.0, 3.0, 3.0], "both workers' pushes reached the servers"
    assert seen["0"]["env"]["DMLC_PS_ROOT_PORT"] == seen["1"]["env"]["DMLC_PS_ROOT_PORT"]
    assert sorted(s["rank"] for s in seen.values()) == [0, 1]

    assert ROLE_LOGS <= {p.name for p in (job_dir / "logs").iterdir()}
    lines = all_log_lines(backend, ref)
    for node, s in seen.items():
        assert f"[worker-{node}] node {node} has rank {s['rank']}" in lines
    assert all(re.match(r"^\[(worker-[01]|server-[01]|scheduler)\] ", line) for line in lines), lines
    assert_nothing_left(backend, ref)


def test_user_kv_store_is_kept(backend, tmp_path):
    ref = backend.submit_job(kv_job(tmp_path, KV_SCRIPT, hyperparameters=(("kv-store", "dist_sync"),)))
    assert wait_terminal(backend, ref).phase == "Completed"
    backend.storage.get("obs://dist-in/out/seen-1.json", str(tmp_path / "seen.json"))
    args = json.loads((tmp_path / "seen.json").read_text())["args"]
    assert args["--kv-store"] == "dist_sync" and "--kv_store" not in args


CRASH_SCRIPT = """
import os, sys
import mxnet as mx
kv = mx.kv.create("dist_sync")
kv.init(0, mx.nd.zeros(3))
out = mx.nd.zeros(3)
kv.push(0, mx.nd.ones(3))
kv.pull(0, out=out)
out.wait_to_read()
if os.environ["VC_TASK_INDEX"] == "1":
    print("worker 1 is about to fail", flush=True)
    raise RuntimeError("bad things on node 1")   # Python's own exit would hang in the kvstore's barrier
while True:   # node 0 goes on and blocks: dist_sync waits for node 1's push forever
    kv.push(0, mx.nd.ones(3))
    kv.pull(0, out=out)
    out.wait_to_read()
"""


def test_a_crashing_worker_fails_the_job_and_stops_every_role(backend, tmp_path):
    ref = backend.submit_job(kv_job(tmp_path, CRASH_SCRIPT))
    state = wait_terminal(backend, ref)
    assert state.phase == "Failed"
    assert state.reason.startswith("worker-1 exited with code 1"), state.reason
    assert "RuntimeError: bad things on node 1" in state.reason
    lines = all_log_lines(backend, ref)
    assert "[worker-1] worker 1 is about to fail" in lines
    assert "[worker-1] Traceback (most recent call last):" in lines
    assert not any("runpy" in line or "worker_boot" in line for line in lines), "only the script's frames"
    assert_nothing_left(backend, ref)


BLOCKED_SCRIPT = CRASH_SCRIPT.replace('os.environ["VC_TASK_INDEX"] == "1"', "False")   # nobody fails: all wait


def test_stop_and_max_runtime_stop_every_role(backend, tmp_path):
    ref = backend.submit_job(kv_job(tmp_path, BLOCKED_SCRIPT))
    wait_running(backend, ref)
    backend.stop_job(ref)
    assert backend.job_status(ref).phase == "Terminated"
    assert_nothing_left(backend, ref)

    spec = kv_job(tmp_path, BLOCKED_SCRIPT, max_runtime_s=4.0)
    ref = backend.submit_job(dataclasses.replace(spec, name=f"kv2-{RUN}-train"))
    state = wait_terminal(backend, ref)
    assert state.phase == "Failed" and "max_runtime" in state.reason
    assert_nothing_left(backend, ref)


def test_roles_of_a_job_whose_supervisor_was_killed_are_stopped(backend, tmp_path):
    ref = backend.submit_job(kv_job(tmp_path, BLOCKED_SCRIPT))
    supervisor = psutil.Process(wait_running(backend, ref)["supervisor"]["pid"])
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)
    state = backend.job_status(ref)
    assert state.phase == "Failed" and "supervisor died" in state.reason
    assert_nothing_left(backend, ref)


def test_shard_sizes_match_mxnet_and_empty_shards_are_refused(tmp_path):
    import mxnet as mx

    from jobs.image_classification import rec_data
    gen.generate(tmp_path / "images", classes=2, images_per_class=5, seed=0, min_size=40, max_size=48,
                 progress=False)
    i2r.im2rec(tmp_path / "images", tmp_path / "rec", val_ratio=0.0, test_ratio=0.0, resize=36, seed=0,
               workers=1, progress=False)
    data = rec_data.describe(str(tmp_path / "rec"))
    rec, idx = data["train"]
    for parts in (2, 3, 4):
        counted = [sum(b.data[0].shape[0] - b.pad for b in mx.io.ImageRecordIter(
            path_imgrec=rec, path_imgidx=idx, data_shape=(3, 32, 32), batch_size=1, num_parts=parts,
            part_index=i, shuffle=True)) for i in range(parts)]
        assert rec_data.shard_sizes(10, parts) == counted
    assert rec_data.sync_epoch_size(data, batch_size=2, num_workers=4) == (1, [3, 3, 3, 1])
    with pytest.raises(rec_data.DataError, match="cannot be split over 6 workers"):
        rec_data.sync_epoch_size(data, batch_size=2, num_workers=6)


def test_dist_kv_store_outside_a_parameter_server_job_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "image_classification" / "train.py"),
                           f"--data_url={tmp_path}", f"--train_url={tmp_path / 'o'}", "--kv_store=dist_sync"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--kv_store=dist_sync needs a parameter-server job" in proc.stderr


def test_plan_describes_the_emulated_nodes_and_limits_them(tmp_path):
    path = tiny_pipeline(tmp_path, train={"instance_count": 2})
    plan = build_plan(load_pipeline(path), ConfigSpec(), spec_path=path, config_dir=tmp_path, run_id=RUN)
    assert plan.job.instance_count == 2
    assert any("2 workers + 2 servers + scheduler on loopback (dist_sync)" in note for note in plan.notes)
    with pytest.raises(UserError, match="instance_count"):
        load_pipeline(tiny_pipeline(tmp_path, train={"instance_count": 9}))


# --- the proof: 2 workers learn as well as 1 on the same data, epochs and global batch ---

TEXTURES = ("hstripes", "vstripes", "checkerboard")   # learnable by a tiny net in a few epochs


@pytest.fixture(scope="module")
def texture_backend(tmp_path_factory):
    base = tmp_path_factory.mktemp("dist-train")
    gen.generate(base / "all", classes=len(gen.PATTERNS), images_per_class=60, seed=0, min_size=40,
                 max_size=64, progress=False)
    (base / "images").mkdir()
    for name in TEXTURES:
        shutil.move(str(base / "all" / name), str(base / "images" / name))
    i2r.im2rec(base / "images", base / "rec", val_ratio=0.25, test_ratio=0.0, resize=36, seed=0, workers=1,
               progress=False)
    backend = LocalBackend(base / "root")
    backend.storage.put(str(base / "rec"), "obs://dist-train/data/")
    return backend


def train_classifier(backend, workers: int) -> tuple[dict, list[str], Path]:
    hp = {"num_layers": 8, "image_shape": "3,32,32", "batch_size": 16 // workers, "lr": 0.05,
          "lr_step": 7, "num_epochs": 8, "disp_batches": 4, "export_model": False}
    spec = JobSpec(name=f"cls{workers}-{RUN}-train", run_id=RUN, code_dir=str(REPO / "jobs" / "image_classification"),
                   boot_file="train.py", data_url="obs://dist-train/data/", train_url=f"obs://dist-train/out{workers}/",
                   hyperparameters=tuple((k, str(v)) for k, v in hp.items()), instance_count=workers)
    ref = backend.submit_job(spec)
    state = wait_terminal(backend, ref, timeout=280)
    assert state.phase == "Completed", state.reason
    target = backend.root / f"metrics-{workers}.json"
    backend.storage.get(f"{spec.train_url}metrics.json", str(target))
    return json.loads(target.read_text()), all_log_lines(backend, ref), backend.training.dir(ref)


@pytest.mark.slow
def test_two_workers_reach_the_accuracy_of_one(texture_backend):
    single, _, _ = train_classifier(texture_backend, 1)
    double, lines, job_dir = train_classifier(texture_backend, 2)
    one, two = single["final"]["val_accuracy"], double["final"]["val_accuracy"]
    assert one >= 0.7 and two >= 0.7, (one, two)   # chance is 1/3
    assert abs(one - two) <= 0.15, (one, two)

    # Only rank 0 validates and writes checkpoints and metrics.json; both run every epoch.
    assert [e["epoch"] for e in double["epochs"]] == list(range(8))
    logs = {n: (job_dir / "logs" / f"worker-{n}.log").read_text() for n in (0, 1)}
    writers = [n for n, text in logs.items() if "Saved checkpoint" in text]
    assert len(writers) == 1 and "worker rank 0 of 2" in logs[writers[0]]
    assert "Validation-accuracy" not in logs[1 - writers[0]]
    starts = {n: re.search(r"Start training: .* epoch_size=(\d+)", text).group(1) for n, text in logs.items()}
    assert starts[0] == starts[1] and all("Epoch[7] Train-accuracy" in text for text in logs.values())
    assert any(line.startswith("[worker-0] Epoch[7]") for line in lines)
    assert any(line.startswith("[worker-1] Epoch[7]") for line in lines)
    out = texture_backend.storage.path_for("obs://dist-train/out2/")
    assert sorted(p.name for p in out.glob("*.params")) == [f"resnet-8-{e:04d}.params" for e in range(1, 9)]
