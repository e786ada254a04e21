"""Image mode on the cloud path, offline: the pipeline through the real SDKs against the
emulator, which runs the custom image's own boot scripts from its build context (training
job, model_type Image import, service, predictions, cleanup), and the cloud's validation
of image jobs and models."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import CreateTrainingJobRequest, Job, JobAlgorithm, JobMetadata, Spec, SpecResource

from orchestrator.backends.base import JobSpec, ModelSpec
from orchestrator.factory import config_and_dir, make_backend
from orchestrator.image.context import build_context

from cloud import ENV, emulator, moto_server, wait_job, write_config
from pipelines import REPO, cli, fake_job, tiny_pipeline

pytestmark = pytest.mark.slow
IMAGE = "swr.local-1.myhuaweicloud.com/ml-team/mxnet-orchestrator:1.9.1"
UNKNOWN = "swr.local-1.myhuaweicloud.com/ml-team/mxnet-orchestrator:0.0.0"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cloud")
    build_context(folder / "image")
    with moto_server(folder) as obs, emulator(folder, obs, "--image", f"{IMAGE}={folder / 'image'}") as (ma, _):
        yield ma, obs, folder / "emulator"


@pytest.fixture
def backend(cloud, tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    config, config_dir = config_and_dir(write_config(tmp_path, *cloud[:2]))
    return make_backend(config, config_dir, "emulator")


def test_image_jobs_and_models_are_refused_as_the_cloud_refuses_them(backend, tmp_path):
    run = "261204-120000-abcd"
    spec = JobSpec(name=f"bad-{run}-train", run_id=run, code_dir=str(REPO / "jobs" / "image_classification"),
                   boot_file="train.py", data_url="obs://img-bucket/data/", train_url="obs://img-bucket/out/",
                   image=UNKNOWN)
    with pytest.raises(Exception, match=r"ModelArts\.2763.*mxnet-orchestrator:0\.0\.0 .*does not exist in SWR"):
        backend.submit_job(spec)
    no_image = Job(kind="job", metadata=JobMetadata(name=f"raw-{run}-train"),
                   algorithm=JobAlgorithm(command="/bin/sh /home/ma-user/boot/run_train.sh a/train.py"),
                   spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=1)))
    with pytest.raises(ClientRequestException) as err:        # the SDK's own error, the cloud's shape
        backend.training.client.create_training_job(CreateTrainingJobRequest(body=no_image))
    assert err.value.status_code == 400 and err.value.error_code == "ModelArts.0101"
    assert "image_url is required" in err.value.error_msg

    package = tmp_path / "pkg" / "model"
    package.mkdir(parents=True)
    (package / "config.json").write_text(json.dumps({"model_type": "MXNet", "model_algorithm": "x", "apis": [
        {"protocol": "http", "url": "/", "method": "post"}]}))
    for name in ("customize_service.py", "m-symbol.json", "m-0000.params"):
        (package / name).write_text("")
    backend.storage.put(tmp_path / "pkg", f"obs://img-bucket/bad/{run}/output/")
    with pytest.raises(Exception, match=r"ModelArts\.2763"):
        backend.import_model(ModelSpec(name=f"bad-{run}", version="0.0.1", run_id=run, image=UNKNOWN,
                                       source_location=f"obs://img-bucket/bad/{run}/output/"))
    config = json.loads(backend.storage.client.getObject("img-bucket", f"bad/{run}/output/model/config.json",
                                                         loadStreamInMemory=True).body.buffer)
    assert config["model_type"] == "Image" and config["swr_location"] == UNKNOWN and config["health"]["url"] == "/health"
    assert [r.kind for r in backend.list_resources(run)] == ["object_prefix"]      # no job, no model, no code copy
    for resource in backend.list_resources(run):
        backend.delete_resource(resource)


FAKE_JOB = """
import os
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open(os.path.join(args["train_url"], "ckpt-0001.params"), "w") as fh:
    fh.write("a checkpoint")
print("training with", sorted(os.listdir(args["data_url"])), flush=True)
time.sleep(float(args.get("sleep", 0)))
sys.exit("failing on purpose")
"""


def test_failed_and_stopped_image_jobs_report_why_and_keep_their_checkpoints(backend, tmp_path):
    run = "261204-130000-beef"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.rec").write_bytes(b"records")
    backend.storage.put(tmp_path / "data", f"obs://img-bucket/fake/{run}/data/")
    spec = JobSpec(name=f"fails-{run}-train", run_id=run, code_dir=str(fake_job(tmp_path, FAKE_JOB)),
                   boot_file="train.py", data_url=f"obs://img-bucket/fake/{run}/data/",
                   train_url=f"obs://img-bucket/fake/{run}/output/", image=IMAGE)
    failed = backend.submit_job(spec)
    state = wait_job(backend, failed, timeout=120)
    assert state.phase == "Failed" and "exited with code 1" in state.reason and "failing on purpose" in state.reason
    lines, _ = backend.job_logs(failed)
    assert "training with ['train.rec']" in lines and any(line.startswith("[run_train] running") for line in lines)
    assert backend.storage.exists(f"obs://img-bucket/fake/{run}/output/ckpt-0001.params")   # uploaded anyway

    stopped = backend.submit_job(dataclasses.replace(spec, name=f"stops-{run}-train",
                                                     hyperparameters=(("sleep", "60"),)))
    wait_job(backend, stopped, ("Running",), timeout=120)
    while not any("training with" in line for line in backend.job_logs(stopped)[0]):
        time.sleep(0.2)
    backend.stop_job(stopped)
    assert wait_job(backend, stopped, timeout=120).phase == "Terminated"
    for resource in backend.list_resources(run):
        backend.delete_resource(resource)
    assert backend.list_resources(run) == []


def test_the_pipeline_runs_in_image_mode_through_the_image_boot_scripts(cloud, backend, tmp_path):
    path = tiny_pipeline(tmp_path, train={"image": IMAGE}, model={"image": IMAGE}, predict={"limit": 4})
    write_config(tmp_path, *cloud[:2])
    result = cli("run", str(path), "--profile", "emulator", "--json", "--keep", cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    report = json.loads(result.stdout)
    run = report["run_id"]
    assert report["status"] == "succeeded" and report["steps"]["predict"]["errors"] == 0
    assert report["steps"]["predict"]["count"] == 4 and report["steps"]["train"]["metrics"]
    train_log = (tmp_path / "state" / "runs" / run / "logs" / "train.log").read_text()
    assert "[run_train] running" in train_log and "exited with code 0" in train_log     # the image's boot ran it
    home = "/home/ma-user/modelarts/inputs/data_url_0/"
    assert home.replace("/home/ma-user", "") in train_log                               # ModelArts' local_dir channel
    model = next(m for m in backend.models.list() if run in m["model_name"])
    assert model["model_type"] == "Image"
    serve_logs = [p.read_text() for p in (cloud[2] / "image-services").glob("*/service.log")]
    assert any("[run_serve] serving" in log and "access POST / 200" in log for log in serve_logs)

    cleanup = cli("cleanup", "--profile", "emulator", "--json", cwd=tmp_path, env=ENV)
    assert cleanup.returncode == 0 and json.loads(cleanup.stdout)["failed"] == [], cleanup.stderr
    assert backend.list_resources(run) == []
    assert not list((cloud[2] / "image-services").glob("*/"))                          # image stopped and removed
