"""Pure-ASGI wrappers of the predictor front: body-size limit and access log.

* ``BodyLimit(app, max_bytes)``: a declared ``Content-Length`` over the limit is answered
  413 before the app runs (the body is never read into memory); otherwise received bytes
  are counted and the ``receive`` that crosses the limit raises ``BodyTooLarge`` (the app
  maps it to 413), which also covers chunked uploads.
* ``AccessLog(app)``: one line per HTTP request, ``METHOD PATH STATUS MSms``, on the
  ``orchestrator.predictor.access`` logger (stdout). Never the body, never the query.
"""

from __future__ import annotations

import logging
import time

from orchestrator.predictor import protocol

access_log = logging.getLogger("orchestrator.predictor.access")


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


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500  # 500 if the app dies before answering

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status,
                            (time.perf_counter() - start) * 1000.0)
