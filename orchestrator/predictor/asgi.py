"""Pure-ASGI wrappers of the predictor front: observation, bearer token, body-size limit.

* ``Observe(app, metrics)``: one access-log line per HTTP request, ``METHOD PATH STATUS
  MSms [model]``, on the ``orchestrator.predictor.access`` logger (never the body, the
  query or the headers); for inference paths it also counts the request by status and
  model (the app's ``X-Model-Id`` response header) and observes its latency.
* ``BearerAuth(app, token)``: with a token, every path except ``/health`` needs
  ``Authorization: Bearer <token>`` (constant-time comparison) or gets a JSON 401 with
  ``WWW-Authenticate: Bearer``; the body is not read. Without a token it is a no-op.
* ``BodyLimit(app, max_bytes)``: a declared ``Content-Length`` over the limit is answered
  413 before the app runs (the body is never read into memory); otherwise received bytes
  are counted and the ``receive`` that crosses the limit raises ``BodyTooLarge`` (the app
  maps it to 413), which also covers chunked uploads.
"""

from __future__ import annotations

import hmac
import logging
import time

from orchestrator.predictor import protocol

access_log = logging.getLogger("orchestrator.predictor.access")
INFERENCE_PATHS = ("/", "/predict")
OPEN_PATHS = ("/health",)


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


async def send_error(send, status: int, code: str, message: str, headers=()) -> None:
    body = protocol.error_body(code, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, 413, protocol.PAYLOAD_TOO_LARGE,
                                    f"request body is {int(declared)} bytes; the limit is {self.max_bytes}")
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


class BearerAuth:
    def __init__(self, app, token: str | None):
        self.app = app
        self._expected = token.encode("utf-8") if token else None

    async def __call__(self, scope, receive, send):
        if self._expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._expected):
            return await self.app(scope, receive, send)
        await send_error(send, 401, protocol.UNAUTHORIZED,
                         "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                         headers=[(b"www-authenticate", b'Bearer realm="predictor"')])


class Observe:
    def __init__(self, app, metrics=None):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, model = time.perf_counter(), 500, "-"  # 500 if the app dies before answering

        async def recording_send(message):
            nonlocal status, model
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key.lower() == b"x-model-id":
                        model = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - start
            if self.metrics is not None and scope["method"] == "POST" and scope["path"] in INFERENCE_PATHS:
                self.metrics.observe_request(model, status, seconds)
            access_log.info("%s %s %d %.1fms %s", scope["method"], scope["path"], status, seconds * 1000.0, model)
