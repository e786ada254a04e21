"""The ModelArts emulator driven through the real SDKs (huaweicloudsdkmodelarts, esdk-obs-python)
and our signed REST calls: one moto server and one emulator for the whole module."""

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import ModelArtsClient, ShowTrainingJobDetailsRequest

from cloud import AK, PROJECT, SK, emulator, moto_server
from cloud import wait_job as wait
from orchestrator.backends.base import BackendError, JobSpec, ModelSpec, ServiceConfig, ServiceSpec
from orchestrator.backends.modelarts.backend import ModelArtsBackend
from orchestrator.backends.modelarts.errors import CloudError, NotFound
from orchestrator.backends.modelarts.services import schedule
from orchestrator.errors import UserError
from orchestrator.spec import ModelArtsProfile

RUN = "261123-130000-cafe"
BUCKET = "b-emulator"
FIXTURES = Path(__file__).parent / "fixtures" / "predictor"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cloud")
    with moto_server(folder) as obs, emulator(folder, obs, "--max-jobs", "2") as (modelarts, _):
        yield modelarts, obs, folder


def make_backend(cloud, sk: str = SK, root: Path | None = None, **kw) -> ModelArtsBackend:
    modelarts, obs, folder = cloud
    prof = ModelArtsProfile(backend="modelarts", region="", project_id=PROJECT, modelarts_endpoint=modelarts,
                            obs_endpoint=obs, path_style=True, obs_signature="v2", create_bucket=True, retries=2,
                            poll_interval=0.1, engine_version="")
    return ModelArtsBackend(root or folder / "client", prof, AK, sk, profile_name="emulator", **kw)


@pytest.fixture(scope="module")
def backend(cloud):
    b = make_backend(cloud)
    b.preflight((BUCKET,))
    return b


def job(tmp_path: Path, body: str, name: str = "t", **kw) -> JobSpec:
    code = tmp_path / "job"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("import os, sys, time\nargs = dict(a.split('=', 1) for a in sys.argv[1:])\n"
                                   + body + "\n")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.rec").write_bytes(b"records")
    prefix = f"obs://{BUCKET}/{name}/{RUN}"
    return JobSpec(name=f"{name}-{RUN}-train", run_id=RUN, code_dir=str(code), boot_file="train.py",
                   data_url=f"{prefix}/data/", train_url=f"{prefix}/output/", flavor="modelarts.vm.cpu.2u", **kw)


