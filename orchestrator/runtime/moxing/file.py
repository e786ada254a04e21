"""``mox.file``: one API over local paths and ``obs://`` / ``s3://`` objects.

Objects live as plain files under ``$ORCHESTRATOR_OBS_ROOT/obs/<bucket>/<key>`` (the local
object store's layout), so what a job writes here is what ``LocalObjectStore`` reads and
the other way round. Rules, the same as the store's:

- bucket names: 3-63 of ``a-z0-9.-``, starting and ending with a letter or digit;
- keys: relative, no backslash or control character, no empty, ``.`` or ``..`` segment,
  no segment starting with ``.tmp-`` (writers' temp files); otherwise ``MoxPathError``;
- every write goes to a ``.tmp-*`` file in the target folder, is fsynced, then renamed
  over the target, so readers see the old content or the new, never half;
- with ``ORCHESTRATOR_OBS_ROOT`` unset, any ``obs://`` path raises ``ObsRootNotSetError``.

The store's manifest caches (size, mtime, sha256) per object and trusts a row only while
size and mtime still match the file. A write here makes a new file (new mtime); should the
clock tick be too coarse to tell old from new, the new file's mtime is nudged forward so
the row goes stale and the store re-hashes. (Not covered: a key removed here and rewritten
with the same size within one clock tick, while the store still holds the removed file's row.)

Folders: an obs "directory" is a prefix; here it is a folder on disk. ``list_directory``
returns names relative to the path (recursive: files and folders, '/'-separated).
"""

from __future__ import annotations

import glob as _glob
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from ._paths import (CHUNK, TMP_PREFIX, MoxPathError, ObsRootNotSetError, _atomic_write, _copy_file, _obs_base,  # noqa: F401
                     _discard, _is_obs, _join, _local, _open_temp, _publish, _split, _write_bytes)

__all__ = ["exists", "is_directory", "make_dirs", "mk_dir", "copy", "copy_parallel", "remove",
           "read", "write", "append", "list_directory", "glob", "rename", "File", "shift",
           "MoxPathError", "ObsRootNotSetError"]


def exists(path) -> bool:
    return os.path.exists(_local(path))


def is_directory(path) -> bool:
    return os.path.isdir(_local(path))


def make_dirs(path) -> None:
    os.makedirs(_local(path), exist_ok=True)


def mk_dir(path) -> None:
    os.mkdir(_local(path))


def read(path, binary: bool = False):
    with open(_local(path), "rb") as fh:
        data = fh.read()
    return data if binary else data.decode("utf-8")


def write(path, content, binary: bool = False) -> None:
    """Replace the file at ``path`` with ``content`` (str, or bytes when binary), atomically."""
    data = content if isinstance(content, (bytes, bytearray)) else str(content).encode("utf-8")
    _write_bytes(_local(path), bytes(data))


def append(path, content, binary: bool = False) -> None:
    """Add ``content`` at the end (a new file with old + new, renamed over the old)."""
    target = _local(path)
    data = content if isinstance(content, (bytes, bytearray)) else str(content).encode("utf-8")
    _write_bytes(target, bytes(data), append_from=target)


def copy(src_url, dst_url) -> None:
    """Copy one file (local or obs) to a file path (local or obs)."""
    src = _local(src_url)
    if os.path.isdir(src):
        raise IsADirectoryError(f"{src_url} is a directory; use copy_parallel")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"no such file: {src_url}")
    _copy_file(src, _local(dst_url))


def _walk_files(path: str) -> list[str]:
    """'/'-separated paths of the files under the folder ``path``, temp files skipped."""
    fs = _local(path)
    out = []
    for dirpath, dirs, files in os.walk(fs):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        rel = os.path.relpath(dirpath, fs)
        sub = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out += [sub + f for f in files if not f.startswith(TMP_PREFIX)]
    return sorted(out)


def copy_parallel(src_url, dst_url, threads: int = 8, **_ignored) -> None:
    """Copy the folder ``src_url`` recursively into ``dst_url`` (any mix of local and obs);
    a file is copied like ``copy``."""
    src_url, dst_url = os.fspath(src_url), os.fspath(dst_url)
    src = _local(src_url)
    if os.path.isfile(src):
        return copy(src_url, dst_url)
    if not os.path.isdir(src):
        raise FileNotFoundError(f"no such file or directory: {src_url}")
    rels = _walk_files(src_url)
    pairs = [(_local(_join(src_url, r)), _local(_join(dst_url, r))) for r in rels]  # validates all keys first
    make_dirs(dst_url)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for fut in [pool.submit(_copy_file, s, d) for s, d in pairs]:
            fut.result()


