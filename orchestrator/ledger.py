"""The run ledger: every run and every resource it creates, in SQLite.

A resource is written down (state ``intent``) BEFORE the backend is asked to create it,
so that ``cleanup`` finds it after any crash, SIGKILL included. States:

    intent -> created -> deleted
       |         |  \\-> delete_failed -> deleted (a later cleanup succeeded)
       |         \\----> kept            (deliberately left; cleanup ignores it)
       \\--> deleted | delete_failed | kept   (cleanup found it was never made, ...)

``deleted`` is final. ``live_resources`` (intent, created, delete_failed) newest first is
the teardown order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from orchestrator.backends.base import BackendError
from orchestrator import sqlite_wal
from orchestrator.errors import UserError
from orchestrator.secret_keys import check_no_secrets

SCHEMA_VERSION = 1


class LedgerError(UserError):
    """The ledger cannot be read or written (a damaged file, a full disk); the message says
    what to do. The CLI exits 1: nothing is wrong with the user's input."""

    exit_code = 1


def ledger_error(path: Path, exc: sqlite3.Error) -> LedgerError:
    text = str(exc)
    if "full" in text:
        return LedgerError(f"cannot write the ledger {path}: the disk is full",
                           hint="free some space; `orchestrator cleanup` deletes resources before it records anything")
    if "locked" in text:
        return LedgerError(f"the ledger {path} stayed locked by another orchestrator process ({text})",
                           hint="try again in a moment")
    return LedgerError(f"the ledger {path} is damaged ({text})",
                       hint="`orchestrator cleanup --repair` keeps a copy of it, recovers every row it can still read "
                            "(and the runs its run folders know), then cleans up as usual")
