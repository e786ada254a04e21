"""`python -m orchestrator run --profile emulator`: the whole pipeline on the cloud path,
offline (real SDKs -> ModelArts emulator + moto), and `cleanup` afterwards."""

import json
import os

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkmodelarts.v1 import JobSearches, ListTrainingJobsRequest, ModelArtsClient
from obs import ObsClient

from cloud import AK, ENV, PROJECT, SK, emulator, moto_server, write_config
from pipelines import cli, tiny_pipeline

pytestmark = pytest.mark.slow
BUCKET = "orchestrator-demo"          # tiny_pipeline's bucket


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cloud")
    with moto_server(folder) as obs, emulator(folder, obs) as (modelarts, _):
        yield modelarts, obs


def run_cli(tmp_path, *args, env=None):
    old = dict(os.environ)
    os.environ.update(env or ENV)
    try:
        return cli(*args, cwd=tmp_path)
    finally:
        os.environ.clear()
        os.environ.update(old)


def left_in_the_cloud(cloud, run_id: str) -> list[str]:
    """Names of jobs, models, services and objects of ``run_id``, listed through the SDKs."""
    modelarts, obs = cloud
    client = (ModelArtsClient.new_builder().with_credentials(BasicCredentials(AK, SK, PROJECT))
              .with_endpoint(modelarts).build())
    jobs = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(offset=0, limit=50))).items or []

    def v1(path: str, key: str) -> list[dict]:   # the SDK's own signed transport for the untyped v1 routes
        resp = client.do_http_request(method="GET", resource_path=path, path_params={}, query_params=[],
                                      header_params={"Content-Type": "application/json"}, body=None, post_params={},
                                      response_type="DeleteTrainingJobResponse", response_headers=[])
        return json.loads(resp.raw_content)[key]

    names = [j.metadata.name for j in jobs]
    names += [m["model_name"] for m in v1(f"/v1/{PROJECT}/models", "models")]
    names += [s["service_name"] for s in v1(f"/v1/{PROJECT}/services", "services")]
    listing = ObsClient(access_key_id=AK, secret_access_key=SK, server=obs, signature="v2",
                        path_style=True).listObjects(BUCKET)
    names += [o.key for o in (listing.body.contents or [])] if listing.status < 300 else []
    return [n for n in names if run_id in n]


def test_pipeline_runs_end_to_end_through_the_emulator(cloud, tmp_path):
    path = tiny_pipeline(tmp_path)
    write_config(tmp_path, *cloud)
    # --no-cache: this test is about a run leaving nothing; cached outputs outlive runs (test_modelarts_workflows.py)
    result = run_cli(tmp_path, "run", str(path), "--profile", "emulator", "--json", "--no-cache")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded" and all(s["status"] == "succeeded" for s in report["steps"].values())
    assert report["steps"]["deploy"]["url"].startswith(cloud[0] + "/v1/infers/")
    assert report["steps"]["predict"]["count"] == 9 and report["steps"]["predict"]["errors"] == 0
    assert report["steps"]["train"]["metrics"], "metrics.json came back from OBS"
    assert any("emulator" in n for n in report["notes"])
    assert left_in_the_cloud(cloud, report["run_id"]) == []


def test_cleanup_removes_what_a_kept_run_left(cloud, tmp_path):
    path = tiny_pipeline(tmp_path, predict={"limit": 2})
    write_config(tmp_path, *cloud)
    result = run_cli(tmp_path, "run", str(path), "--profile", "emulator", "--json", "--keep", "--no-cache")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    run_id = json.loads(result.stdout)["run_id"]
    kept = left_in_the_cloud(cloud, run_id)
    assert any(n.endswith("-train") for n in kept) and any(n.endswith("-svc") for n in kept)
    assert any(n.startswith(f"tiny/{run_id}/output/model/") for n in kept)
    cleanup = run_cli(tmp_path, "cleanup", "--profile", "emulator", "--json")
    assert cleanup.returncode == 0, cleanup.stderr
    assert json.loads(cleanup.stdout)["failed"] == []
    assert left_in_the_cloud(cloud, run_id) == []
    dry = run_cli(tmp_path, "cleanup", "--backend", "modelarts", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout) == []


def test_wrong_or_missing_keys_fail_fast_with_a_clear_message(cloud, tmp_path):
    path = tiny_pipeline(tmp_path)
    write_config(tmp_path, *cloud)
    wrong = run_cli(tmp_path, "run", str(path), "--profile", "emulator", env={**ENV, "HUAWEICLOUD_SDK_SK": "nope"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "rejected the credentials" in wrong.stderr and "APIGW.0301" in wrong.stderr
    assert "nope" not in wrong.stderr and not (tmp_path / "state" / "runs").exists(), "nothing ran"
    missing = run_cli(tmp_path, "run", str(path), "--profile", "emulator", env={"HUAWEICLOUD_SDK_AK": AK,
                                                                                  "HUAWEICLOUD_SDK_SK": ""})
    assert missing.returncode == 2 and "HUAWEICLOUD_SDK_SK" in missing.stderr and "Traceback" not in missing.stderr
