"""Faults and hostile settings at the local backend (issue 12): what user code may see of
our environment, and what the backend finds after a process died."""

from __future__ import annotations

import json

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
    log = (backend.jobs.dir(ref) / "logs" / "supervisor.log").read_text()
    assert "local-secret" not in log


def test_environment_filters():
    env = {**SECRETS, **NEEDED, "PATH": "/bin", "HOME": "/h", "PYTHONPATH": "/p", "DMLC_ROLE": "worker",
           "ORCHESTRATOR_OUTPUT_SYNC_S": "1", "ORCHESTRATOR_SECRET": "s", "http_proxy": "http://u:p@h:1"}
    kept = allowed_env(env)
    assert set(kept) == set(NEEDED) | {"PATH", "HOME", "PYTHONPATH", "DMLC_ROLE", "ORCHESTRATOR_OUTPUT_SYNC_S"}
    # a predictor started by hand keeps its configuration, not its secrets
    assert set(without_secrets(env)) == set(env) - set(SECRETS) - {"ORCHESTRATOR_SECRET"} | {"UNRELATED_THING"}
