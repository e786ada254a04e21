"""Path rules and atomic writes behind ``mox.file`` (see ``file.py`` for the contract):
``obs://`` / ``s3://`` URIs resolved to files under ``$ORCHESTRATOR_OBS_ROOT/obs/``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

ROOT_ENV = "ORCHESTRATOR_OBS_ROOT"
SCHEMES = ("obs://", "s3://")
TMP_PREFIX = ".tmp-"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_MAX_KEY_BYTES = 1024
CHUNK = 1 << 20


class MoxPathError(ValueError):
    """A malformed obs:// path: bad bucket, or a key that would escape the bucket."""


class ObsRootNotSetError(RuntimeError):
    """An obs:// path was used but ORCHESTRATOR_OBS_ROOT is not set."""


# -- addressing -----------------------------------------------------------------

def _scheme(path: str) -> str | None:
    return next((s for s in SCHEMES if path[: len(s)].lower() == s), None)


def _is_obs(path) -> bool:
    return isinstance(path, str) and _scheme(path) is not None


def _split(uri: str) -> tuple[str, str, str]:
    scheme = _scheme(uri)
    bucket, _, key = uri[len(scheme):].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket \
            or _IP_RE.match(bucket):
        raise MoxPathError(f"bad bucket name {bucket!r} in {uri!r}")
    _check_key(uri, key)
    return scheme, bucket, key


def _check_key(uri: str, key: str) -> None:
    if "\\" in key or any(ord(c) < 32 for c in key):
        raise MoxPathError(f"key {key!r} in {uri!r} contains a backslash or a control character")
    if len(key.encode()) > _MAX_KEY_BYTES:
        raise MoxPathError(f"key in {uri!r} is longer than {_MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise MoxPathError(f"key {key!r} in {uri!r} is an absolute path")
    segments = key.split("/")[:-1] if key.endswith("/") else key.split("/")
    for seg in segments if key else ():
        if seg in ("", ".", ".."):
            raise MoxPathError(f"key {key!r} in {uri!r} has an empty, '.' or '..' segment "
                               "(it would escape the bucket)")
        if seg.startswith(TMP_PREFIX):
            raise MoxPathError(f"key {key!r} in {uri!r} has a segment starting with {TMP_PREFIX!r}")


def _obs_base() -> str:
    root = os.environ.get(ROOT_ENV)
    if not root:
        raise ObsRootNotSetError(f"obs:// paths need {ROOT_ENV} (the local object store's root) "
                                 "to be set; it is set for training jobs run by the local backend")
    return os.path.join(root, "obs")


def _local(path) -> str:
    """The file-system path behind a local path or an obs:// URI (validated)."""
    path = os.fspath(path)
    if not _is_obs(path):
        return path
    _, bucket, key = _split(path)
    return os.path.join(_obs_base(), bucket, *[s for s in key.split("/") if s])


def _join(path: str, rel: str) -> str:
    """``path`` / ``rel`` ('/'-separated), keeping obs URIs as URIs."""
    if _is_obs(path):
        return path.rstrip("/") + "/" + rel
    return os.path.join(path, *rel.split("/"))


# -- writing ----------------------------------------------------------------------

def _open_temp(target: str):
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    return os.fdopen(fd, "wb"), tmp


def _publish(tmp: str, target: str) -> None:
    """fsync'd temp file -> target, by rename; make sure the mtime changes."""
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; objects are ordinary files
    try:
        old = os.stat(target)
    except OSError:
        old = None
    if old is not None:
        new = os.stat(tmp)
        if new.st_mtime_ns <= old.st_mtime_ns:   # coarse clock: same tick as the old file
            bumped = old.st_mtime_ns + 2000
            os.utime(tmp, ns=(new.st_atime_ns, bumped))
    os.replace(tmp, target)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def _atomic_write(target: str, fill) -> None:
    """Write ``target`` through a temp file: ``fill(out)`` writes the content."""
    out, tmp = _open_temp(target)
    try:
        with out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        _publish(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def _write_bytes(target: str, data: bytes, append_from: str | None = None) -> None:
    def fill(out):
        if append_from is not None and os.path.isfile(append_from):
            with open(append_from, "rb") as old:
                shutil.copyfileobj(old, out, CHUNK)
        out.write(data)
    _atomic_write(target, fill)


def _copy_file(src_fs: str, dst_fs: str) -> None:
    def fill(out):
        with open(src_fs, "rb") as inp:
            shutil.copyfileobj(inp, out, CHUNK)
    _atomic_write(dst_fs, fill)


# -- public API --------------------------------------------------------------------
