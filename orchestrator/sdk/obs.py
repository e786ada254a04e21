"""``session.obs``: the newer ModelArts SDK file calls (upload_file, upload_dir,
download_file, download_dir) on the session's object store."""

from __future__ import annotations

from pathlib import Path

from . import checks


class Obs:
    """File transfers between this machine and the backend's object store.

    Blocking; unchanged files are skipped. Every upload is recorded in the ledger (as the
    object or folder it creates) before it starts, so it is deleted with the session.
    Destination folders are written ``obs://bucket/dir/`` (``/bucket/dir/`` works too).
    """

    def __init__(self, session):
        self._session = session

    def upload_file(self, src_local_file: str, dst_obs_dir: str, *, arg: str = "dst_obs_dir") -> str:
        """``src_local_file`` -> ``dst_obs_dir + file name``; returns that URI."""
        src = checks.local_path(src_local_file, "src_local_file")
        if not src.is_file():
            raise checks.fail("src_local_file", f"{src} is a folder", hint="use upload_dir for folders")
        return self._put(src, checks.checked_uri(self._session.storage, dst_obs_dir, arg, folder=True) + src.name)

    def upload_dir(self, src_local_dir: str, dst_obs_dir: str, *, arg: str = "dst_obs_dir") -> str:
        """``src_local_dir`` -> ``dst_obs_dir + folder name + /`` (the ModelArts layout)."""
        src = checks.local_path(src_local_dir, "src_local_dir")
        if not src.is_dir():
            raise checks.fail("src_local_dir", f"{src} is a file", hint="use upload_file for files")
        base = checks.checked_uri(self._session.storage, dst_obs_dir, arg, folder=True)
        return self._put(src, base + src.resolve().name + "/")

    def download_file(self, src_obs_file: str, dst_local_file: str) -> str:
        """The object ``src_obs_file`` -> the file ``dst_local_file``, or into it under the
        object's name when it is an existing folder or ends with '/'; returns the local path."""
        uri = checks.checked_uri(self._session.storage, src_obs_file, "src_obs_file")
        if uri.endswith("/"):
            raise checks.fail("src_obs_file", f"{uri} is a folder", hint="use download_dir for folders")
        target = Path(dst_local_file)
        if target.is_dir() or str(dst_local_file).endswith(("/", "\\")):
            target = target / uri.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        return self._get(uri, target, "src_obs_file")

    def download_dir(self, src_obs_dir: str, dst_local_dir: str) -> str:
        """The folder ``src_obs_dir`` -> ``dst_local_dir/<last folder name>/``."""
        uri = checks.checked_uri(self._session.storage, src_obs_dir, "src_obs_dir", folder=True)
        target = Path(dst_local_dir) / uri.rstrip("/").rsplit("/", 1)[-1]
        return self._get(uri, target, "src_obs_dir")

    def _put(self, src: Path, uri: str) -> str:
        session = self._session
        with session.track("object_prefix", uri, {"local": str(src)}, once=True) as made:
            stats = session.storage.put(str(src), uri)
            made.created(uri)
        session.say(f"Uploaded {src} to {uri} ({stats.files} files, {stats.bytes} bytes; {stats.skipped} unchanged)")
        return uri

    def _get(self, uri: str, target: Path, arg: str) -> str:
        if not self._session.storage.exists(uri):
            raise checks.fail(arg, f"nothing at {uri}")
        stats = self._session.storage.get(uri, str(target))
        self._session.say(f"Downloaded {uri} to {target} ({stats.files} files, {stats.skipped} unchanged)")
        return str(target)
