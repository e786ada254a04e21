"""Opening the SQLite files several processes share (ledger, object manifest, model registry)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect(path: Path | str, timeout: float = 10.0, **kwargs) -> sqlite3.Connection:
    """A connection in WAL mode. Switching a new file to WAL answers 'database is locked'
    at once, without the busy timeout, when another process does the same: retry briefly."""
    for attempt in range(100):
        con = sqlite3.connect(path, timeout=timeout, **kwargs)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return con
        except sqlite3.OperationalError as exc:
            con.close()
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