def remove(path, recursive: bool = False) -> None:
    fs = _local(path)
    if os.path.isdir(fs) and not os.path.islink(fs):
        if not recursive:
            raise IsADirectoryError(f"{path} is a directory; pass recursive=True")
        shutil.rmtree(fs)
    elif os.path.lexists(fs):
        os.unlink(fs)
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")


def list_directory(path, recursive: bool = False) -> list[str]:
    """Sorted names under ``path``, relative to it; recursive lists files and folders at
    every depth ('a', 'a/b.txt'). Temp files are left out."""
    fs = _local(path)
    if not os.path.isdir(fs):
        if os.path.exists(fs):
            raise NotADirectoryError(f"{path} is not a directory")
        raise FileNotFoundError(f"no such directory: {path}")
    if not recursive:
        return sorted(n for n in os.listdir(fs) if not n.startswith(TMP_PREFIX))
    out = []
    for dirpath, dirs, files in os.walk(fs):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        rel = os.path.relpath(dirpath, fs)
        sub = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out += [sub + n for n in dirs + files if not n.startswith(TMP_PREFIX)]
    return sorted(out)


def glob(pattern) -> list[str]:
    """Paths matching a shell pattern (``*``, ``?``, ``[...]``; not in the bucket name).
    Results for an obs pattern are obs URIs with the same scheme and bucket."""
    pattern = os.fspath(pattern)
    if not _is_obs(pattern):
        return sorted(_glob.glob(pattern))
    scheme, bucket, key = _split(pattern)
    base = os.path.join(_obs_base(), bucket)
    found = _glob.glob(os.path.join(base, *[s for s in key.split("/") if s]))
    out = []
    for p in found:
        rel = os.path.relpath(p, base).replace(os.sep, "/")
        if any(seg.startswith(TMP_PREFIX) for seg in rel.split("/")):
            continue
        out.append(f"{pattern[:len(scheme)]}{bucket}/{rel}")
    return sorted(out)


def rename(src_url, dst_url) -> None:
    """Move a file or folder (any mix of local and obs); an existing file target is replaced."""
    src, dst = _local(src_url), _local(dst_url)
    if not os.path.exists(src):
        raise FileNotFoundError(f"no such file or directory: {src_url}")
    if os.path.isdir(src):
        if not (_is_obs(os.fspath(src_url)) or _is_obs(os.fspath(dst_url))):
            try:
                os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
                os.rename(src, dst)
                return
            except OSError:  # other file system, or target folder not empty
                pass
        copy_parallel(src_url, dst_url)
        shutil.rmtree(src)
        return
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    if _is_obs(os.fspath(dst_url)) or _is_obs(os.fspath(src_url)):
        _copy_file(src, dst)   # a fresh file (new mtime) so the store's manifest sees the change
        os.unlink(src)
        return
    try:
        os.replace(src, dst)
    except OSError:            # another file system
        _copy_file(src, dst)
        os.unlink(src)


class File:
    """``with mox.file.File(path, mode) as f``: a file object. Writing modes ('w', 'a', 'x',
    with or without 'b') write to a temp file that replaces ``path`` on a clean close; an
    exception inside the ``with`` block discards it. '+' modes are not supported."""

    def __init__(self, path, mode: str = "r", encoding: str | None = None, newline: str | None = None):
        if "+" in mode:
            raise ValueError(f"mode {mode!r} is not supported by mox.file.File")
        self.name, self.mode = os.fspath(path), mode
        self._target = _local(path)
        self._tmp = None
        kind = mode.replace("b", "").replace("t", "")
        if kind == "r":
            self._fh = open(self._target, mode, encoding=encoding, newline=newline)
            return
        if kind not in ("w", "a", "x"):
            raise ValueError(f"invalid mode {mode!r}")
        if kind == "x" and os.path.exists(self._target):
            raise FileExistsError(f"{self.name} exists")
        raw, self._tmp = _open_temp(self._target)
        try:
            if kind == "a" and os.path.isfile(self._target):
                with open(self._target, "rb") as old:
                    shutil.copyfileobj(old, raw, CHUNK)
            raw.close()
            self._fh = open(self._tmp, "ab" if "b" in mode else "a", encoding=encoding, newline=newline)
        except BaseException:
            _discard(self._tmp)
            raise

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __iter__(self):
        return iter(self._fh)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> None:
        if self._fh.closed:
            return
        if self._tmp is None:
            self._fh.close()
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            _publish(self._tmp, self._target)
        except BaseException:
            self._abort()
            raise
        finally:
            self._tmp = None

    def _abort(self) -> None:
        self._fh.close()
        if self._tmp is not None:
            _discard(self._tmp)
            self._tmp = None


def shift(*_args, **_kwargs) -> None:
    """moxing's shift('os', 'mox') patches builtins for obs paths; here it does nothing."""
    return None
