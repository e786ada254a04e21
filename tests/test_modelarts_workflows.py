"""Workflows on the cloud path, offline (real SDKs -> ModelArts emulator + moto): a search
whose trials are separate ModelArts jobs, a condition, batch inference over an obs://
prefix, cached data kept in OBS until `cleanup --cache`."""

import json

import cv2
import numpy as np
import pytest
from obs import ObsClient

from cloud import AK, SK
from pipelines import tiny_pipeline
from test_modelarts_pipeline import BUCKET, cloud, left_in_the_cloud, run_cli, write_config  # noqa: F401

pytestmark = pytest.mark.slow


def test_search_condition_and_batch_inference_through_the_emulator(cloud, tmp_path):  # noqa: F811
    client = ObsClient(access_key_id=AK, secret_access_key=SK, server=cloud[1], signature="v2", path_style=True)
    client.createBucket(BUCKET)
    rng = np.random.default_rng(0)
    for i in range(3):
        ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        assert client.putContent(BUCKET, f"incoming/{i}.jpg", jpeg.tobytes()).status < 300
    path = tiny_pipeline(tmp_path, train={"search": {"trials": 2, "max_parallel": 2, "seed": 1,
                                                     "space": {"lr": {"range": [0.01, 0.1], "log": True}}}},
                         service={"when": "train.metrics.val_accuracy > 2"},
                         batch_predict={"input": f"obs://{BUCKET}/incoming/", "output": f"obs://{BUCKET}/results/"})
    write_config(tmp_path, *cloud)
    result = run_cli(tmp_path, "run", str(path), "--profile", "emulator", "--json")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(result.stdout)
    trials = report["steps"]["train"]["search"]["trials"]
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert {t["name"] for t in trials} == {f"tiny-{report['run_id']}-train-t01", f"tiny-{report['run_id']}-train-t02"}
    assert report["steps"]["deploy"]["status"] == "skipped"
    assert report["steps"]["batch_predict"]["count"] == 3
    lines = client.getObject(BUCKET, "results/predictions.jsonl", loadStreamInMemory=True).body.buffer.decode()
    assert sorted(json.loads(line)["file"] for line in lines.splitlines()) == [
        f"obs://{BUCKET}/incoming/{i}.jpg" for i in range(3)]
    run_id = report["run_id"]
    left = left_in_the_cloud(cloud, run_id)
    assert left and all(n.startswith(f"tiny/cache/{run_id}/data/") for n in left), "only the cached data stays"
    cleanup = run_cli(tmp_path, "cleanup", "--profile", "emulator", "--cache", "--json")
    assert cleanup.returncode == 0, cleanup.stderr
    assert left_in_the_cloud(cloud, run_id) == []
