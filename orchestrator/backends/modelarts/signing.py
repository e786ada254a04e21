"""SDK-HMAC-SHA256, the AK/SK request signature of Huawei Cloud APIs, on both sides.

``sign`` is what ``huaweicloudsdkcore``'s signer does (the tests check both give the same
``Authorization``), so our own v1 REST calls and predictions look exactly like the SDK's.
``verify`` is the gateway's side, used by the emulator. Pure functions, no I/O; the
secret key only ever enters ``hmac``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW_S = 15 * 60            # the gateway refuses requests dated more than 15 minutes off
_AUTH_RE = re.compile(r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$")


def _enc(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    uri = "/".join(_enc(seg) for seg in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted((str(k), str(v)) for k, v in pairs))


def payload_hash(body: bytes, headers: Mapping[str, str]) -> str:
    if not body:
        return EMPTY_SHA256
    declared = {k.lower(): v for k, v in headers.items()}.get("x-sdk-content-sha256")
    return declared or hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                   signed: list[str], body: bytes, date: str) -> str:
    lower = {k.lower(): str(v).strip() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lower.get(name, '')}\n" for name in signed)
    request = "\n".join([method.upper(), canonical_uri(path), canonical_query(query), canonical_headers,
                         ";".join(signed), payload_hash(body, headers)])
    return f"{ALGORITHM}\n{date}\n{hashlib.sha256(request.encode()).hexdigest()}"


def _signature(sk: str, text: str) -> str:
    return hmac.new(sk.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, ak: str, sk: str,
         query: Iterable[tuple[str, str]] = (), now: datetime | None = None) -> dict[str, str]:
    """Headers to send: ``headers`` plus ``X-Sdk-Date``, ``Host`` and ``Authorization``.
    Every header given is signed (as the SDK does), except names containing ``_``."""
    parts = urlsplit(url)
    out = dict(headers)
    if not any(k.lower() == "x-sdk-date" for k in out):
        out["X-Sdk-Date"] = (now or datetime.now(timezone.utc)).strftime(DATE_FORMAT)
    if not any(k.lower() == "host" for k in out):
        out["Host"] = parts.netloc
    date = next(v for k, v in out.items() if k.lower() == "x-sdk-date")
    signed = sorted(k.lower() for k in out if "_" not in k)
    text = string_to_sign(method, parts.path or "/", query, out, signed, body, date)
    out["Authorization"] = f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={_signature(sk, text)}"
    return out


def verify(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str], body: bytes,
           secret_for: Callable[[str], str | None], now: datetime | None = None) -> str | None:
    """``None`` when the request is correctly signed by a known access key, else why not
    (for logs; the gateway's answer to the client is always the same 401)."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH_RE.match(lower.get("authorization", "").strip())
    if not match:
        return "no SDK-HMAC-SHA256 Authorization header"
    ak, signed, given = match.group(1), match.group(2).split(";"), match.group(3)
    sk = secret_for(ak)
    if sk is None:
        return "unknown access key"
    if "x-sdk-date" not in signed or "host" not in signed:
        return "X-Sdk-Date and Host must be signed"
    try:
        date = datetime.strptime(lower.get("x-sdk-date", ""), DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return "X-Sdk-Date is not in the yyyymmddThhmmssZ format"
    if abs(((now or datetime.now(timezone.utc)) - date).total_seconds()) > MAX_SKEW_S:
        return "X-Sdk-Date is more than 15 minutes off"
    if any(name not in lower for name in signed):
        return "a signed header is missing"
    expected = _signature(sk, string_to_sign(method, path, query, lower, signed, body, lower["x-sdk-date"]))
    return None if hmac.compare_digest(expected, given) else "signature mismatch"
