"""The notebook SDK (orchestrator.sdk) on the local backend: real uploads, a real tiny MXNet
job, a real model import and predictor over HTTP, the ledger, cleanup, argument errors."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import requests

from orchestrator.backends.base import BackendError
from orchestrator.errors import StepFailed, UserError
from orchestrator.ledger import Ledger
from orchestrator.sdk import ArgumentError, Estimator, Model, Predictor, ServiceConfig, Session
from pipelines import REPO, cli

FIXTURES = REPO / "tests" / "fixtures" / "predictor"
TINY_HP = [{"label": "num_layers", "value": 20}, {"label": "image_shape", "value": "3,32,32"},
           {"label": "num_epochs", "value": 2}, {"label": "batch_size", "value": 8},
           {"label": "lr", "value": 0.05}, {"label": "disp_batches", "value": 2}]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "profiles": {"local": {"backend": "local", "root": str(tmp_path / "state")}},
        "flavors": {"modelarts.vm.cpu.2u": {"cpus": 2}, "modelarts.vm.cpu.8u": {"cpus": 8}},
        "poll_interval": 0.2}))
    return path


@pytest.fixture
def session(config):
    with Session(config=config) as s:
        yield s


@pytest.fixture
def code_dir(tmp_path) -> Path:
    """The classification job with its inference files beside train.py (as shipped to ModelArts)."""
    code = tmp_path / "code" / "image_classification"
    shutil.copytree(REPO / "jobs" / "image_classification", code, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("customize_service.py", "config.json"):
        shutil.copy(REPO / "inference" / "image_classification" / name, code / name)
    return code


def packed_data(tmp_path: Path) -> Path:
    run = lambda *args: subprocess.run([sys.executable, "-m", *args], cwd=REPO, check=True, capture_output=True)
    run("jobs.data.generate_classification", str(tmp_path / "images"), "--classes", "3", "--images-per-class", "15",
        "--seed", "1", "--min-size", "40", "--max-size", "80")
    run("jobs.data.im2rec", str(tmp_path / "images"), str(tmp_path / "packed"), "--val-ratio", "0.2",
        "--test-ratio", "0.2", "--resize", "36", "--workers", "1")
    return tmp_path / "packed"


def processes_under(root: Path) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if any(str(root) in a for a in p.info["cmdline"] or [])]


def tiny_package(fixture: str, dest: Path) -> Path:
    """A model/ folder: the fixture's service code plus a tiny MXNet checkpoint."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from tiny_model import make_package; "
              "make_package(sys.argv[2], sys.argv[3])")
    subprocess.run([sys.executable, "-c", script, str(FIXTURES), str(FIXTURES / fixture), str(dest)], check=True)
    return dest


def assert_logged_to_mlflow(uri: str, job) -> None:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(job.tracking["run_id"])
    assert run.info.run_name == f"notebook-{job.session.run_id}-face-job" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.05" and run.data.params["train_flavor"] == "modelarts.vm.cpu.8u"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1]
    version = client.get_model_version("notebook", str(job.tracking["model_version"]))
    assert version.run_id == run.info.run_id


# -- the whole tutorial flow -----------------------------------------------------------------

