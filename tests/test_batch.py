"""Batch-inference workers without MXNet: a duck-typed customize_service.py (as the runtime
accepts) that counts its calls, run in real worker processes; a resumed run sends only
the files that have no answer yet, and a package that cannot load fails with its reason."""

import json
from pathlib import Path

import pytest

from orchestrator.batch.run import run_workers
from orchestrator.batch.worker import done_files
from orchestrator.errors import StepFailed

SERVICE = '''
import os
from mms.model_service.model_service import SingleNodeService


class SizeService(SingleNodeService):
    def _preprocess(self, data):
        with open(os.environ["CALLS_LOG"], "a") as log:
            log.write(",".join(sorted(data["images"])) + "\\n")
        return {name: len(f.read()) for name, f in data["images"].items()}

    def _inference(self, data):
        return data

    def _postprocess(self, data):
        return {"bytes": sum(data.values())}
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "customize_service.py").write_text(SERVICE)
    (model / "config.json").write_text(json.dumps({"model_type": "MXNet", "runtime": "python3.7"}))
    monkeypatch.setenv("CALLS_LOG", str(tmp_path / "calls.log"))
    return model


def test_workers_answer_every_file_and_a_resume_sends_only_the_missing(tmp_path, package):
    files = []
    for i in range(5):
        f = tmp_path / "in" / f"f{i}.bin"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * (i + 1))
        files.append(str(f))
    work = tmp_path / "work"
    (work / "parts").mkdir(parents=True)
    done = json.dumps({"file": files[0], "status": 200, "result": {"bytes": 1}})
    (work / "parts" / "part-000.jsonl").write_text(done + "\n" + '{"file": "' + files[1] + '", "sta')  # cut short
    progress = []
    records = run_workers("batch_predict", package, files, work, workers=2,
                          on_progress=lambda d, t: progress.append((d, t)), poll=0.05)
    assert {f: r["result"]["bytes"] for f, r in records.items()} == {f: i + 1 for i, f in enumerate(files)}
    called = sorted((tmp_path / "calls.log").read_text().split())
    assert called == ["f1.bin", "f2.bin", "f3.bin", "f4.bin"], "the answered file is not sent again"
    assert progress[0] == (1, 5) and progress[-1] == (5, 5)
    assert len(done_files(str(work / "parts" / "part-000.jsonl"))) == 1
    assert run_workers("batch_predict", package, files, work, 2, lambda d, t: None) == records   # all done


def test_a_package_that_cannot_load_fails_the_step_with_its_reason(tmp_path, package):
    (package / "customize_service.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "a.bin").write_bytes(b"a")
    with pytest.raises(StepFailed, match="broken on purpose"):
        run_workers("batch_predict", package, [str(tmp_path / "a.bin")], tmp_path / "work", 1, lambda d, t: None)
