"""uvicorn's httptools protocol with the limits a public socket needs.

``guarded_protocol(header_timeout, body_timeout, max_connections)`` returns the class to
pass as ``uvicorn.Config(http=...)``. Per connection:

* The request line and headers must be complete within ``header_timeout`` s of the
  connection opening or of the first byte of the next request (slow headers): else a JSON
  408 and the connection is closed. An open connection that never sends a byte is closed
  the same way.
* The body must be complete within ``body_timeout`` s of the end of the headers (slow
  bodies): else the connection is closed (the app sees a disconnect and drops the request).
* Beyond ``max_connections`` open connections a new one gets a JSON 503 and is closed.
* A request the HTTP parser refuses (e.g. a bad ``Content-Length``) gets a JSON 400.

Idle keep-alive connections between requests are left to uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from orchestrator.predictor import protocol


def _response(status: int, code: str, message: str) -> bytes:
    body = protocol.error_body(code, message)
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_connections = 512

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._guard = None
        if len(self.connections) > self.max_connections:
            self._refuse(503, protocol.OVERLOADED, f"more than {self.max_connections} open connections; retry later")
            return
        self._arm(self.header_timeout, self._headers_late)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._guard is None:
            self._arm(self.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, protocol.BAD_REQUEST, f"{msg.rstrip('.')}: malformed request line, header or "
                                                "Content-Length")

    # -- timers ---------------------------------------------------------------------------
    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if getattr(self, "_guard", None) is not None:
            self._guard.cancel()
            self._guard = None

    def _headers_late(self) -> None:
        self._guard = None
        self._refuse(408, protocol.TIMEOUT, f"request headers not received within {self.header_timeout:g} s")

    def _body_late(self) -> None:
        self._guard = None
        if not self.transport.is_closing():
            self.logger.warning("closing a connection: request body not received within %g s", self.body_timeout)
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_response(status, code, message))
            self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedProtocol", (_GuardedProtocol,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections})
