"""What the emulator serves: JSON records on disk, the errors it answers, small helpers."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator import files

RUN_ID = re.compile(r"\d{6}-\d{6}-[0-9a-f]{4}")
# Flavours the emulator accepts (the design's list plus the free ones); others are refused
# the way ModelArts refuses an unknown flavour. ``--flavors`` replaces the list.
FLAVORS = ("modelarts.vm.cpu.2u", "modelarts.vm.cpu.8u", "modelarts.vm.cpu.free", "modelarts.vm.gpu.free",
           "modelarts.vm.gpu.p4", "modelarts.vm.gpu.t4", "modelarts.vm.gpu.p100", "modelarts.vm.gpu.v100",
           "modelarts.bm.gpu.v100", "modelarts.p3.large.public.free")


class ApiError(Exception):
    """An error answer: HTTP status and ModelArts' ``{"error_code", "error_msg"}`` body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]          # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)   # from the route

    def json(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "ModelArts.0101", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "ModelArts.0101", "The request body must be a JSON object.")
        return data

    def arg(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.query if k == name), default)


class Records:
    """One JSON file per resource under ``folder``; atomic writes, a lock per store."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    def save(self, rid: str, record: dict) -> dict:
        with self.lock:
            files.write_json(self.folder / f"{rid}.json", record)
        return record

    def get(self, rid: str) -> dict | None:
        return files.read_json(self.folder / f"{rid}.json") if re.fullmatch(r"[\w-]+", rid) else None

    def load(self, rid: str, missing: ApiError) -> dict:
        record = self.get(rid)
        if record is None:
            raise missing
        return record

    def update(self, rid: str, **changes) -> dict:
        with self.lock:
            record = files.read_json(self.folder / f"{rid}.json")
            if record is None:          # deleted meanwhile
                return {}
            record.update(changes)
            return self.save(rid, record)

    def all(self) -> list[dict]:
        found = (files.read_json(p) for p in sorted(self.folder.glob("*.json")))
        return sorted((r for r in found if r), key=lambda r: r.get("created_ms", 0))

    def delete(self, rid: str) -> None:
        with self.lock:
            (self.folder / f"{rid}.json").unlink(missing_ok=True)


def now_ms() -> int:
    return int(time.time() * 1000)


def require(body: dict, *names: str) -> None:
    for name in names:
        if body.get(name) in (None, "", []):
            raise ApiError(400, "ModelArts.0101", f"Parameter {name} is required.")


def page(items: list, req: Request, default_limit: int = 1000) -> list:
    """``offset`` is a page index and ``limit`` the page size, as in ModelArts' list APIs."""
    try:
        offset, limit = int(req.arg("offset", "0")), int(req.arg("limit", str(default_limit)))
    except ValueError:
        raise ApiError(400, "ModelArts.0101", "offset and limit must be integers.") from None
    return items[offset * limit:(offset + 1) * limit]


def s3_uri(location: str, obs_endpoint: str) -> str:
    """The ``obs://bucket/key`` of an OBS location in any form ModelArts accepts:
    ``/bucket/key``, ``obs://bucket/key``, ``s3://...``, or an OBS URL (virtual-host
    ``https://bucket.obs.../key`` or path style ``<obs endpoint>/bucket/key``)."""
    if location.startswith(("obs://", "s3://")):
        return "obs://" + location.split("://", 1)[1]
    if location.startswith("/"):
        return "obs:/" + location
    parts, endpoint = urlsplit(location), urlsplit(obs_endpoint)
    if parts.scheme in ("http", "https"):
        if parts.netloc == endpoint.netloc:
            return "obs:/" + parts.path
        return f"obs://{parts.netloc.split('.', 1)[0]}{parts.path}"
    raise ApiError(400, "ModelArts.3572", f"Invalid OBS URL {location}.")