RUN_STATUSES = ("running", "succeeded", "failed", "interrupted", "cleaned")
RESOURCE_STATES = ("intent", "created", "deleted", "delete_failed", "kept")
LIVE_STATES = ("intent", "created", "delete_failed")
_NEXT_STATES = {
    "intent": {"created", "deleted", "delete_failed", "kept"},
    "created": {"created", "deleted", "delete_failed", "kept"},
    "delete_failed": {"deleted", "delete_failed", "kept"},
    "kept": {"kept", "deleted", "delete_failed"},   # an explicit cleanup may still remove it
    "deleted": {"deleted"},                          # repeated delete is idempotent
}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, spec_path TEXT NOT NULL,
        backend TEXT NOT NULL, profile TEXT NOT NULL, status TEXT NOT NULL,
        started_at REAL NOT NULL, ended_at REAL, owner_pid INTEGER NOT NULL,
        owner_started REAL NOT NULL, run_dir TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS resources (
        rid INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id),
        kind TEXT NOT NULL, name TEXT NOT NULL, ref_id TEXT, state TEXT NOT NULL,
        detail TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, reason TEXT)""",
    """CREATE TABLE IF NOT EXISTS steps (
        run_id TEXT NOT NULL REFERENCES runs(run_id), step TEXT NOT NULL, key TEXT NOT NULL,
        finished_at REAL NOT NULL, PRIMARY KEY (run_id, step))""",
    "CREATE INDEX IF NOT EXISTS resources_run ON resources (run_id)",
    "CREATE INDEX IF NOT EXISTS resources_state ON resources (state)",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
)

def _encode_detail(detail: dict) -> str:
    if not isinstance(detail, dict):
        raise ValueError(f"ledger detail must be a dict, got {type(detail).__name__}")
    check_no_secrets(detail)
    try:
        return json.dumps(detail, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"ledger detail is not JSON-serialisable: {e}") from None


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pipeline: str
    spec_path: str
    backend: str
    profile: str
    status: str                 # one of RUN_STATUSES
    started_at: float
    ended_at: float | None
    owner_pid: int
    owner_started: float        # the owner's process start time: tells a reused pid apart
    run_dir: str


@dataclass(frozen=True)
class ResourceRecord:
    rid: int
    run_id: str
    kind: str                   # object_prefix | job | model | service | temp_dir | ...
    name: str
    ref_id: str | None          # the backend's id, known once created
    state: str                  # one of RESOURCE_STATES
    detail: dict
    created_at: float
    updated_at: float
    reason: str | None          # why delete failed / why it was kept


_RUN_COLS = "run_id, pipeline, spec_path, backend, profile, status, started_at, ended_at, " \
            "owner_pid, owner_started, run_dir"
_RES_COLS = "rid, run_id, kind, name, ref_id, state, detail, created_at, updated_at, reason"


def _run(row: tuple) -> RunRecord:
    return RunRecord(*row)


def _resource(row: tuple) -> ResourceRecord:
    values = list(row)
    values[6] = json.loads(values[6])
    return ResourceRecord(*values)


class Ledger:
    """The run ledger at ``path`` (created with its folder and schema on first use).

    Contract: every method is one short SQLite transaction (WAL, 10 s busy timeout) and
    blocks at most that long for other writers, so several processes may share a ledger;
    the object holds no open connection and can be passed to child processes. Writes are
    durable when the method returns. Unknown runs or resources, duplicate run ids and
    invalid state transitions raise BackendError; an ambiguous or unknown run prefix in
    ``find_run`` raises UserError; a secret-looking ``detail`` key raises ValueError.
    Repeating a transition into the same state (``deleted`` twice) is allowed.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise ledger_error(self.path, exc) from None
        try:
            con.execute("PRAGMA foreign_keys = ON")
            # IMMEDIATE takes the write lock up front, so read-check-update is atomic.
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:   # damaged file, full disk, locked too long
            raise ledger_error(self.path, exc) from None
        finally:
            con.close()

    def _init_schema(self) -> None:
        try:
            sqlite_wal.connect(self.path, isolation_level=None).close()   # WAL is a property of the file
        except sqlite3.DatabaseError as exc:
            raise ledger_error(self.path, exc) from None
        with self._tx() as con:   # read first: an existing ledger needs no write (cleanup on a full disk)
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = (con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                       if "schema_version" in tables else None)
        if version == SCHEMA_VERSION and {"runs", "resources", "steps"} <= tables:
            return
        with self._tx(write=True) as con:
            for statement in _SCHEMA:
                con.execute(statement)
            version = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version is None:
                con.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise BackendError(f"ledger {self.path} has schema version {version}; this "
                                   f"orchestrator knows only up to {SCHEMA_VERSION}")

    # -- runs --------------------------------------------------------------------

    def start_run(self, run_id: str, pipeline: str, spec_path: Path | str, backend: str, profile: str,
                  owner_pid: int, owner_started: float, run_dir: Path | str) -> RunRecord:
        """Record a new run in status 'running'. A run id already used -> BackendError."""
        record = RunRecord(run_id, pipeline, str(spec_path), backend, profile, "running", time.time(),
                           None, owner_pid, float(owner_started), str(run_dir))
        try:
            with self._tx(write=True) as con:
                con.execute(f"INSERT INTO runs ({_RUN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            tuple(record.__dict__.values()))
        except sqlite3.IntegrityError:
            raise BackendError(f"run id {run_id!r} is already in the ledger {self.path}") from None
        return record

    def resume_run(self, run_id: str, owner_pid: int, owner_started: float,
                   owned: Callable[[RunRecord], bool] = lambda record: False) -> RunRecord:
        """Hand an ended (or orphaned) run to a new owner process and mark it running again,
        in one write transaction: if ``owned(record)`` says the run still has a live owner
        (``reconcile.live``), e.g. another ``run --resume`` took it a moment ago, UserError
        and nothing changes. Two takeovers of one run can never both succeed."""
        with self._tx(write=True) as con:
            row = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise BackendError(f"run {run_id!r} is not in the ledger {self.path}")
            if owned(_run(row)) and _run(row).owner_pid != owner_pid:
                raise UserError(f"run {run_id} is already running (process {_run(row).owner_pid}); "
                                "it was not resumed a second time", hint="wait for it, or stop it, then resume")
            con.execute("UPDATE runs SET status='running', ended_at=NULL, owner_pid=?, owner_started=? "
                        "WHERE run_id=?", (owner_pid, float(owner_started), run_id))
        return self.run(run_id)

    def step_succeeded(self, run_id: str, step: str, key: str) -> None:
        """Remember that ``step`` finished with inputs hashed to ``key`` (for ``run --resume``)."""
        with self._tx(write=True) as con:
            con.execute("INSERT OR REPLACE INTO steps VALUES (?,?,?,?)", (run_id, step, key, time.time()))

    def step_done(self, run_id: str, step: str, key: str) -> bool:
        """Whether ``step`` succeeded in this run with the same ``key``."""
        with self._tx() as con:
            return con.execute("SELECT 1 FROM steps WHERE run_id=? AND step=? AND key=?",
                               (run_id, step, key)).fetchone() is not None

    def finish_run(self, run_id: str, status: str) -> None:
        """Set a final status. A running run may end in any; an ended one may only become
        'cleaned' (or be set to its own status again). ``ended_at`` is set once."""
        if status not in RUN_STATUSES[1:]:
            raise ValueError(f"run status must be one of {RUN_STATUSES[1:]}, got {status!r}")
        with self._tx(write=True) as con:
            row = con.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise BackendError(f"run {run_id!r} is not in the ledger {self.path}")
            if row[0] not in ("running", status) and status != "cleaned":
                raise BackendError(f"run {run_id!r} already ended as {row[0]!r}; cannot mark it {status!r}")
            con.execute("UPDATE runs SET status=?, ended_at=COALESCE(ended_at, ?) WHERE run_id=?",
                        (status, time.time(), run_id))

    def run(self, run_id: str) -> RunRecord | None:
        with self._tx() as con:
            row = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _run(row) if row else None

    def runs(self, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs newest first, optionally only those with ``status``."""
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {RUN_STATUSES}, got {status!r}")
        sql = f"SELECT {_RUN_COLS} FROM runs" + (" WHERE status=?" if status else "")
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args = ((status,) if status else ()) + (-1 if limit is None else limit,)
        with self._tx() as con:
            return [_run(r) for r in con.execute(sql, args)]

    def find_run(self, prefix: str) -> RunRecord:
        """The run whose id is ``prefix`` or the only one starting with it, else UserError."""
        with self._tx() as con:
            rows = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id=?", (prefix,)).fetchall()
            if not rows and prefix:
                rows = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE substr(run_id, 1, ?)=? "
                                   "ORDER BY started_at DESC, rowid DESC", (len(prefix), prefix)).fetchall()
            recent = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started_at DESC, "
                                                "rowid DESC LIMIT 5")]
        if len(rows) == 1:
            return _run(rows[0])
        if not rows:
            raise UserError(f"no run matches {prefix!r}",
                            hint=f"recent runs: {', '.join(recent)}" if recent else "the ledger has no runs yet")
        ids = [r[0] for r in rows]
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        raise UserError(f"run id {prefix!r} is ambiguous: {', '.join(ids[:10])}{more}",
                        hint="give more characters of the run id")

    # -- resources ---------------------------------------------------------------

    def intend(self, run_id: str, kind: str, name: str, detail: dict) -> int:
        """Record a resource about to be created (state 'intent'); returns its rid.
        Call it BEFORE asking the backend, so a crash in between leaves a trace."""
        encoded = _encode_detail(detail)
        now = time.time()
        try:
            with self._tx(write=True) as con:
                cur = con.execute("INSERT INTO resources (run_id, kind, name, ref_id, state, detail, created_at,"
                                  " updated_at, reason) VALUES (?, ?, ?, NULL, 'intent', ?, ?, ?, NULL)",
                                  (run_id, kind, name, encoded, now, now))
                return int(cur.lastrowid)
        except sqlite3.IntegrityError:
            raise BackendError(f"cannot record {kind} {name!r}: run {run_id!r} is not in the ledger") from None

    def _move(self, rid: int, state: str, *, ref_id: str | None = None, detail: dict | None = None,
              reason: str | None = None) -> None:
        encoded = _encode_detail(detail) if detail is not None else None
        with self._tx(write=True) as con:
            row = con.execute("SELECT state, detail, kind, name FROM resources WHERE rid=?", (rid,)).fetchone()
            if row is None:
                raise BackendError(f"resource {rid} is not in the ledger {self.path}")
            current, old_detail, kind, name = row
            if state not in _NEXT_STATES[current]:
                raise BackendError(f"{kind} {name!r} (resource {rid}) is {current!r}; it cannot become {state!r}")
            merged = json.dumps({**json.loads(old_detail), **json.loads(encoded)}, sort_keys=True) \
                if encoded else old_detail
            con.execute("UPDATE resources SET state=?, ref_id=COALESCE(?, ref_id), detail=?, updated_at=?, "
                        "reason=? WHERE rid=?", (state, ref_id, merged, time.time(), reason, rid))

    def created(self, rid: int, ref_id: str, detail: dict | None = None) -> None:
        """The backend made it: store its id, merge ``detail`` into the recorded one."""
        self._move(rid, "created", ref_id=str(ref_id), detail=detail)

    def deleted(self, rid: int) -> None:
        """It is gone (or never existed). Final; repeating it is a no-op."""
        self._move(rid, "deleted")

    def delete_failed(self, rid: int, reason: str) -> None:
        """Deleting it failed; it stays live so a later cleanup retries."""
        self._move(rid, "delete_failed", reason=reason)

    def kept(self, rid: int, reason: str | None = None) -> None:
        """Deliberately left in place (e.g. a service the user asked to keep)."""
        self._move(rid, "kept", reason=reason)

    def resource(self, rid: int) -> ResourceRecord | None:
        with self._tx() as con:
            row = con.execute(f"SELECT {_RES_COLS} FROM resources WHERE rid=?", (rid,)).fetchone()
        return _resource(row) if row else None

    def live_resources(self, run_id: str | None = None) -> list[ResourceRecord]:
        """Resources that may still exist (intent, created, delete_failed), newest first:
        the order to tear them down in."""
        return self.in_states(LIVE_STATES, run_id)

    def in_states(self, states: tuple[str, ...], run_id: str | None = None) -> list[ResourceRecord]:
        """Resources in any of ``states``, newest first."""
        sql = f"SELECT {_RES_COLS} FROM resources WHERE state IN ({','.join('?' * len(states))})"
        args: tuple = tuple(states)
        if run_id is not None:
            sql, args = sql + " AND run_id=?", args + (run_id,)
        with self._tx() as con:
            return [_resource(r) for r in con.execute(sql + " ORDER BY rid DESC", args)]

    def resources(self, run_id: str) -> list[ResourceRecord]:
        """All resources of a run, in creation order."""
        with self._tx() as con:
            return [_resource(r) for r in con.execute(
                f"SELECT {_RES_COLS} FROM resources WHERE run_id=? ORDER BY rid", (run_id,))]
