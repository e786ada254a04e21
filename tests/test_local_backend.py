"""The local backend's jobs, registry and resource listing, without the pipeline around them."""

import json
import time
from pathlib import Path

import pytest

from orchestrator.backends.base import BackendError, JobSpec, ModelSpec, Resource
from orchestrator.backends.local.backend import LocalBackend
from orchestrator.model_package import validate_package

RUN = "261123-120000-beef"


def job_spec(tmp_path: Path, body: str, **kw) -> JobSpec:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("import os, sys, time\n" + body + "\n")
    return JobSpec(name=f"t-{RUN}-train", run_id=RUN, code_dir=str(code), boot_file="train.py",
                   data_url="obs://b-in/x/data/", train_url="obs://b-in/x/output/", **kw)


def wait_terminal(backend, ref, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = backend.job_status(ref)
        if state.terminal:
            return state
        time.sleep(0.1)
    raise AssertionError("job did not finish")


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path / "root")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.rec").write_bytes(b"x" * 10)
    b.storage.put(str(data), "obs://b-in/x/data/")
    return b


def test_job_gets_modelarts_arguments_environment_and_outputs(backend, tmp_path):
    body = ("args = dict(a.split('=', 1) for a in sys.argv[1:])\n"
            "out = args['--train_url']\n"
            "open(os.path.join(out, 'seen.json'), 'w').write(__import__('json').dumps({'args': args, "
            "'files': os.listdir(args['--data_url']), 'hosts': os.environ['MA_NUM_HOSTS'], "
            "'task': os.environ['VC_TASK_INDEX'], 'cwd': os.getcwd()}))\nprint('done')")
    ref = backend.submit_job(job_spec(tmp_path, body, hyperparameters=(("lr", "0.1"),)))
    state = wait_terminal(backend, ref)
    assert state.phase == "Completed", state.reason
    backend.storage.get("obs://b-in/x/output/seen.json", str(tmp_path / "seen.json"))
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["args"]["--lr"] == "0.1" and seen["args"]["--num_gpus"] == "0"
    assert seen["files"] == ["train.rec"] and seen["hosts"] == "1" and seen["task"] == "0"
    assert seen["cwd"].endswith("/code"), "the code folder is a child of the working directory"
    lines, offset = backend.job_logs(ref)
    assert lines == ["done"] and backend.job_logs(ref, offset) == ([], offset)
    history = json.loads((backend.training.dir(ref) / "state.json").read_text())["history"]
    assert [h["phase"] for h in history] == ["Creating", "Pending", "Running", "Completed"]


def test_max_runtime_is_enforced_by_the_supervisor(backend, tmp_path):
    ref = backend.submit_job(job_spec(tmp_path, "time.sleep(60)", max_runtime_s=1.0))
    state = wait_terminal(backend, ref, timeout=30)
    assert state.phase == "Failed" and "max_runtime" in state.reason


def test_stop_terminates_and_delete_is_idempotent(backend, tmp_path):
    ref = backend.submit_job(job_spec(tmp_path, "print('up', flush=True); time.sleep(60)"))
    deadline = time.time() + 30
    while backend.job_status(ref).phase != "Running" and time.time() < deadline:
        time.sleep(0.05)
    backend.stop_job(ref)
    assert backend.job_status(ref).phase == "Terminated"
    assert any(r.kind == "job" for r in backend.list_resources(RUN))
    backend.delete_job(ref)
    backend.delete_job(ref)
    assert not any(r.kind == "job" for r in backend.list_resources(RUN))


def test_model_import_validates_the_package(backend, tmp_path):
    pkg = tmp_path / "pkg" / "model"
    pkg.mkdir(parents=True)
    (pkg / "config.json").write_text(json.dumps({"model_type": "MXNet", "model_algorithm": "x",
                                                 "apis": [{"url": "/", "method": "post"}]}))
    assert "customize_service.py is missing from the model/ folder" in validate_package(pkg)
    backend.storage.put(str(tmp_path / "pkg"), "obs://b-in/m/")
    with pytest.raises(BackendError, match="invalid"):
        backend.import_model(ModelSpec(name="m1", version="0.0.1", run_id=RUN, source_location="obs://b-in/m/"))
    (pkg / "customize_service.py").write_text("")
    (pkg / "net-symbol.json").write_text("{}")
    (pkg / "net-0000.params").write_bytes(b"")
    assert validate_package(pkg) == []
    backend.storage.put(str(tmp_path / "pkg"), "obs://b-in/m/")
    ref = backend.import_model(ModelSpec(name="m2", version="0.0.1", run_id=RUN, source_location="obs://b-in/m/"))
    assert backend.models.path(ref.id).joinpath("customize_service.py").exists()
    assert {r.name for r in backend.list_resources(RUN) if r.kind == "model"} == {"m1 0.0.1", "m2 0.0.1"}
    backend.delete_model(ref)
    backend.delete_model(ref)


def test_run_prefixes_and_temp_dirs_are_listed_by_run_id(backend):
    backend.storage.put(__file__, f"obs://demo/pipe/{RUN}/data/t.py")
    backend.storage.put(__file__, "obs://demo/pipe/not-a-run/t.py")
    backend.temp_dir(RUN).mkdir(parents=True)
    kinds = {(r.kind, r.id) for r in backend.list_resources(RUN)}
    assert ("object_prefix", f"obs://demo/pipe/{RUN}/") in kinds
    assert ("temp_dir", str(backend.temp_dir(RUN))) in kinds
    assert not any("not-a-run" in r.id for r in backend.list_resources())
    with pytest.raises(BackendError, match="refusing"):
        backend.delete_resource(Resource("temp_dir", "/etc", "/etc", RUN))


def test_many_processes_opening_a_new_root_at_once(tmp_path):
    """Pipelines started together all create the SQLite files: switching a new file to WAL
    says 'database is locked' at once to the others (no busy wait), which must not fail them."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    code = ("import os, sys, time; from pathlib import Path; from orchestrator.backends.local.backend import LocalBackend; "
            "from orchestrator.ledger import Ledger\n"
            "Path(sys.argv[3]).touch()\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
            "b = LocalBackend(Path(sys.argv[1])); Ledger(b.root / 'ledger.sqlite'); b.storage.list('obs://bucket-x/')")
    for attempt in range(3):
        root, ready = tmp_path / f"root{attempt}", tmp_path / f"ready{attempt}"
        ready.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(go), str(ready / str(i))],
                                  stderr=subprocess.PIPE, text=True) for i in range(8)]
        deadline = time.time() + 120
        while len(list(ready.iterdir())) < 8:     # every process imported and waiting
            assert time.time() < deadline and all(p.poll() is None for p in procs), "a process did not get ready"
            time.sleep(0.01)
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
        go.unlink()
        assert errors == []
