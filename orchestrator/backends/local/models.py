"""The local model registry: packages copied out of the object store into
``<root>/models/<model_id>/model`` and listed in SQLite (``<root>/registry.sqlite``).

``import_model`` validates the package the way ModelArts' model import does before it
registers anything: ``model/config.json`` (model_type, model_algorithm, apis with a POST
``/``), ``customize_service.py``, one ``*-symbol.json`` and its ``*.params``. A package
that fails validation ends in state ``failed`` with a message naming the problem.
A ``ModelSpec.runtime`` (the import API's ``runtime``) is kept in ``<model_id>/import.json``
and wins over the package's ``config.json``; without either the runtime is python2.7.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

from ... import sqlite_wal
from ...model_package import validate_package
from ..base import BackendError, ModelRef, ModelSpec, Resource
from .storage import LocalObjectStore

SCHEMA = """CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, run_id TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', path TEXT NOT NULL, created_at REAL NOT NULL,
    UNIQUE(name, version))"""


class Registry:
    def __init__(self, root: Path, store: LocalObjectStore):
        self.root, self.store = root, store
        self.db = root / "registry.sqlite"
        root.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite_wal.connect(self.db)

    def import_model(self, spec: ModelSpec) -> ModelRef:
        model_id = uuid.uuid4().hex
        dest = self.root / "models" / model_id
        with closing(self._connect()) as con, con:
            if con.execute("SELECT 1 FROM models WHERE name=? AND version=?", (spec.name, spec.version)).fetchone():
                raise BackendError(f"model {spec.name} {spec.version} already exists")
            con.execute("INSERT INTO models VALUES (?,?,?,?,?,?,?,?)", (model_id, spec.name, spec.version, spec.run_id,
                        "publishing", "", str(dest), time.time()))
        source = spec.source_location.rstrip("/") + "/model/"
        try:
            if not self.store.exists(source):
                raise BackendError(f"no model package at {source} (did the training job export one?)")
            self.store.get(source, str(dest / "model"))
            problems = validate_package(dest / "model")
            if problems:
                raise BackendError(f"model package {source} is invalid: " + "; ".join(problems))
            if spec.runtime:
                (dest / "import.json").write_text(json.dumps({"runtime": spec.runtime}))
        except Exception as exc:
            self._set(model_id, "failed", str(exc))
            raise
        self._set(model_id, "published", "")
        return ModelRef(model_id, spec.name, spec.version)

    def _set(self, model_id: str, status: str, reason: str) -> None:
        with closing(self._connect()) as con, con:
            con.execute("UPDATE models SET status=?, reason=? WHERE model_id=?", (status, reason, model_id))

    def path(self, model_id: str) -> Path:
        with closing(self._connect()) as con:
            row = con.execute("SELECT path, status FROM models WHERE model_id=?", (model_id,)).fetchone()
        if row is None or row[1] != "published":
            raise BackendError(f"model {model_id} is not a published model")
        return Path(row[0]) / "model"

    def runtime(self, model_id: str) -> str:
        """The runtime given at import ('' when the package's config.json decides)."""
        try:
            return json.loads((self.path(model_id).parent / "import.json").read_text()).get("runtime") or ""
        except (OSError, ValueError):
            return ""

    def delete(self, model_id: str) -> None:
        with closing(self._connect()) as con, con:
            row = con.execute("SELECT path FROM models WHERE model_id=?", (model_id,)).fetchone()
            con.execute("DELETE FROM models WHERE model_id=?", (model_id,))
        if row:
            shutil.rmtree(row[0], ignore_errors=True)

    def list_resources(self, run_id: str | None) -> list[Resource]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT model_id, name, version, run_id FROM models ORDER BY created_at").fetchall()
        return [Resource("model", mid, f"{name} {version}", rid) for mid, name, version, rid in rows
                if run_id in (None, rid)]
