"""The emulator's HTTP front: the API gateway's checks, then ModelArts' routes.

Every request must carry a valid SDK-HMAC-SHA256 signature by the emulator's access key
(else 401 ``APIGW.0301``, as the gateway answers); unknown routes get 404 ``APIGW.0101``.
Handlers return ``(status, json)`` or raise ``ApiError``; a bug answers 500 with a JSON
body and the traceback goes to the emulator's log (stderr). Secrets never reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from orchestrator.backends.modelarts import signing

from .records import ApiError, Request

log = logging.getLogger("orchestrator.emulator")
Handler = Callable[[Request], tuple]


class Router:
    def __init__(self, ak: str, sk: str):
        self._ak, self._sk = ak, sk
        self.routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self.routes.append((method, re.compile(f"^{regex}/?$"), handler))

    def secret_for(self, ak: str) -> str | None:
        return self._sk if ak == self._ak else None

    def handle(self, req: Request) -> tuple[int, bytes, dict]:
        """(status, body, headers) for one request; never raises."""
        try:
            why = signing.verify(req.method, req.path, req.query, req.headers, req.body, self.secret_for)
            if why:
                log.warning("%s %s refused: %s", req.method, req.path, why)
                raise ApiError(401, "APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail")
            for method, regex, handler in self.routes:
                match = regex.match(req.path)
                if match and method == req.method:
                    req.params = match.groupdict()
                    result = handler(req)
                    if len(result) == 3:          # a raw answer (predictions)
                        return result
                    status, body = result
                    return status, (json.dumps(body).encode() if body is not None else b""), _JSON
            raise ApiError(404, "APIGW.0101", "The API does not exist or has not been published in the environment")
        except ApiError as exc:
            return exc.status, json.dumps({"error_code": exc.code, "error_msg": exc.message}).encode(), _JSON
        except Exception:  # noqa: BLE001 - a bug must answer, not hang the client
            log.error("internal error on %s %s\n%s", req.method, req.path, traceback.format_exc())
            body = {"error_code": "ModelArts.0001", "error_msg": "Internal error of the emulator (see its log)."}
            return 500, json.dumps(body).encode(), _JSON


_JSON = {"Content-Type": "application/json"}


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ModelArtsEmulator/1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = Request(self.command, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, body)
        status, data, headers = self.server.router.handle(req)
        self.send_response(status)
        for name, value in {**headers, "X-Request-Id": uuid.uuid4().hex}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, fmt: str, *args) -> None:   # one line per request, never a header or a body
        log.info("%s %s", self.address_string(), fmt % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, router: Router):
        super().__init__((host, port), _HTTPHandler)
        self.router = router
