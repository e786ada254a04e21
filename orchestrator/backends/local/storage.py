"""An OBS-like object store on the local disk: ``obs://bucket/key`` -> ``<root>/obs/bucket/key``.

``s3://`` is accepted as a synonym of ``obs://``. Listing returns URIs with the scheme
that was asked for. A URI ending with ``/`` (or naming only the bucket) is a prefix, a
"folder"; a URI without the slash that names a folder is treated as that folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

from orchestrator.backends.base import BackendError, TransferStats
from orchestrator import sqlite_wal
from orchestrator.errors import UserError

Progress = Callable[[int, int, str], None]
SCHEMES = ("obs://", "s3://")
TMP_PREFIX = ".tmp-"          # writers' temp files; never listed, swept by delete()
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_MAX_KEY_BYTES = 1024        # OBS limit
_CHUNK = 1 << 20
_CONFLICTS = (IsADirectoryError, NotADirectoryError, FileExistsError)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the folder entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_copy(src: Path, dest: Path, expect_sha: str) -> tuple[int, float]:
    """Copy ``src`` over ``dest`` via a temp file in the same folder, fsync, verify, rename.

    Returns (bytes written, mtime of the new file). Raises BackendError when what landed
    on disk does not hash to ``expect_sha`` (source changed meanwhile, or disk trouble).
    """
    for attempt in range(5):
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
            break
        except FileNotFoundError:  # a concurrent delete() pruned the empty folder; redo it
            if attempt == 4:
                raise
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while block := inp.read(_CHUNK):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; objects are ordinary files
        got = _sha256(tmp)   # re-read what is on disk, not what we meant to write
        if got != expect_sha:
            raise BackendError(f"copy of {src} to {dest} is corrupt: sha256 {got}, expected {expect_sha}")
        st = tmp.stat()      # os.replace keeps the inode, so this mtime identifies our write
        os.replace(tmp, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)
    return st.st_size, st.st_mtime


class LocalObjectStore:
    """Objects as files under ``<root>/obs``, with a sha256 manifest in SQLite.

    Contract: every method blocks on the disk and returns when done. Writes (``put``,
    ``get``) are atomic per file: a reader sees the old content or the new, never half.
    ``put`` and ``get`` are idempotent: files whose content is unchanged are skipped and
    counted in ``TransferStats.skipped`` (``files``/``bytes`` count what was written).
    ``delete`` is idempotent (returns 0 when nothing is there). Several processes may use
    the same root at once. Bad URIs, escaping keys, missing local paths and file/folder
    clashes raise UserError naming the URI; a failed content check raises BackendError.
    Instances hold no open handles, so they may be passed to child processes.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.base = self.root / "obs"
        self.manifest_path = self.base / ".manifest.sqlite"

    # -- addressing --------------------------------------------------------------

    def _split(self, uri: str) -> tuple[str, str, str]:
        if not isinstance(uri, str):
            raise UserError(f"object URI must be a string, got {uri!r}")
        scheme = next((s for s in SCHEMES if uri[: len(s)].lower() == s), None)
        if scheme is None:
            raise UserError(f"not an object URI: {uri!r}", hint="write obs://bucket/key (or s3://bucket/key)")
        bucket, _, key = uri[len(scheme):].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket \
                or _IP_RE.match(bucket):
            raise UserError(f"bad bucket name {bucket!r} in {uri!r}",
                            hint="3-63 characters: lowercase letters, digits, '-' and '.', "
                                 "starting and ending with a letter or digit")
        self._check_key(uri, key)
        return scheme, bucket, key

    @staticmethod
    def _check_key(uri: str, key: str) -> None:
        def refuse(why: str) -> UserError:
            return UserError(f"key {key!r} in {uri!r} {why}", hint="use a relative key like data/train.rec")
        if "\\" in key or any(ord(c) < 32 for c in key):
            raise refuse("contains a backslash or a control character")
        if len(key.encode()) > _MAX_KEY_BYTES:
            raise refuse(f"is longer than {_MAX_KEY_BYTES} bytes")
        if key.startswith("/"):
            raise refuse("is an absolute path")
        segments = key.split("/")[:-1] if key.endswith("/") else key.split("/")
        for seg in segments if key else ():
            if seg in ("", ".", ".."):
                raise refuse("has an empty, '.' or '..' segment (it would escape the bucket)")
            if seg.startswith(TMP_PREFIX):
                raise refuse(f"has a segment starting with {TMP_PREFIX!r}, reserved for temp files")

    def parse(self, uri: str) -> tuple[str, str]:
        """``(bucket, key)`` of a validated URI; the key is '' for the bucket root."""
        _, bucket, key = self._split(uri)
        return bucket, key

    def path_for(self, uri: str) -> Path:
        """The file (object) or folder (prefix) a validated URI maps to; may not exist."""
        _, bucket, key = self._split(uri)
        return self._path(bucket, key)

    def _path(self, bucket: str, key: str) -> Path:
        return self.base.joinpath(bucket, *[s for s in key.split("/") if s])

    @staticmethod
    def _is_prefix(key: str) -> bool:
        return key == "" or key.endswith("/")

    def _iter_keys(self, bucket: str, key: str) -> Iterator[str]:
        """Keys of the object ``key`` or of everything under it (as a folder), temp files skipped."""
        path = self._path(bucket, key)
        if not self._is_prefix(key) and path.is_file():
            yield key
            return
        if not path.is_dir():
            return
        base = key if self._is_prefix(key) else key + "/"
        for dirpath, _dirs, files in os.walk(path):
            rel = os.path.relpath(dirpath, path)
            sub = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    yield base + sub + name

    # -- manifest ----------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.base.mkdir(parents=True, exist_ok=True)
        con = sqlite_wal.connect(self.manifest_path, timeout=30.0, isolation_level=None)
        try:
            con.execute("CREATE TABLE IF NOT EXISTS objects(bucket TEXT NOT NULL, key TEXT NOT NULL,"
                        " size INTEGER NOT NULL, sha256 TEXT NOT NULL, mtime REAL NOT NULL,"
                        " PRIMARY KEY (bucket, key))")
            yield con
        finally:
            con.close()

    def _record(self, db: sqlite3.Connection, bucket: str, key: str, size: int, sha: str, mtime: float) -> None:
        db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", (bucket, key, size, sha, mtime))

    def _fresh_row(self, db: sqlite3.Connection, bucket: str, key: str) -> tuple[int, str] | None:
        """The manifest's (size, sha256) if it still describes the file on disk."""
        row = db.execute("SELECT size, sha256, mtime FROM objects WHERE bucket=? AND key=?",
                         (bucket, key)).fetchone()
        try:
            st = self._path(bucket, key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        # size + mtime catch replacement by another writer or an edit behind our back
        if row and row[0] == st.st_size and row[2] == st.st_mtime:
            return row[0], row[1]
        return None

    def _info(self, db: sqlite3.Connection, uri: str, bucket: str, key: str) -> tuple[int, str]:
        fresh = self._fresh_row(db, bucket, key)
        if fresh:
            return fresh
        path = self._path(bucket, key)
        if self._is_prefix(key) or not path.is_file():
            raise UserError(f"no object at {uri}")
        st = path.stat()
        sha = _sha256(path)
        self._record(db, bucket, key, st.st_size, sha, st.st_mtime)
        return st.st_size, sha

    # -- public API ---------------------------------------------------------------

    def put(self, local_path: Path | str, uri: str, progress: Progress | None = None) -> TransferStats:
        """Upload a file to ``uri`` (to ``uri + name`` when ``uri`` is a prefix), or a folder
        recursively under ``uri`` as a prefix. Unchanged files are skipped."""
        scheme, bucket, key = self._split(uri)
        src = Path(local_path)
        if not src.exists():
            raise UserError(f"cannot upload {src}: no such file or folder", where=uri)
        if src.is_dir():
            prefix = key if self._is_prefix(key) else key + "/"
            pairs = sorted((prefix + p.relative_to(src).as_posix(), p) for p in src.rglob("*") if p.is_file())
        else:
            pairs = [(key + src.name if self._is_prefix(key) else key, src)]
        for k, _ in pairs:  # keys built from local names must obey the same rules
            self._check_key(f"{scheme}{bucket}/{k}", k)
        files = skipped = nbytes = 0
        with self._db() as db:
            for done, (k, file) in enumerate(pairs, 1):
                sha = _sha256(file)
                fresh = self._fresh_row(db, bucket, k)
                if fresh and fresh == (file.stat().st_size, sha):
                    skipped += 1
                else:
                    try:
                        size, mtime = _atomic_copy(file, self._path(bucket, k), sha)
                    except _CONFLICTS as e:
                        raise UserError(f"cannot write {scheme}{bucket}/{k}: an object and a folder "
                                        f"would share a name ({e.strerror})") from None
                    self._record(db, bucket, k, size, sha, mtime)
                    files, nbytes = files + 1, nbytes + size
                if progress:
                    progress(done, len(pairs), k)
        return TransferStats(files=files, skipped=skipped, bytes=nbytes)

    def get(self, uri: str, local_path: Path | str, progress: Progress | None = None) -> TransferStats:
        """Download an object to the file ``local_path``, or a prefix into the folder
        ``local_path`` (relative keys become relative paths). Unchanged local files are
        skipped. Nothing at ``uri`` -> UserError."""
        scheme, bucket, key = self._split(uri)
        dest = Path(local_path)
        keys = sorted(self._iter_keys(bucket, key))
        if not keys:
            raise UserError(f"nothing to download: no object or prefix at {uri}")
        if keys == [key]:
            pairs = [(key, dest)]
        else:
            base = key if self._is_prefix(key) else key + "/"
            pairs = [(k, dest.joinpath(*k[len(base):].split("/"))) for k in keys]
        files = skipped = nbytes = 0
        with self._db() as db:
            for done, (k, target) in enumerate(pairs, 1):
                size, sha = self._info(db, f"{scheme}{bucket}/{k}", bucket, k)
                if target.is_file() and target.stat().st_size == size and _sha256(target) == sha:
                    skipped += 1
                else:
                    try:
                        written, _ = _atomic_copy(self._path(bucket, k), target, sha)
                    except _CONFLICTS as e:
                        raise UserError(f"cannot write {target} from {scheme}{bucket}/{k}: "
                                        f"a file and a folder would share a name ({e.strerror})") from None
                    files, nbytes = files + 1, nbytes + written
                if progress:
                    progress(done, len(pairs), k)
        return TransferStats(files=files, skipped=skipped, bytes=nbytes)

    def exists(self, uri: str) -> bool:
        """True for an object or a prefix with at least one object under it."""
        _, bucket, key = self._split(uri)
        return next(self._iter_keys(bucket, key), None) is not None

    def list(self, prefix_uri: str) -> list[str]:
        """Sorted URIs of all objects under the prefix (recursive), or ``[uri]`` for an object."""
        scheme, bucket, key = self._split(prefix_uri)
        return [f"{scheme}{bucket}/{k}" for k in sorted(self._iter_keys(bucket, key))]

    def info(self, uri: str) -> tuple[int, str]:
        """``(size, sha256)`` of an object, from the manifest when it is current."""
        _, bucket, key = self._split(uri)
        with self._db() as db:
            return self._info(db, uri, bucket, key)

    def delete(self, prefix_or_uri: str) -> int:
        """Remove an object, or everything under a prefix (crashed writers' temp files too);
        prune empty folders inside the bucket and the manifest rows. Returns the number of
        objects removed; 0 when nothing was there."""
        _, bucket, key = self._split(prefix_or_uri)
        path = self._path(bucket, key)
        bucket_dir = self.base / bucket
        is_object = not self._is_prefix(key) and path.is_file()
        count = 0
        for k in list(self._iter_keys(bucket, key)):
            with suppress(FileNotFoundError):  # a concurrent delete got there first
                self._path(bucket, k).unlink()
                count += 1
        if not is_object and path.is_dir():
            for dirpath, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    if name.startswith(TMP_PREFIX):
                        with suppress(FileNotFoundError):
                            os.unlink(os.path.join(dirpath, name))
                if dirpath != str(bucket_dir):
                    with suppress(OSError):  # not empty: someone wrote meanwhile; keep it
                        os.rmdir(dirpath)
        parent = path.parent
        while parent != bucket_dir and bucket_dir in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        if self.manifest_path.exists():
            with self._db() as db:
                if is_object:
                    db.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
                else:
                    base = key if self._is_prefix(key) else key + "/"
                    db.execute("DELETE FROM objects WHERE bucket=? AND substr(key, 1, ?)=?",
                               (bucket, len(base), base))
        return count

    def buckets(self) -> list[str]:
        """Sorted names of the buckets that exist (a bucket appears with its first object)."""
        if not self.base.is_dir():
            return []
        return sorted(p.name for p in self.base.iterdir() if p.is_dir() and _BUCKET_RE.match(p.name))