def test_wrong_secret_key_is_refused_as_the_gateway_does(cloud):
    client = (ModelArtsClient.new_builder().with_credentials(BasicCredentials(AK, "wrong-secret", PROJECT))
              .with_endpoint(cloud[0]).build())
    with pytest.raises(ClientRequestException) as err:
        client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id="x"))
    assert err.value.status_code == 401 and err.value.error_code == "APIGW.0301"
    assert "verify aksk signature fail" in err.value.error_msg and err.value.request_id
    with pytest.raises(UserError, match="rejected the credentials") as err:
        make_backend(cloud, sk="wrong-secret").preflight()
    assert "wrong-secret" not in str(err.value) and "HUAWEICLOUD_SDK_SK" in str(err.value)
    unsigned = requests.get(cloud[0] + f"/v1/{PROJECT}/models", timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "APIGW.0301"


def test_training_job_runs_with_modelarts_arguments_and_outputs(backend, tmp_path):
    spec = job(tmp_path, "print('files', sorted(os.listdir(args['--data_url'])), 'lr', args['--lr'], flush=True)\n"
                         "open(os.path.join(args['--train_url'], 'out.txt'), 'w').write('trained')",
               hyperparameters=(("lr", "0.01"),))
    backend.storage.put(tmp_path / "data", spec.data_url)
    ref = backend.submit_job(spec)
    state = wait(backend, ref)
    assert state.phase == "Completed", state.reason
    lines, offset = backend.job_logs(ref)
    assert "files ['train.rec'] lr 0.01" in lines and backend.job_logs(ref, offset) == ([], offset)
    assert backend.storage.exists(spec.train_url + "out.txt")
    details = backend.training.show(ref)
    assert details.metadata.name == spec.name and details.status.task_statuses[0].exit_code == 0
    code = "obs:/" + details.algorithm.code_dir
    assert code.startswith(f"obs://{BUCKET}/orchestrator-code/{spec.name}/") and code.endswith("/job/")
    assert details.algorithm.boot_file == details.algorithm.code_dir + "train.py"
    assert backend.storage.exists(code + "train.py"), "the code went to OBS first"
    assert details.spec.resource.node_count == 1 and (ref.id, spec.name) in backend.training.list()
    backend.delete_job(ref)
    backend.delete_job(ref)
    with pytest.raises(NotFound):
        backend.training.show(ref)
    assert not backend.storage.exists(f"obs://{BUCKET}/orchestrator-code/"), "the code copy went with its job"


def test_a_code_copy_whose_job_is_gone_is_found_by_its_run(backend, tmp_path):
    spec = job(tmp_path, "pass", name="orphan")
    backend.training.upload_code(spec)            # as if the process died before the job was created
    prefix = f"obs://{BUCKET}/orchestrator-code/{spec.name}/"
    found = [r for r in backend.list_resources(RUN) if r.id == prefix]
    assert [(r.kind, r.run_id) for r in found] == [("object_prefix", RUN)]
    assert not [r for r in backend.list_resources("261123-130000-0000") if r.id == prefix]
    backend.delete_resource(found[0])
    assert not backend.storage.exists(prefix)


def test_failed_and_terminated_jobs_report_why(backend, tmp_path):
    failing = job(tmp_path, "print('boom', file=sys.stderr); sys.exit(3)", name="fail")
    backend.storage.put(tmp_path / "data", failing.data_url)
    ref = backend.submit_job(failing)
    state = wait(backend, ref)
    assert state.phase == "Failed" and "exited with code 3" in state.reason and "boom" in state.reason
    sleeping = job(tmp_path, "print('up', flush=True); time.sleep(120)", name="sleep")
    backend.storage.put(tmp_path / "data", sleeping.data_url)
    other = backend.submit_job(sleeping)
    wait(backend, other, ("Running",))
    backend.stop_job(other)
    assert wait(backend, other).phase == "Terminated"
    backend.stop_job(other)                      # idempotent
    for r in (ref, other):
        backend.delete_job(r)


def test_unknown_flavour_and_exhausted_quota_are_user_errors(backend, tmp_path):
    spec = job(tmp_path, "time.sleep(120)", name="quota")
    backend.storage.put(tmp_path / "data", spec.data_url)
    with pytest.raises(UserError, match="unknown or unavailable flavour") as err:
        backend.submit_job(JobSpec(**{**spec.__dict__, "flavor": "modelarts.vm.gpu.h800"}))
    assert "ModelArts.2781" in str(err.value) and "train.flavor" in str(err.value)
    refs = [backend.submit_job(spec) for _ in range(2)]      # the emulator runs with --max-jobs 2
    with pytest.raises(UserError, match="quota") as err:
        backend.submit_job(spec)
    assert "ModelArts.2815" in str(err.value)
    code = f"obs://{BUCKET}/orchestrator-code/{spec.name}/"
    assert len({u.split("/")[5] for u in backend.storage.list(code)}) == 2, "a refused job's code is deleted"
    for ref in refs:
        backend.delete_job(ref)
    assert not backend.storage.exists(code)


def jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((40, 50, 3), 128, np.uint8))
    return buf.tobytes()


def package(backend, tmp_path: Path, version: str, classes: int = 5) -> str:
    """A tiny classifier on OBS; it answers its last class (class_<classes - 1>) to every image."""
    spec = importlib.util.spec_from_file_location("tiny_model", FIXTURES / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_package(FIXTURES / "classifier", tmp_path / version / "model", classes=classes)
    source = f"obs://{BUCKET}/m/{RUN}/{version}/"
    backend.storage.put(tmp_path / version, source)
    return source


def test_models_services_predictions_and_updates(backend, cloud, tmp_path):
    broken = tmp_path / "broken" / "model"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "MXNet"}')
    backend.storage.put(broken.parent, f"obs://{BUCKET}/m/{RUN}/broken/")
    with pytest.raises(BackendError, match="ModelArts.3015.*model_algorithm"):
        backend.import_model(ModelSpec(name=f"bad-{RUN}", version="0.0.1", run_id=RUN,
                                       source_location=f"obs://{BUCKET}/m/{RUN}/broken/"))
    refs = []
    for version, classes in (("0.0.1", 5), ("0.0.2", 3)):        # 0.0.1 answers class_4, 0.0.2 class_2
        source = package(backend, tmp_path, version, classes)
        refs.append(backend.import_model(ModelSpec(name=f"tiny-{RUN}", version=version, run_id=RUN,
                                                   source_location=source)))
    assert backend.models.show(refs[0])["model_status"] == "published"
    envs = (("input_data_shape", "0,3,16,16"),)
    service = backend.deploy(ServiceSpec(name=f"tiny-{RUN}-svc", run_id=RUN, deploy_timeout_s=120,
                                         configs=(ServiceConfig(model_id=refs[0].id, envs=envs),)))
    assert service.url == f"{cloud[0]}/v1/infers/{service.id}"
    answer = backend.predict(service, "cat.jpg", jpeg())
    assert answer.status == 200 and answer.body["predicted_label"] == "class_4", answer.body
    assert requests.post(service.url, files={"images": ("a.jpg", jpeg())}, timeout=10).status_code == 401

    stopped = backend.update_service(service, status="stopped")
    assert backend.services.show(stopped)["status"] == "stopped"
    assert backend.predict(service, "cat.jpg", jpeg()).status == 503
    backend.update_service(service, status="running")
    assert backend.predict(service, "cat.jpg", jpeg()).status == 200
    backend.update_service(service, configs=(ServiceConfig(model_id=refs[0].id, weight=30, envs=envs),
                                             ServiceConfig(model_id=refs[1].id, weight=70, envs=envs)))
    info = backend.services.show(service)
    assert [(c["model_version"], c["weight"], c["status"]) for c in info["config"]] == \
        [("0.0.1", 30, "ready"), ("0.0.2", 70, "ready")]
    labels = [backend.predict(service, "cat.jpg", jpeg()).body["predicted_label"] for _ in range(10)]
    assert 0 < labels.count("class_4") < labels.count("class_2") and set(labels) == {"class_4", "class_2"}, labels
    assert backend.services.show(service)["invocation_times"] >= 12
    backend.update_service(service, configs=(ServiceConfig(model_id=refs[1].id, envs=envs),))
    assert {backend.predict(service, "cat.jpg", jpeg()).body["predicted_label"] for _ in range(3)} == {"class_2"}
    backend.update_service(service, configs=(ServiceConfig(model_id=refs[1].id, weight=100, envs=envs),
                                             ServiceConfig(model_id=refs[0].id, weight=0, envs=envs)),
                           status="stopped")
    info = backend.services.show(service)
    assert info["status"] == "stopped" and [c["model_version"] for c in info["config"]] == ["0.0.2", "0.0.1"]

    with pytest.raises(BackendError, match="ModelArts.3009"):
        backend.delete_model(refs[1])             # still used by the (stopped) service
    kinds = {(r.kind, r.id) for r in backend.list_resources(RUN)}
    assert {("service", service.id), ("model", refs[0].id), ("model", refs[1].id)} <= kinds
    for r in backend.list_resources(RUN):
        backend.delete_resource(r)
    assert backend.list_resources(RUN) == []
    backend.delete_service(service)               # idempotent
    backend.delete_model(refs[0])