@pytest.mark.slow
def test_fit_create_model_deploy_predict_delete(tmp_path, config, code_dir, capsys):
    tracked = json.loads(config.read_text())
    tracked["tracking"] = {"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}}   # relative to config.json
    config.write_text(json.dumps(tracked))
    with Session(config=config) as session:
        data = session.upload_data(bucket_path="/sdk-test/face/", path=str(packed_data(tmp_path)))
        code = session.upload_data(bucket_path="/sdk-test/face/", path=str(code_dir))
        assert (data, code) == ("obs://sdk-test/face/packed/", "obs://sdk-test/face/image_classification/")
        estimator = Estimator(modelarts_session=session, framework_type="MXNet",
                              framework_version="MXNet-1.2.1-python3.6", code_dir=code, boot_file=code + "train.py",
                              log_url="/sdk-test/face/log/", hyperparameters=TINY_HP,
                              output_path="/sdk-test/face/output/", train_instance_type="modelarts.vm.cpu.8u",
                              train_instance_count=1)
        job = estimator.fit(inputs=data, wait=True, job_name="face-job")
        out = capsys.readouterr().out
        assert "Training job face-job: Running" in out and "epoch 2/2: Train-accuracy=" in out
        assert "Training job face-job: Completed" in out
        info = estimator.get_job_info()
        assert info["phase"] == "Completed" and info["status"] == 10 and "Validation-accuracy" in info["metrics"]
        assert "Epoch[1]" in job.get_job_log()
        assert session.storage.list(f"obs://sdk-test/face/log/{job.ref.name}-worker-0.log")
        assert job.report_path.read_text().count("<img class='plot'") == 2   # timeline, curves
        assert_logged_to_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", job)

        model = estimator.create_model(model_algorithm="image_classification", source_location="/sdk-test/face/output/",
                                       execution_code="/sdk-test/face/output/model/customize_service.py",
                                       model_type="MXNet")
        assert model.get_model_info()["model_status"] == "published"
        configs = [ServiceConfig(model_id=model.get_model_id(), weight="100", instance_count=1,
                                 specification="modelarts.vm.cpu.2u", envs={})]
        predictor = estimator.deploy_predictor(service_name="face_recognition", configs=configs)
        assert predictor.access_address.startswith("http://127.0.0.1:")
        labels = (tmp_path / "packed" / "labels.txt").read_text().split()
        image = next((tmp_path / "images").rglob("*.jpg"))
        result = predictor.predict(data=str(image), data_type="images")
        assert result["predicted_label"] in labels and len(result["scores"]) == len(labels)
        again = Predictor(session, service_id=predictor.service_id)   # attach to it by id
        assert again.predict(data=str(image))["predicted_label"] == result["predicted_label"]
        assert predictor.get_service_info()["invocation_times"] == 1
        # the classic SDK's listings and service updates, and download_file to a file name
        assert [s["service_id"] for s in Predictor.get_service_list(session)["services"]] == [predictor.service_id]
        assert [m.get_model_id() for m in Model.get_model_object_list(session)] == [model.get_model_id()]
        jobs = Estimator.get_job_list(session)
        assert jobs["job_total_count"] == 1 and jobs["jobs"][0]["status"] == 10
        assert "modelarts.vm.cpu.8u" in {s["spec_code"] for s in Estimator.get_train_instance_types(session)["specs"]}
        assert Estimator.get_framework_list(session)["engines"][0]["engine_name"] == "MXNet"
        predictor.update_service_config(status="stopped")
        assert requests_fail(predictor.access_address)
        predictor.update_service_config(status="running")
        assert predictor.predict(data=str(image))["predicted_label"] == result["predicted_label"]
        names = session.obs.download_file("/sdk-test/face/output/model/labels.txt", str(tmp_path / "dl" / "names"))
        assert names == str(tmp_path / "dl" / "names") and Path(names).read_text().split() == labels

        kinds = {(r["kind"], r["state"]) for r in session.resources()}
        assert {("job", "created"), ("model", "created"), ("service", "created"), ("temp_dir", "created"),
                ("object_prefix", "created")} == kinds
        predictor.delete_service()
        model.delete_model()
        Estimator.delete_job_by_id(session, estimator.job_id)
        states = {r["kind"]: r["state"] for r in session.resources() if r["kind"] in ("job", "model", "service")}
        assert states == {"job": "deleted", "model": "deleted", "service": "deleted"}
        assert requests_fail(predictor.access_address)
        run_id = session.run_id
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    assert ledger.run(run_id).status == "succeeded" and ledger.live_resources(run_id) == []
    assert not session.storage.exists("obs://sdk-test/face/")     # uploads, outputs and logs went with it
    assert processes_under(tmp_path / "state") == []
    assert json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout) == []


@pytest.mark.slow
def test_the_same_calls_on_the_modelarts_backend(tmp_path, code_dir, monkeypatch):
    """The cloud path: OBS on an S3-compatible server, ModelArts through its emulator."""
    from cloud import ENV, emulator, moto_server, write_config
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    data_dir = packed_data(tmp_path)
    with moto_server(tmp_path) as obs, emulator(tmp_path, obs) as (modelarts, _):
        with Session(profile="emulator", config=write_config(tmp_path, modelarts, obs)) as session:
            assert session.backend.name == "modelarts"
            data = session.upload_data(bucket_path="/sdk-cloud/run/", path=str(data_dir))
            estimator = Estimator(modelarts_session=session, framework_type="MXNet", code_dir=str(code_dir),
                                  boot_file="train.py", log_url="/sdk-cloud/run/log/", hyperparameters=TINY_HP,
                                  output_path="/sdk-cloud/run/output/", train_instance_type="modelarts.vm.cpu.8u")
            estimator.fit(inputs=data, wait=True, job_name="cloud-job")
            model = estimator.create_model(model_type="MXNet")
            predictor = estimator.deploy_predictor(service_name="cloud_svc",
                                                   configs=[ServiceConfig(model_id=model.get_model_id())])
            assert "/v1/infers/" in predictor.access_address
            image = next((tmp_path / "images").rglob("*.jpg"))
            labels = (data_dir / "labels.txt").read_text().split()
            assert predictor.predict(data=str(image), data_type="images")["predicted_label"] in labels
            assert {r["kind"] for r in session.resources()} == {"object_prefix", "job", "model", "service"}
        assert list(session.backend.list_resources(session.run_id)) == []
        assert session.storage.list("obs://sdk-cloud/") == [], "nothing of the run remains in the bucket"


