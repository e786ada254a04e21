"""``cleanup --repair``: a damaged or lost ledger is replaced without losing what can be read.

``repair(path, runs_dir) -> [what was done]``: a ledger that fails SQLite's integrity
check is moved aside (``ledger.sqlite.damaged-<time>``, with its WAL files: nothing is
deleted), every row of ``runs``, ``resources`` and ``steps`` that SQLite can still read is
copied into a fresh ledger, and every run folder (``runs/<run id>/report.json``) the
ledger does not know (a 0-byte or lost ledger) is added back as a run whose owner is gone,
so ``cleanup`` and ``status`` see it. A healthy ledger only gets the missing runs.
Resources the rows never named are still found by ``cleanup`` through the backend's own
listing (names carry the run id).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

from .ledger import _RES_COLS, _RUN_COLS, RUN_STATUSES, Ledger

_TABLES = {"runs": _RUN_COLS, "resources": _RES_COLS, "steps": "run_id, step, key, finished_at"}


def _healthy(path: Path) -> bool:
    if not path.exists():
        return True
    try:
        con = sqlite3.connect(path)
        try:
            return con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return False


def _salvage(path: Path) -> tuple[dict[str, list[tuple]], list[str]]:
    rows, lost = {}, []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        return {}, [f"nothing could be read ({exc})"]
    try:
        for table, cols in _TABLES.items():
            try:
                rows[table] = con.execute(f"SELECT {cols} FROM {table}").fetchall()
            except sqlite3.DatabaseError as exc:
                lost.append(f"table {table} could not be read ({exc})")
    finally:
        con.close()
    return rows, lost


def repair(path: Path, runs_dir: Path) -> list[str]:
    done: list[str] = []
    rows: dict[str, list[tuple]] = {}
    if not _healthy(path):
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                shutil.move(f"{path}{suffix}", f"{aside}{suffix}")
        rows, lost = _salvage(aside)
        done.append(f"the damaged ledger was kept as {aside}")
        done += lost
    Ledger(path)   # the schema of a fresh (or 0-byte) file
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        for table, found in rows.items():
            marks = ",".join("?" * len(_TABLES[table].split(",")))
            con.executemany(f"INSERT OR IGNORE INTO {table} ({_TABLES[table]}) VALUES ({marks})", found)
            done.append(f"recovered {len(found)} row(s) of {table}")
        known = {r[0] for r in con.execute("SELECT run_id FROM runs")}
        added = [run for run in _run_folders(runs_dir) if run[0] not in known]
        con.executemany(f"INSERT INTO runs ({_RUN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", added)
        con.execute("COMMIT")
    finally:
        con.close()
    if added:
        done.append(f"added {len(added)} run(s) known only from their folders: {', '.join(r[0] for r in added[:5])}")
    return done


def _run_folders(runs_dir: Path) -> list[tuple]:
    """Run rows rebuilt from ``runs/<id>/report.json`` (owner pid 0: gone)."""
    out = []
    for folder in sorted(runs_dir.glob("*")) if runs_dir.is_dir() else []:
        try:
            report = json.loads((folder / "report.json").read_text())
        except (OSError, ValueError):
            report = {}
        status = report.get("status") if report.get("status") in RUN_STATUSES[1:] else "interrupted"
        started = float(report.get("started_at") or folder.stat().st_mtime)
        out.append((folder.name, report.get("pipeline", "?"), report.get("spec_path", "?"),
                    report.get("backend", "?"), report.get("profile", "?"), status, started,
                    report.get("ended_at"), 0, 0.0, str(folder)))
    return out
