"""Removing what runs left behind: the one mechanism behind ``teardown`` and ``cleanup``.

The ledger says what a run meant to create; the backend says what exists. Both are
consulted, so a resource is found whether the crash came before or after its ledger row
was updated. Runs whose orchestrator process is still alive are never touched by anyone
but that process; ``stop_owner`` asks it to tear down its own run (``cleanup --force``).
"""

from __future__ import annotations

import signal
import time
from typing import Callable

import psutil

from .backends.base import Resource
from .ledger import Ledger, LedgerError

ORDER = {"process": -1, "service": 0, "model": 1, "job": 2, "object_prefix": 3, "temp_dir": 4}
RUN_ENV = "ORCHESTRATOR_RUN_ID"   # in the environment of the processes a run starts itself (data tools)


def owner_alive(record) -> bool:
    try:
        return abs(psutil.Process(record.owner_pid).create_time() - record.owner_started) < 0.05
    except psutil.Error:
        return False


def live(record) -> bool:
    """The run is going on: status running and its owner process alive."""
    return record is not None and record.status == "running" and owner_alive(record)


def stop_owner(record, grace: float = 120.0) -> bool:
    """SIGTERM the run's owner (its handler runs the run's own teardown) and wait up to
    ``grace`` s for it to exit, then SIGKILL it. True if it ended within the grace."""
    try:
        proc = psutil.Process(record.owner_pid)
        if abs(proc.create_time() - record.owner_started) >= 0.05:
            return True    # a recycled pid: the owner is long gone
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:   # a zombie has finished
            if time.monotonic() > deadline:
                proc.kill()
                return False
            time.sleep(0.1)
    except psutil.Error:
        pass
    return True


def leftovers(backend, ledger: Ledger, run_id: str | None = None, *,
              own: bool = False) -> list[tuple[Resource, int | None]]:
    """(resource, ledger row id or None) for everything of finished or dead runs (of
    ``run_id`` only, if given). A live run's resources are skipped unless ``own`` (the
    owner tearing down its own run)."""
    found: dict[tuple[str, str], tuple[Resource, int | None]] = {}
    for row in ledger.live_resources(run_id):
        res = Resource(row.kind, row.ref_id or row.name, row.name, row.run_id)
        found[(res.kind, res.id)] = (res, row.rid)
    for res in backend.list_resources(run_id):
        found.setdefault((res.kind, res.id), (res, None))
    kept = {(r.kind, r.ref_id or r.name) for r in ledger.in_states(("kept",))}
    out = []
    for key, (res, rid) in found.items():
        if key in kept:
            continue
        run = ledger.run(res.run_id)
        if not own and live(run):
            continue            # another pipeline is using it right now
        out.append((res, rid))
    return sorted(out, key=lambda item: ORDER.get(item[0].kind, 9))


def stop_process(pid: int, started: float | None = None) -> None:
    """Stop process ``pid`` (if it is the one started at ``started``) and its session."""
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) >= 0.05:
            return     # a recycled pid
        victims = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)


def _stop_run_processes(res: Resource) -> None:
    """A ``process`` resource: the one the ledger names, and any process carrying the run's
    id in its environment (one started between its ledger row and the row's pid)."""
    pid, _, started = res.id.partition(":")
    if pid.isdigit() and started:
        stop_process(int(pid), float(started))
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(RUN_ENV) == res.run_id:
                stop_process(proc.pid)
        except psutil.Error:
            continue


def remove(backend, ledger: Ledger, items, log: Callable[[str], None]) -> tuple[list[Resource], list[str]]:
    deleted, failed = [], []
    for res, rid in items:
        try:
            _stop_run_processes(res) if res.kind == "process" else backend.delete_resource(res)
        except Exception as exc:   # keep going: one stuck resource must not strand the others
            failed.append(f"{res.kind} {res.name}: {exc}")
            if rid is not None:
                _record(ledger.delete_failed, rid, str(exc))
            continue
        if rid is not None:
            _record(ledger.deleted, rid)
        deleted.append(res)
        log(f"deleted {res.kind} {res.name}")
    return deleted, failed


def _record(update, *args) -> None:
    """A ledger update after a deletion: when the ledger cannot be written (a full disk),
    deleting goes on; the next ``cleanup`` finds the row live and the resource gone."""
    try:
        update(*args)
    except LedgerError:
        pass


def teardown_run(backend, ledger: Ledger, run_id: str, log: Callable[[str], None]):
    """Delete what the caller's own run ``run_id`` left (never call it for another process's run)."""
    return remove(backend, ledger, leftovers(backend, ledger, run_id, own=True), log)