def requests_fail(url: str) -> bool:
    try:
        requests.get(url.rstrip("/") + "/health", timeout=2)
    except requests.RequestException:
        return True
    return False


def test_a_forgotten_service_is_removed_by_cleanup(tmp_path, config):
    """A notebook deploys and its kernel exits without deleting anything."""
    tiny_package("classifier", tmp_path / "pkg" / "model")
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(f"""
        import json
        from orchestrator.sdk import Model, ServiceConfig, Session
        session = Session(config={str(config)!r})
        session.upload_data(bucket_path="/forgot/m/", path={str(tmp_path / "pkg" / "model")!r})
        model = Model(session, model_name="tiny", source_location="/forgot/m/", model_type="MXNet")
        config = ServiceConfig(model_id=model.get_model_id(), envs={{"input_data_shape": "0,3,16,16"}})
        predictor = model.deploy_predictor(service_name="forgotten", configs=[config])
        print(json.dumps({{"run_id": session.run_id, "url": predictor.access_address}}))
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout.splitlines()[-1])
    assert requests.get(started["url"] + "health", timeout=5).status_code == 200   # still serving
    assert processes_under(tmp_path / "state")

    listed = json.loads(cli("cleanup", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert {r["kind"] for r in listed} == {"service", "model", "object_prefix"}
    assert {r["run_id"] for r in listed} == {started["run_id"]}
    result = cli("cleanup", cwd=tmp_path)
    assert result.returncode == 0 and "removed 3 resource(s)" in result.stdout, result.stdout + result.stderr
    assert requests_fail(started["url"]) and processes_under(tmp_path / "state") == []
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    assert ledger.live_resources() == [] and ledger.run(started["run_id"]).status == "cleaned"


def test_a_failed_deploy_was_recorded_first_and_is_cleaned(tmp_path, config):
    tiny_package("broken_init", tmp_path / "pkg" / "model")
    with Session(config=config) as session:
        session.upload_data(bucket_path="/broken/m/", path=str(tmp_path / "pkg" / "model"))
        model = Model(session, model_name="broken", source_location="/broken/m/", model_type="MXNet")
        with pytest.raises(BackendError, match="failed to deploy"):
            model.deploy_predictor(service_name="broken", configs=[ServiceConfig(model_id=model.get_model_id())])
        service = [r for r in session.resources() if r["kind"] == "service"]
        assert [r["state"] for r in service] == ["intent"]
        assert session.cleanup() == 3          # the failed service, the model, the upload
        assert all(r["state"] == "deleted" for r in session.resources())
    assert not list((tmp_path / "state" / "services").glob("*"))


def test_the_session_context_cleans_up_on_errors(tmp_path, config):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RuntimeError):
        with Session(config=config) as session:
            uri = session.obs.upload_file(str(tmp_path / "notes.txt"), "obs://kept-nothing/a/")
            assert uri == "obs://kept-nothing/a/notes.txt" and session.storage.exists(uri)
            raise RuntimeError("a cell failed")
    assert not session.storage.exists(uri)
    assert Ledger(tmp_path / "state" / "ledger.sqlite").run(session.run_id).status == "failed"
    with pytest.raises(UserError, match="closed"):
        session.upload_data(bucket_path="/kept-nothing/a/", path=str(tmp_path / "notes.txt"))


def test_download_data_round_trip(tmp_path, session):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    uri = session.upload_data(bucket_path="obs://round-trip/in/", path=str(tmp_path / "d"))
    got = session.download_data(bucket_path=uri + "x.txt", path=str(tmp_path / "back.txt"))
    assert Path(got).read_text() == "x"
    assert session.obs.download_dir(uri, str(tmp_path / "copy")) == str(tmp_path / "copy" / "d")
    assert (tmp_path / "copy" / "d" / "x.txt").read_text() == "x"


# -- wrong arguments name the argument, and nothing is created -------------------------------

def estimator_args(code_dir) -> dict:
    return dict(framework_type="MXNet", code_dir=str(code_dir), boot_file="train.py", output_path="/b-x/out/",
                train_instance_type="modelarts.vm.cpu.8u", hyperparameters=TINY_HP)


@pytest.mark.parametrize("change, message", [
    ({"code_dir": None}, r"^code_dir: is required"),
    ({"code_dir": "/no-such/folder/"}, r"^code_dir: '/no-such/folder/' is neither a local folder nor an OBS folder"),
    ({"code_dir": "relative/missing"}, r"^code_dir: 'relative/missing' is not a local folder"),
    ({"boot_file": "nope.py"}, r"^boot_file: 'nope.py' does not exist in code_dir"),
    ({"boot_file": "/etc/passwd"}, r"^boot_file: '/etc/passwd' is not inside code_dir"),
    ({"train_instance_type": "modelarts.vm.cpu.8uu"}, r"^train_instance_type: unknown flavour 'modelarts.vm.cpu.8uu'"
                                                      r"\n  hint: did you mean 'modelarts.vm.cpu.8u'\?"),
    ({"train_instance_type": None}, r"^train_instance_type: is required"),
    ({"train_instance_count": 0}, r"^train_instance_count: must be a whole number"),
    ({"framework_type": "TensorFlow"}, r"^framework_type: 'TensorFlow' is not supported\n  hint: use 'MXNet'"),
    ({"hyperparameters": {"lr": 0.1}}, r"^hyperparameters: must be a list of .* got a dict\n  hint: write "
                                       r"hyperparameters=\[\{'label': 'lr', 'value': 0.1\}\]"),
    ({"hyperparameters": [{"name": "lr", "value": 0.1}]}, r"^hyperparameters\[0\]: must be a dict with exactly"),
    ({"hyperparameters": [{"label": "1lr", "value": 0.1}]}, r"^hyperparameters\[0\]\['label'\]: '1lr'"),
    ({"hyperparameters": [{"label": "lr", "value": [1]}]}, r"^hyperparameters\[0\]\['value'\]: must be"),
    ({"output_path": "not-obs"}, r"^output_path: 'not-obs' is not an OBS path"),
    ({"output_path": "obs://Bad_Bucket/x/"}, r"^output_path: bad bucket name"),
    ({"log_url": "obs://b-x/../x/"}, r"^log_url: key"),
])
def test_estimator_argument_errors(session, code_dir, change, message):
    with pytest.raises(ArgumentError, match=message):
        Estimator(session, **{**estimator_args(code_dir), **change})
    assert session.resources() == []


def test_fit_and_model_argument_errors(tmp_path, session, code_dir):
    estimator = Estimator(session, **estimator_args(code_dir))
    with pytest.raises(ArgumentError, match=r"^inputs: is required"):
        estimator.fit()
    with pytest.raises(ArgumentError, match=r"^inputs: no objects under obs://b-x/data/\n  hint: upload the data"):
        estimator.fit(inputs="/b-x/data/")
    with pytest.raises(UserError, match="no training job yet"):
        estimator.create_model(model_type="MXNet")
    with pytest.raises(ArgumentError, match=r"^configs: no model to deploy"):
        estimator.deploy_predictor(service_name="x")
    with pytest.raises(ArgumentError, match=r"^source_location: no model/ folder under obs://b-x/empty/"):
        Model(session, model_name="m", model_type="MXNet", source_location="/b-x/empty/")
    with pytest.raises(ArgumentError, match=r"^model_type: is required"):
        Model(session, model_name="m", source_location="/b-x/empty/")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    session.upload_data(bucket_path="/b-x/m/", path=str(tmp_path / "model"))
    with pytest.raises(ArgumentError, match=r"^execution_code: must be obs://b-x/m/model/customize_service.py"):
        Model(session, model_name="m", model_type="MXNet", source_location="/b-x/m/", execution_code="/b-x/m/x.py")
    with pytest.raises(ArgumentError, match=r"^execution_code: obs://b-x/m/model/customize_service.py does not exist"):
        Model(session, model_name="m", model_type="MXNet", source_location="/b-x/m/",
              execution_code="/b-x/m/model/customize_service.py")
    with pytest.raises(ArgumentError, match=r"^model_version: '1.0' is not a version"):
        Model(session, model_name="m", model_type="MXNet", source_location="/b-x/m/", model_version="1.0")
    assert [r["kind"] for r in session.resources()] == ["object_prefix"]   # only the upload


@pytest.mark.parametrize("kwargs, message", [
    ({"weight": "ten"}, r"^weight: must be a whole number from 0 to 100"),
    ({"instance_count": 0}, r"^instance_count: must be"),
    ({"envs": {"a": 1}}, r"^envs: must be a dict of strings"),
    ({"model_id": None}, r"^model_id: is required"),
])
def test_service_config_errors(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        ServiceConfig(**{"model_id": "m1", **kwargs})


def test_deploy_argument_errors(session):
    model = Model(session, model_id="0123abcd")        # an existing model, by id
    with pytest.raises(ArgumentError, match=r"^configs\[0\].specification: unknown flavour 'modelarts.vm.cpu.3u'"):
        model.deploy_predictor("svc", configs=[ServiceConfig(model_id="0123abcd", specification="modelarts.vm.cpu.3u")])
    with pytest.raises(ArgumentError, match=r"^configs: the weights add up to 90"):
        model.deploy_predictor("svc", configs=[ServiceConfig(model_id="0123abcd", weight="90")])
    with pytest.raises(ArgumentError, match=r"^configs\[0\]: expected a ServiceConfig, got dict"):
        model.deploy_predictor("svc", configs=[{"model_id": "0123abcd"}])
    with pytest.raises(ArgumentError, match=r"^service_name: 'bad name!' is not a valid name"):
        model.deploy_predictor("bad name!")
    with pytest.raises(ArgumentError, match=r"^infer_type: 'batch' is not supported"):
        model.deploy_predictor("svc", infer_type="batch")
    with pytest.raises(ArgumentError, match=r"^service_id: no running service 'nope'"):
        Predictor(session, service_id="nope")
    assert session.resources() == []


def test_session_errors(config):
    with pytest.raises(ArgumentError, match=r"^access_key, secret_key: the Session takes no credentials") as err:
        Session(config=config, access_key="AKIDEXAMPLE", secret_key="very-secret-value")
    assert "very-secret-value" not in str(err.value) and "AKIDEXAMPLE" not in str(err.value)
    with pytest.raises(UserError, match="unknown profile 'nope'"):
        Session(profile="nope", config=config)
    with pytest.raises(UserError, match="config file not found"):
        Session(config=config.parent / "missing.json")
    with pytest.raises(ArgumentError, match=r"^modelarts_session: expected a Session, got str"):
        Estimator("session", framework_type="MXNet")


def test_failed_job_raises_with_its_log_and_is_cleaned(tmp_path, session, capsys):
    code = tmp_path / "broken_job"
    code.mkdir()
    (code / "train.py").write_text("import sys\nprint('loading data')\nprint('no data here', file=sys.stderr)\n"
                                   "sys.exit(3)\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("x")
    data = session.upload_data(bucket_path="/failing/", path=str(tmp_path / "in"))
    estimator = Estimator(session, framework_type="MXNet", code_dir=str(code), boot_file=str(code / "train.py"),
                          output_path="/failing/out/", train_instance_type="modelarts.vm.cpu.2u")
    with pytest.raises(StepFailed, match=r"(?s)training job bad failed: .*exited with code 3.*no data here"):
        estimator.fit(inputs=data, wait=True, job_name="bad")
    assert estimator.get_job_info()["status"] == 11
    assert "Training job bad: Running" in capsys.readouterr().out
    with pytest.raises(ArgumentError, match=r"^job_name: 'bad' is already used"):
        estimator.fit(inputs=data, job_name="bad")
    assert session.cleanup() == 3     # the job, its output prefix, the upload (local code: no temp folder)
    assert not list((tmp_path / "state" / "jobs").glob("*"))


def test_a_session_without_config_json_shares_the_cli_store(tmp_path, monkeypatch):
    """No config.json in the notebook's folder: the user-level store ($ORCHESTRATOR_HOME),
    which the CLI uses from any other folder without one too."""
    home, notebook, shell = tmp_path / "home", tmp_path / "notebook", tmp_path / "shell"
    notebook.mkdir(), shell.mkdir()
    (notebook / "labels.txt").write_text("a\nb\n")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    monkeypatch.chdir(notebook)
    with Session(name="shared") as session:
        session.upload_data(bucket_path="/shared-bucket/data/", path="labels.txt")
        status = cli("status", "--json", cwd=shell, env={"ORCHESTRATOR_HOME": str(home)})
        assert status.returncode == 0, status.stderr
        assert session.run_id in status.stdout
        assert session.ledger.path == home / "ledger.sqlite"
        assert session.default_bucket() == "orchestrator-demo"
    assert not (notebook / ".orchestrator").exists()
