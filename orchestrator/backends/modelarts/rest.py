"""Signed REST calls (ModelArts v1 models and services, predictions) and the retry policy
shared with the SDK calls.

``RestClient.call`` blocks for at most ``timeout`` per attempt; throttling (429,
APIGW.0308), 5xx answers and connection failures are retried ``retries`` times with
exponential backoff and jitter; any other error answer is raised at once, explained by
``errors.explain``. Successful answers are parsed JSON (``{}`` for an empty body).
"""

from __future__ import annotations

import json
import random
import time
from typing import Callable, TypeVar
from urllib.parse import urlencode

import requests

from . import signing
from .errors import CloudError, explain, retryable

T = TypeVar("T")


class Retry:
    """Backoff policy: ``attempts`` tries in all, sleeping ``base * 2**n`` (+ up to 50 %
    jitter, at most ``cap``) between them."""

    def __init__(self, attempts: int = 5, base: float = 0.5, cap: float = 20.0, sleep=time.sleep):
        self.attempts, self.base, self.cap, self.sleep = max(1, attempts), base, cap, sleep

    def run(self, fn: Callable[[], T], should_retry: Callable[[Exception], bool]) -> T:
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - the predicate decides, everything else re-raises
                if attempt == self.attempts - 1 or not should_retry(exc):
                    raise
            delay = min(self.cap, self.base * 2 ** attempt)
            self.sleep(delay * (1 + random.random() / 2))
        raise AssertionError("unreachable")


class Transient(Exception):
    """Wraps an error that a retry may cure."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class RestClient:
    """AK/SK-signed JSON calls to one endpoint; holds a connection pool, no other state."""

    def __init__(self, endpoint: str, project_id: str, ak: str, sk: str, *, timeout: tuple[float, float] = (5, 60),
                 retry: Retry | None = None, verify_ssl: bool = True, credentials_hint: str = "the AK/SK"):
        self.endpoint, self.project_id = endpoint.rstrip("/"), project_id
        self._ak, self._sk = ak, sk
        self.timeout, self.retry, self.verify_ssl = timeout, retry or Retry(), verify_ssl
        self.credentials_hint = credentials_hint
        self.session = requests.Session()
        self.session.trust_env = False     # a proxy from the environment must not see signed calls to 127.0.0.1

    def __repr__(self) -> str:            # never show the keys
        return f"RestClient({self.endpoint!r}, project {self.project_id!r})"

    def call(self, method: str, path: str, what: str, *, body: dict | None = None,
             query: dict | None = None) -> dict:
        """``path`` may contain ``{project_id}``. Returns the answer's JSON object."""
        url = self.endpoint + path.format(project_id=self.project_id)
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json;charset=utf-8", "X-Project-Id": self.project_id}
        resp = self.send(method, url, what, data=data, headers=headers, query=query)
        if resp.status_code >= 300:
            raise self.error(resp, what)
        try:
            return resp.json() if resp.content.strip() else {}
        except ValueError:
            raise CloudError(f"{what}: the answer is not JSON (HTTP {resp.status_code}): {resp.text[:200]}") from None

    def send(self, method: str, url: str, what: str, *, data: bytes = b"", headers: dict | None = None,
             query: dict | None = None, retry: bool = True) -> requests.Response:
        """One signed request (retried when transient); returns the final response, any status."""
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        full = url + ("?" + urlencode(pairs) if pairs else "")

        def attempt() -> requests.Response:
            signed = signing.sign(method, url, headers or {}, data, self._ak, self._sk, query=pairs)
            try:
                resp = self.session.request(method, full, data=data or None, headers=signed, timeout=self.timeout,
                                            verify=self.verify_ssl, allow_redirects=False)
            except requests.RequestException as exc:
                raise Transient(CloudError(f"{what}: cannot reach {self.endpoint} ({type(exc).__name__}: "
                                            f"{_short(exc)})")) from None
            if retry and retryable(resp.status_code, _code(resp)):
                raise Transient(self.error(resp, what))
            return resp

        try:
            return self.retry.run(attempt, lambda exc: isinstance(exc, Transient))
        except Transient as exc:
            raise exc.error from None

    def error(self, resp: requests.Response, what: str) -> Exception:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = body.get("error_msg") or body.get("error_message") or body.get("message") or resp.text[:300]
        return explain(resp.status_code, _code(resp), message, what, credentials=self.credentials_hint,
                       request_id=resp.headers.get("X-Request-Id"))


def _code(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error_code") if isinstance(body, dict) else None


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
