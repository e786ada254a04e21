"""Step caching across runs: prepare, upload and train reuse an earlier run's output when
their cache key is the same and that output still exists.

Keys (``cache_keys``) leave out everything that names a run (job name, run id, paths):

- prepare: the step key of ``stepkeys.py`` (data settings, source listing, data tools);
- upload: prepare's key + the profile and bucket the data lives in;
- train: upload's key (the data's content), the training code's bytes, and every job
  setting but its name and places: hyperparameters, flavour, nodes, envs, boot file,
  and whatever the job spec grows (e.g. an image).

Outputs of cacheable steps are written outside the run's own names (``<root>/cache/prepare/
<key>/``, ``obs://<bucket>/<pipeline>/cache/<run id>/...``), so teardown and ``cleanup``
leave them; ``cleanup --cache`` removes them. Entries live in ``<root>/cache.sqlite``
(one short transaction per call; safe for several processes).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

from . import sqlite_wal
from .backends.base import BackendError, JobSpec
from .stepkeys import digest, tree

RUN_SPECIFIC = {"name", "run_id", "data_url", "train_url", "max_runtime_s", "code_dir", "include_dirs", "shipped"}


def cache_keys(prepare_key: str, profile: str, bucket: str, job: JobSpec) -> dict[str, str]:
    upload = digest("upload-cache", prepare_key, profile, bucket)
    setting = {k: v for k, v in asdict(job).items() if k not in RUN_SPECIFIC}
    code = ([tree(path, content=True) for path in (job.code_dir, *job.include_dirs)]
            + [(inside, tree(source, content=True)) for source, inside in job.shipped])   # bytes, not where from
    return {"prepare": prepare_key, "upload": upload, "train": digest("train-cache", upload, setting, code)}


@dataclass(frozen=True)
class Entry:
    step: str
    key: str
    run_id: str
    location: str          # a local folder (prepare) or an obs:// prefix
    created_at: float


class CacheStore:
    """Cache entries in ``<root>/cache.sqlite``; ``root/cache/`` holds local outputs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / "cache.sqlite"
        self.root.mkdir(parents=True, exist_ok=True)
        with closing(sqlite_wal.connect(self.path)) as con, con:
            con.execute("CREATE TABLE IF NOT EXISTS entries (step TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT "
                        "NOT NULL, location TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (step, key, run_id))")

    def record(self, step: str, key: str, run_id: str, location: str) -> None:
        with closing(sqlite_wal.connect(self.path)) as con, con:
            con.execute("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?)", (step, key, run_id, location, time.time()))

    def entries(self, step: str | None = None, key: str | None = None) -> list[Entry]:
        """Newest first."""
        sql, args = "SELECT step, key, run_id, location, created_at FROM entries WHERE 1=1", []
        if step is not None:
            sql, args = sql + " AND step=?", args + [step]
        if key is not None:
            sql, args = sql + " AND key=?", args + [key]
        with closing(sqlite_wal.connect(self.path)) as con:
            return [Entry(*row) for row in con.execute(sql + " ORDER BY created_at DESC", args)]

    def forget(self, entry: Entry) -> None:
        with closing(sqlite_wal.connect(self.path)) as con, con:
            con.execute("DELETE FROM entries WHERE step=? AND key=? AND run_id=?", (entry.step, entry.key, entry.run_id))

    def lookup(self, step: str, key: str, storage) -> Entry | None:
        """The newest entry for ``step``/``key`` whose output still exists; entries whose
        output is gone are forgotten."""
        for entry in self.entries(step, key):
            if output_exists(entry, storage):
                return entry
            self.forget(entry)
        return None

    def prepare_dir(self, key: str) -> Path:
        return self.root / "cache" / "prepare" / key

    def keep_prepared(self, key: str, work_dir: Path, run_id: str) -> Path:
        """Hard-link ``work_dir`` into the cache (atomically: a temporary name, then a
        rename) and record it. Returns the cached folder."""
        target = self.prepare_dir(key)
        if not (target / "packed" / "dataset.json").is_file():
            tmp = target.with_name(f".tmp-{key}-{run_id}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(work_dir, tmp, copy_function=_link_or_copy)
            shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:      # another run with the same key got there first: same content
                shutil.rmtree(tmp, ignore_errors=True)
        self.record("prepare", key, run_id, str(target))
        return target


def output_exists(entry: Entry, storage) -> bool:
    if entry.step == "prepare":
        return (Path(entry.location) / "packed" / "dataset.json").is_file()
    try:
        return bool(storage.list(entry.location))
    except (BackendError, OSError):
        return False


def purge(store: CacheStore, backend, ledger, log) -> int:
    """``cleanup --cache``: delete every cached output and forget it. Returns how many."""
    count = 0
    kept = {row.name: row for row in ledger.in_states(("kept",))}
    for entry in store.entries():
        if entry.step == "prepare":
            shutil.rmtree(entry.location, ignore_errors=True)
        else:
            backend.storage.delete(entry.location)
            if entry.location in kept:
                ledger.deleted(kept[entry.location].rid)
        store.forget(entry)
        count += 1
        log(f"deleted cached {entry.step} output of run {entry.run_id}: {entry.location}")
    shutil.rmtree(store.root / "cache", ignore_errors=True)   # also half-written copies of crashed runs
    return count


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:             # another file system: a copy
        shutil.copy2(src, dst)
