"""The run ledger: lifecycle, teardown order, transitions, secrets, several processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.backends.base import BackendError
from orchestrator.errors import UserError
from orchestrator.ledger import SCHEMA_VERSION, Ledger, ResourceRecord, RunRecord


def start(ledger: Ledger, run_id: str, pipeline: str = "demo") -> RunRecord:
    return ledger.start_run(run_id, pipeline, "/p/pipeline.yaml", "local", "default",
                            os.getpid(), 1700000000.5, f"/runs/{run_id}")


def test_schema_created_with_parent_folder_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "ledger.sqlite"
    Ledger(path)
    Ledger(path)  # opening again keeps the one version row
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        db.commit()
    with pytest.raises(BackendError, match="schema version"):
        Ledger(path)


def test_run_and_resource_lifecycle(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    before = time.time()
    record = start(ledger, "run-1")
    assert ledger.run("run-1") == record
    assert record.status == "running" and record.ended_at is None and record.started_at >= before
    assert (record.owner_pid, record.owner_started, record.run_dir) == (os.getpid(), 1700000000.5, "/runs/run-1")
    with pytest.raises(BackendError, match="run-1"):
        start(ledger, "run-1")

    rid = ledger.intend("run-1", "job", "train-run-1", {"flavor": "cpu", "n": 1})
    res = ledger.resources("run-1")[0]
    assert (res.rid, res.state, res.ref_id, res.detail) == (rid, "intent", None, {"flavor": "cpu", "n": 1})
    assert isinstance(res.created_at, float) and res.created_at == res.updated_at
    ledger.created(rid, "job-abc", {"n": 2, "log": "/x.log"})
    res = ledger.resource(rid)
    assert isinstance(res, ResourceRecord)
    assert (res.state, res.ref_id, res.detail) == ("created", "job-abc", {"flavor": "cpu", "n": 2, "log": "/x.log"})
    assert res.updated_at >= res.created_at
    ledger.delete_failed(rid, "service busy")
    assert (ledger.resource(rid).state, ledger.resource(rid).reason) == ("delete_failed", "service busy")
    assert [r.rid for r in ledger.live_resources("run-1")] == [rid]
    ledger.deleted(rid)
    ledger.deleted(rid)  # idempotent
    assert ledger.resource(rid).state == "deleted" and ledger.live_resources() == []

    ledger.finish_run("run-1", "failed")
    ended = ledger.run("run-1")
    assert ended.status == "failed" and ended.ended_at >= ended.started_at
    ledger.finish_run("run-1", "cleaned")  # cleanup after the fact keeps the end time
    assert ledger.run("run-1").status == "cleaned" and ledger.run("run-1").ended_at == ended.ended_at
    with pytest.raises(BackendError, match="already ended"):
        ledger.finish_run("run-1", "succeeded")
    with pytest.raises(ValueError):
        ledger.finish_run("run-1", "running")
    with pytest.raises(BackendError):
        ledger.finish_run("nope", "failed")
    assert ledger.run("nope") is None
    with pytest.raises(BackendError, match="nope"):
        ledger.intend("nope", "job", "x", {})


def test_live_resources_newest_first_across_runs(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    start(ledger, "r1")
    start(ledger, "r2")
    prefix = ledger.intend("r1", "object_prefix", "obs://b/r1/", {})
    job = ledger.intend("r1", "job", "train", {})
    other = ledger.intend("r2", "job", "train", {})
    model = ledger.intend("r1", "model", "m", {})
    service = ledger.intend("r1", "service", "svc", {})
    kept = ledger.intend("r1", "temp_dir", "/tmp/x", {})
    for rid in (prefix, job, model, service):
        ledger.created(rid, f"id-{rid}")
    ledger.deleted(job)
    ledger.kept(kept, "user asked to keep it")
    assert [r.rid for r in ledger.live_resources("r1")] == [service, model, prefix]
    assert [r.rid for r in ledger.live_resources()] == [service, model, other, prefix]
    assert [r.rid for r in ledger.resources("r1")] == [prefix, job, model, service, kept]
    assert ledger.resource(kept).reason == "user asked to keep it"


@pytest.mark.parametrize("path, bad", [
    (("created", "deleted"), "created"),
    (("created", "deleted"), "delete_failed"),
    (("created", "deleted"), "kept"),
    (("deleted",), "created"),
    (("delete_failed",), "created"),
    (("kept",), "created"),
])
def test_transitions_validated(tmp_path: Path, path: tuple[str, ...], bad: str) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    start(ledger, "r")
    rid = ledger.intend("r", "job", "j", {})
    moves = {"created": lambda: ledger.created(rid, "id"), "deleted": lambda: ledger.deleted(rid),
             "delete_failed": lambda: ledger.delete_failed(rid, "boom"), "kept": lambda: ledger.kept(rid)}
    for state in path:
        moves[state]()
    before = ledger.resource(rid)
    with pytest.raises(BackendError, match=f"cannot become '{bad}'"):
        moves[bad]()
    assert ledger.resource(rid) == before
    with pytest.raises(BackendError, match="999"):
        ledger.deleted(999)


@pytest.mark.parametrize("detail", [
    {"ak": "x"}, {"SK": "x"}, {"access_key": "x"}, {"secret_key": "x"}, {"obs_ak": "x"},
    {"password": "x"}, {"db_password": "x"}, {"authToken": "x"}, {"X-Auth-Token": "x"},
    {"credentials": "x"}, {"clientSecret": "x"}, {"env": {"HUAWEICLOUD_SDK_SK": "x"}},
    {"configs": [{"envs": {"api_token": "x"}}]},
])
def test_secrets_refused(tmp_path: Path, detail: dict) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    start(ledger, "r")
    with pytest.raises(ValueError, match="secret"):
        ledger.intend("r", "service", "svc", detail)
    rid = ledger.intend("r", "service", "svc", {"task": 1, "disk": 2, "mask": 3, "desk_key": 4, "name": "ok"})
    with pytest.raises(ValueError, match="secret"):
        ledger.created(rid, "id", detail)
    assert ledger.resource(rid).state == "intent"
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite")) as db:
        assert '"x"' not in str(db.execute("SELECT detail FROM resources").fetchall())


def test_detail_must_be_json_dict(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    start(ledger, "r")
    with pytest.raises(ValueError):
        ledger.intend("r", "job", "j", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ledger.intend("r", "job", "j", {"when": object()})


def test_runs_and_find_run(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for run_id in ("20240101-aaaa", "20240101-aabb", "20240102-cccc"):
        start(ledger, run_id)
    ledger.finish_run("20240101-aaaa", "succeeded")
    assert [r.run_id for r in ledger.runs()] == ["20240102-cccc", "20240101-aabb", "20240101-aaaa"]
    assert [r.run_id for r in ledger.runs(limit=1)] == ["20240102-cccc"]
    assert [r.run_id for r in ledger.runs(status="running")] == ["20240102-cccc", "20240101-aabb"]
    assert ledger.find_run("20240102").run_id == "20240102-cccc"
    assert ledger.find_run("20240101-aab").run_id == "20240101-aabb"
    assert ledger.find_run("20240101-aaaa").run_id == "20240101-aaaa"
    with pytest.raises(UserError, match="ambiguous") as err:
        ledger.find_run("20240101-aa")
    assert "20240101-aaaa" in str(err.value) and "20240101-aabb" in str(err.value)
    with pytest.raises(UserError, match="no run") as err:
        ledger.find_run("2023")
    assert "20240102-cccc" in str(err.value)  # the hint lists recent runs
    with pytest.raises(UserError):
        ledger.find_run("")
    with pytest.raises(UserError):
        ledger.find_run("%")  # not a LIKE wildcard


def _writer(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait(30)  # start together, so the writes really interleave
    ledger = Ledger(Path(path))
    run_id = f"run-{worker}"
    ledger.start_run(run_id, "demo", "p.yaml", "local", "default", os.getpid(), 0.0, "/r")
    for i in range(count):
        rid = ledger.intend(run_id, "job", f"job-{i}", {"i": i})
        ledger.created(rid, f"ref-{worker}-{i}")
        if i % 2:
            ledger.deleted(rid)
    ledger.finish_run(run_id, "succeeded")


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "ledger.sqlite"  # both create the schema at once too
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), w, 40, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    ledger = Ledger(path)
    assert sorted(r.run_id for r in ledger.runs(status="succeeded")) == ["run-0", "run-1"]
    for w in range(2):
        resources = ledger.resources(f"run-{w}")
        assert [r.name for r in resources] == [f"job-{i}" for i in range(40)]
        assert [r.state for r in resources] == ["created", "deleted"] * 20
        assert len(ledger.live_resources(f"run-{w}")) == 20
