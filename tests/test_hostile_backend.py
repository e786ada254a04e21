"""Faults and hostile settings at the local backend (issue 12): what user code may see of
our environment, and what the backend finds after a process died."""

from __future__ import annotations

import json

import pytest

from orchestrator.childenv import allowed_env, without_secrets
from test_local_backend import backend, job_spec, wait_terminal  # noqa: F401 (fixture)

SECRETS = {"HUAWEICLOUD_SDK_AK": "LOCALAK", "HUAWEICLOUD_SDK_SK": "local-secret", "PREDICTOR_AUTH_TOKEN": "tok",
           "AWS_SECRET_ACCESS_KEY": "x", "GITHUB_TOKEN": "y", "UNRELATED_THING": "z"}
NEEDED = {"OMP_NUM_THREADS": "1", "MXNET_ENGINE_TYPE": "NaiveEngine", "KMP_AFFINITY": "disabled",
          "OPENBLAS_NUM_THREADS": "1", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "LC_ALL": "C.UTF-8"}


def test_training_jobs_get_an_allow_listed_environment_plus_their_spec_envs(backend, tmp_path, monkeypatch):
    for name, value in {**SECRETS, **NEEDED}.items():
        monkeypatch.setenv(name, value)
    body = ("out = dict(a.split('=', 1) for a in sys.argv[1:])['--train_url']\n"
            "open(os.path.join(out, 'env.json'), 'w').write(__import__('json').dumps(dict(os.environ)))")
    ref = backend.submit_job(job_spec(tmp_path, body, envs=(("MY_SETTING", "on"), ("MY_API_TOKEN", "named"))))
    state = wait_terminal(backend, ref)
    assert state.phase == "Completed", state.reason
    backend.storage.get("obs://b-in/x/output/env.json", str(tmp_path / "env.json"))
    seen = json.loads((tmp_path / "env.json").read_text())
    assert not set(SECRETS) & set(seen), "credentials reached the training script"
    assert all(seen[k] == v for k, v in NEEDED.items() if k != "OMP_NUM_THREADS"), seen
    assert {"PATH", "HOME", "PYTHONPATH", "OMP_NUM_THREADS", "MA_NUM_HOSTS"} <= set(seen)
    assert seen["MY_SETTING"] == "on" and seen["MY_API_TOKEN"] == "named"   # what the spec names passes
    log = (backend.training.dir(ref) / "logs" / "supervisor.log").read_text()
    assert "local-secret" not in log


def test_environment_filters():
    env = {**SECRETS, **NEEDED, "PATH": "/bin", "HOME": "/h", "PYTHONPATH": "/p", "DMLC_ROLE": "worker",
           "ORCHESTRATOR_OUTPUT_SYNC_S": "1", "ORCHESTRATOR_SECRET": "s", "http_proxy": "http://u:p@h:1"}
    kept = allowed_env(env)
    assert set(kept) == set(NEEDED) | {"PATH", "HOME", "PYTHONPATH", "DMLC_ROLE", "ORCHESTRATOR_OUTPUT_SYNC_S"}
    # a predictor started by hand keeps its configuration, not its secrets
    assert set(without_secrets(env)) == set(env) - set(SECRETS) - {"ORCHESTRATOR_SECRET"} | {"UNRELATED_THING"}


# -- a damaged or lost ledger, a full disk ------------------------------------------------------

RUN_ID = "261204-120000-beef"


def ledger_with_a_run(tmp_path):
    from orchestrator.ledger import Ledger
    from pipelines import tiny_pipeline
    tiny_pipeline(tmp_path)                                   # config.json: root = tmp_path / "state"
    state = tmp_path / "state"
    run_dir = state / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps({"run_id": RUN_ID, "pipeline": "tiny", "status": "failed",
                                                     "backend": "local", "profile": "local", "started_at": 1.0}))
    (state / "tmp" / RUN_ID).mkdir(parents=True)              # what the run left
    ledger = Ledger(state / "ledger.sqlite")
    ledger.start_run(RUN_ID, "tiny", "p.yaml", "local", "local", 999_999_999, 1.0, str(run_dir))
    ledger.intend(RUN_ID, "temp_dir", str(state / "tmp" / RUN_ID), {})
    return state


@pytest.mark.parametrize("damage", ["truncated", "zero bytes"])
def test_a_damaged_or_lost_ledger_is_a_clear_error_and_repair_loses_nothing(tmp_path, damage):
    from pipelines import cli
    state = ledger_with_a_run(tmp_path)
    path = state / "ledger.sqlite"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3] if damage == "truncated" else b"")
    status = cli("status", cwd=tmp_path, timeout=60)
    assert "Traceback" not in status.stderr
    if damage == "zero bytes":   # a valid, empty SQLite file: the run folders show what is missing
        assert status.returncode == 0 and "cleanup --repair" in status.stderr
    else:
        assert status.returncode == 1 and "damaged" in status.stderr and "cleanup --repair" in status.stderr
        assert cli("cleanup", cwd=tmp_path, timeout=60).returncode == 1
    repaired = cli("cleanup", "--repair", cwd=tmp_path, timeout=60)
    assert repaired.returncode == 0 and "Traceback" not in repaired.stderr, repaired.stderr
    assert RUN_ID in cli("status", cwd=tmp_path, timeout=60).stdout          # the run is known again
    assert not (state / "tmp" / RUN_ID).exists()                              # and its leftovers are gone
    if damage != "zero bytes":
        assert list(state.glob("ledger.sqlite.damaged-*")), "the damaged file is kept"


def test_teardown_goes_on_when_the_ledger_cannot_be_written(tmp_path):
    from orchestrator.backends.local.backend import LocalBackend
    from orchestrator.ledger import Ledger, LedgerError
    from orchestrator.reconcile import leftovers, remove

    class FullDiskLedger(Ledger):                             # every write after the deletions fails
        def deleted(self, rid):
            raise LedgerError("cannot write the ledger: the disk is full")

    backend = LocalBackend(tmp_path / "root")
    ledger = FullDiskLedger(tmp_path / "root" / "ledger.sqlite")
    ledger.start_run(RUN_ID, "p", "p.yaml", "local", "local", 999_999_999, 1.0, str(tmp_path))
    for n in range(2):
        folder = backend.temp_dir(RUN_ID) / f"part{n}"
        folder.mkdir(parents=True)
        ledger.intend(RUN_ID, "temp_dir", str(folder), {})
    deleted, failed = remove(backend, ledger, leftovers(backend, ledger, RUN_ID), lambda _: None)
    assert len(deleted) == 3 and failed == []                 # two from the ledger, the run's folder listed
    assert not backend.temp_dir(RUN_ID).exists()