@pytest.mark.parametrize("ttl_s, unit, duration", [
    (2, "MINUTES", 1), (60, "MINUTES", 1), (61, "MINUTES", 2), (5400, "MINUTES", 90), (7200, "HOURS", 2),
    (3601, "MINUTES", 61), (86400, "DAYS", 1), (604800, "DAYS", 7)])
def test_a_ttl_is_rounded_up_to_the_minutes_modelarts_counts(ttl_s, unit, duration):
    assert schedule(ttl_s) == [{"type": "stop", "time_unit": unit, "duration": duration}]


def predictor_processes(service_id: str) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if any(service_id in a for a in p.info["cmdline"] or [])]


def wait_status(backend, service, want: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = backend.services.show(service)
        if info["status"] == want:
            return info
        time.sleep(0.1)
    raise AssertionError(f"service did not become {want}: {info['status']}")


def test_a_service_ttl_becomes_its_auto_stop_schedule(cloud, tmp_path):
    backend = make_backend(cloud, ttl_unit="SECONDS")       # the emulator's test-only unit
    model = backend.import_model(ModelSpec(name=f"ttl-{RUN}", version="0.0.1", run_id=RUN,
                                           source_location=package(backend, tmp_path, "0.0.1")))
    config = ServiceConfig(model_id=model.id, envs=(("input_data_shape", "0,3,16,16"),))
    with pytest.raises(UserError, match="1 minute to 7 days"):
        backend.deploy(ServiceSpec(name=f"ttl-{RUN}-long", run_id=RUN, configs=(config,), ttl_s=8 * 86400))
    service = backend.deploy(ServiceSpec(name=f"ttl-{RUN}-svc", run_id=RUN, configs=(config,), ttl_s=2.5,
                                         deploy_timeout_s=120))
    assert backend.services.show(service)["schedule"] == [{"type": "stop", "time_unit": "SECONDS", "duration": 3}]
    for again in (False, True):         # each start of the service starts the schedule again
        if again:
            backend.update_service(service, status="running")
        info = wait_status(backend, service, "stopped")
        assert [c["status"] for c in info["config"]] == ["notReady"] and predictor_processes(service.id) == []
        assert backend.predict(service, "cat.jpg", jpeg()).status == 503
    with pytest.raises(CloudError, match="ModelArts.0101.*schedule"):
        backend.services.rest.call("PUT", f"/v1/{{project_id}}/services/{service.id}", "update",
                                   body={"schedule": [{"type": "stop", "time_unit": "WEEKS", "duration": 1}]})
    backend.services.rest.call("PUT", f"/v1/{{project_id}}/services/{service.id}", "update", body={"schedule": []})
    assert backend.services.show(service)["schedule"] == []
    assert [s["service_name"] for s in backend.services.list() if "ttl" in s["service_name"]] == [service.name]
    for r in backend.list_resources(RUN):
        backend.delete_resource(r)
    assert backend.list_resources(RUN) == [] and predictor_processes(service.id) == []
