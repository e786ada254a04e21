"""Object storage on OBS (or any S3-compatible server) through esdk-obs-python's ``ObsClient``.

Same contract and URIs as the local store (``obs://bucket/key``, ``s3://`` as a synonym;
a key ending with ``/`` is a prefix): ``put``/``get`` skip unchanged files and report
``TransferStats``; ``delete`` is idempotent. Uploads are resumable multipart uploads with a
checkpoint file (a re-run after a crash continues where it stopped), carry their sha256 as
object metadata and are verified after upload (size and sha256 read back). A content
manifest (``<state_dir>/<host>/<bucket>.json``: key -> sha256, size, ETag) lets a re-run skip
unchanged files from one listing, without a request per file.

Measured SDK behaviour this code relies on: errors come back as results (``status >= 300``,
``errorCode``, ``errorMessage``; the body is then a string), connection failures and a
missing bucket in ``uploadFile`` raise, ``next_marker`` may be empty while a listing is
truncated (the last key is the marker then), local S3 servers need signature ``v2`` and
path-style addressing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import suppress
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from obs import DeleteObjectsRequest, Object, ObsClient

from orchestrator.backends.base import BackendError, TransferStats
from orchestrator.backends.local.storage import LocalObjectStore
from orchestrator.errors import UserError

from .errors import MissingBucket, explain, retryable
from .rest import Retry, Transient

Progress = Callable[[int, int, str], None]
ByteProgress = Callable[[int, int, float], None]
_PARSER = LocalObjectStore("/nonexistent")   # only its pure URI validation (parse) is used
PAGE = 1000


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class ObsStorage:
    """Blocking; safe to share between threads (the SDK client is thread-safe)."""

    def __init__(self, endpoint: str, ak: str, sk: str, state_dir: Path, *, path_style: bool = False,
                 signature: str = "obs", verify_ssl: bool = True, create_bucket: bool = False, region: str = "",
                 timeout: int = 60, part_size: int = 9 * 1024 * 1024, retry: Retry | None = None,
                 credentials_hint: str = "the AK/SK", page_size: int = PAGE):
        self.endpoint, self.path_style = endpoint.rstrip("/"), path_style
        self.client = ObsClient(access_key_id=ak, secret_access_key=sk, server=self.endpoint, signature=signature,
                                path_style=path_style, ssl_verify=verify_ssl, timeout=timeout, max_retry_count=2)
        self.state_dir = Path(state_dir) / (urlsplit(self.endpoint).netloc or "obs").replace(":", "_")
        self.create_bucket, self.region, self.part_size = create_bucket, region, part_size
        self.retry, self.credentials_hint, self.page_size = retry or Retry(), credentials_hint, page_size
        self._buckets_seen: set[str] = set()

    def __repr__(self) -> str:
        return f"ObsStorage({self.endpoint!r})"

    # -- SDK calls: one place for retries and error answers ------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        def attempt():
            try:
                result = fn(*args, **kwargs)
            except (OSError, HTTPException) as exc:   # the SDK raises these after its own retries
                raise Transient(BackendError(f"{what}: cannot reach OBS at {self.endpoint} ({exc})")) from None
            except Exception as exc:  # noqa: BLE001 - uploadFile raises a bare Exception when a part failed
                raise Transient(BackendError(f"{what}: {exc}")) from None
            if result.status >= 300 and retryable(result.status, result.errorCode):
                raise Transient(self._error(result, what))
            return result

        try:
            result = self.retry.run(attempt, lambda exc: isinstance(exc, Transient))
        except Transient as exc:
            raise exc.error from None
        if result.status >= 300:
            raise self._error(result, what)
        return result

    def _error(self, result, what: str) -> Exception:
        # HEAD answers have no body: a 404 on a bucket HEAD carries no error code
        code = result.errorCode or ("NoSuchBucket" if result.status == 404 and what.startswith("check") else None)
        return explain(result.status, code, result.errorMessage or result.reason, what,
                       credentials=self.credentials_hint, request_id=result.requestId)

    def ensure_bucket(self, bucket: str) -> None:
        if bucket in self._buckets_seen:
            return
        try:
            self._call(f"check OBS bucket {bucket}", self.client.headBucket, bucket)
        except MissingBucket:
            if not self.create_bucket:
                raise
            self._call(f"create OBS bucket {bucket}", self.client.createBucket, bucket, location=self.region or None)
        self._buckets_seen.add(bucket)

    # -- listing and the manifest ---------------------------------------------------------

    def _objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        """(key, size, etag) of every object under ``prefix``, page by page."""
        marker = None
        while True:
            result = self._call(f"list obs://{bucket}/{prefix}", self.client.listObjects, bucket, prefix=prefix or None,
                                marker=marker, max_keys=self.page_size)
            contents = result.body.contents or []
            for obj in contents:
                yield obj.key, int(obj.size), (obj.etag or "").strip('"')
            if not result.body.is_truncated or not contents:
                return
            marker = result.body.next_marker or contents[-1].key

    def _manifest_path(self, bucket: str) -> Path:
        return self.state_dir / f"{bucket}.json"

    def _load_manifest(self, bucket: str) -> dict:
        try:
            return json.loads(self._manifest_path(bucket).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_manifest(self, bucket: str, manifest: dict) -> None:
        path = self._manifest_path(bucket)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(manifest, fh)
        os.replace(tmp, path)

    def _remote_sha(self, bucket: str, key: str, etag: str, manifest: dict) -> str | None:
        known = manifest.get(key)
        if known and known["etag"] == etag:
            return known["sha256"]
        result = self._call(f"read metadata of obs://{bucket}/{key}", self.client.getObjectMetadata, bucket, key)
        sha = dict(result.header or []).get("sha256")
        if sha:
            manifest[key] = {"sha256": sha, "size": int(result.body.contentLength), "etag": etag}
        return sha

    # -- public API -------------------------------------------------------------------------

    def put(self, local_path: Path | str, uri: str, progress: Progress | None = None,
            byte_progress: ByteProgress | None = None) -> TransferStats:
        """Upload a file to ``uri`` (``uri + name`` when ``uri`` is a prefix), or a folder
        under ``uri``. Unchanged files are skipped; each upload is verified."""
        bucket, key = _PARSER.parse(uri)
        src = Path(local_path)
        if not src.exists():
            raise UserError(f"cannot upload {src}: no such file or folder", where=uri)
        if src.is_dir():
            base = key if key.endswith("/") or not key else key + "/"
            pairs = sorted((base + p.relative_to(src).as_posix(), p) for p in src.rglob("*") if p.is_file())
        else:
            base = key
            pairs = [(key + src.name if key.endswith("/") or not key else key, src)]
        for k, _ in pairs:
            _PARSER.parse(f"obs://{bucket}/{k}")   # keys built from local names obey the same rules
        self.ensure_bucket(bucket)
        remote = {k: (size, etag) for k, size, etag in self._objects(bucket, base)}
        manifest = self._load_manifest(bucket)
        files = skipped = nbytes = 0
        try:
            for done, (k, file) in enumerate(pairs, 1):
                sha, size = _sha256(file), file.stat().st_size
                there = remote.get(k)
                if there and there[0] == size and self._remote_sha(bucket, k, there[1], manifest) == sha:
                    skipped += 1
                else:
                    manifest[k] = self._upload(bucket, k, file, sha, size, byte_progress)
                    files, nbytes = files + 1, nbytes + size
                if progress:
                    progress(done, len(pairs), k)
        finally:
            self._save_manifest(bucket, manifest)
        return TransferStats(files=files, skipped=skipped, bytes=nbytes)

    def _upload(self, bucket: str, key: str, file: Path, sha: str, size: int,
                byte_progress: ByteProgress | None) -> dict:
        what = f"upload {file} to obs://{bucket}/{key}"
        checkpoint = self.state_dir / "checkpoints" / (hashlib.sha256(f"{bucket}/{key}\0{file}".encode()).hexdigest()
                                                       + ".upload_record")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        # A checkpoint left by a crashed run makes uploadFile continue with the parts still missing.
        self._call(what, self.client.uploadFile, bucket, key, str(file), partSize=self.part_size,
                   enableCheckpoint=True, checkpointFile=str(checkpoint), checkSum=True, metadata={"sha256": sha},
                   progressCallback=byte_progress)
        result = self._call(f"verify obs://{bucket}/{key}", self.client.getObjectMetadata, bucket, key)
        got_size, got_sha = int(result.body.contentLength), dict(result.header or []).get("sha256")
        if got_size != size or got_sha != sha:
            raise BackendError(f"{what}: verification failed (OBS has {got_size} bytes, sha256 {got_sha}; "
                               f"expected {size} bytes, sha256 {sha})")
        return {"sha256": sha, "size": size, "etag": (result.body.etag or "").strip('"')}

    def _keys(self, bucket: str, key: str) -> list[tuple[str, int, str]]:
        """The object ``key`` itself, or everything under it as a folder (local store rules)."""
        if key and not key.endswith("/"):
            exact = [o for o in self._objects(bucket, key) if o[0] == key]
            return exact or list(self._objects(bucket, key + "/"))
        return list(self._objects(bucket, key))

    def get(self, uri: str, local_path: Path | str, progress: Progress | None = None) -> TransferStats:
        """Download an object to the file ``local_path`` or a prefix into that folder;
        unchanged local files are skipped; writes are atomic and verified."""
        bucket, key = _PARSER.parse(uri)
        objects = sorted(self._keys(bucket, key))
        if not objects:
            raise UserError(f"nothing to download: no object or prefix at {uri}")
        dest = Path(local_path)
        single = len(objects) == 1 and objects[0][0] == key
        base = key if key.endswith("/") or not key else key + "/"
        manifest = self._load_manifest(bucket)
        files = skipped = nbytes = 0
        for done, (k, size, etag) in enumerate(objects, 1):
            target = dest if single else dest.joinpath(*k[len(base):].split("/"))
            sha = self._remote_sha(bucket, k, etag, manifest)
            if target.is_file() and target.stat().st_size == size and sha and _sha256(target) == sha:
                skipped += 1
            else:
                self._download(bucket, k, target, size, sha)
                files, nbytes = files + 1, nbytes + size
            if progress:
                progress(done, len(objects), k)
        self._save_manifest(bucket, manifest)
        return TransferStats(files=files, skipped=skipped, bytes=nbytes)

    def _download(self, bucket: str, key: str, target: Path, size: int, sha: str | None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(fd)
        try:
            self._call(f"download obs://{bucket}/{key}", self.client.getObject, bucket, key, downloadPath=tmp)
            got = Path(tmp)
            if got.stat().st_size != size or (sha and _sha256(got) != sha):
                raise BackendError(f"download of obs://{bucket}/{key} to {target} is corrupt (size or sha256 differ)")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)

    def exists(self, uri: str) -> bool:
        bucket, key = _PARSER.parse(uri)
        try:
            return bool(self._keys(bucket, key))
        except MissingBucket:
            return False

    def list(self, prefix_uri: str) -> list[str]:
        bucket, key = _PARSER.parse(prefix_uri)
        scheme = prefix_uri.split("://", 1)[0]
        return [f"{scheme}://{bucket}/{k}" for k, _, _ in sorted(self._keys(bucket, key))]

    def delete(self, prefix_or_uri: str) -> int:
        """Remove an object or everything under a prefix, in batches; 0 when nothing is there."""
        bucket, key = _PARSER.parse(prefix_or_uri)
        try:
            keys = [k for k, _, _ in self._keys(bucket, key)]
        except MissingBucket:       # no bucket: nothing to delete
            return 0
        for start in range(0, len(keys), PAGE):
            batch = keys[start:start + PAGE]
            request = DeleteObjectsRequest(quiet=False, objects=[Object(key=k) for k in batch])
            result = self._call(f"delete {len(batch)} objects under {prefix_or_uri}", self.client.deleteObjects,
                                bucket, request)
            failed = [f"{e.key}: {e.code}" for e in (result.body.error or [])]
            if failed:
                raise BackendError(f"could not delete {len(failed)} objects under {prefix_or_uri}: "
                                   + "; ".join(failed[:5]))
        if keys:
            manifest = self._load_manifest(bucket)
            for k in keys:
                manifest.pop(k, None)
            self._save_manifest(bucket, manifest)
        return len(keys)

    def buckets(self) -> list[str]:
        result = self._call("list OBS buckets", self.client.listBuckets, False)
        return sorted(b.name for b in result.body.buckets or [])

    def folders(self, bucket: str, prefix: str = "") -> list[str]:
        """Common prefixes (``a/``) directly under ``prefix``."""
        out, marker = [], None
        while True:
            result = self._call(f"list obs://{bucket}/{prefix}", self.client.listObjects, bucket,
                                prefix=prefix or None, marker=marker, max_keys=self.page_size, delimiter="/")
            out += [p.prefix for p in result.body.commonPrefixs or []]
            if not result.body.is_truncated:
                return out
            marker = result.body.next_marker or (out[-1] if out else None)
            if marker is None:
                return out

    def https_url(self, uri: str) -> str:
        """The URL form ModelArts v1 expects for ``source_location``."""
        bucket, key = _PARSER.parse(uri)
        parts = urlsplit(self.endpoint)
        if self.path_style:
            return f"{self.endpoint}/{bucket}/{key}"
        return f"{parts.scheme or 'https'}://{bucket}.{parts.netloc}/{key}"
