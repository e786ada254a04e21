"""HTTP/1.1 connections of the predictor front: asyncio + httptools, no ASGI on the hot path.

``HttpServer(handler, limits)`` is the protocol factory for ``loop.create_server``; it
makes one ``HttpConnection`` per accepted connection. Per connection:

* Requests are parsed by httptools (llhttp) and answered in order, one at a time
  (pipelined requests wait, and reading pauses while they do).
* ``handler.begin(conn, request)`` runs when the headers are complete and may answer at
  once, before the body is read (401, 405, 413, 503 ...): the connection is then closed
  (after the answers of pipelined requests ahead of it). Otherwise ``Expect: 100-continue`` is honoured
  and the body is collected. ``handler.complete(conn, request)`` runs with the body and
  answers with ``conn.respond`` (now or later, exactly once). ``handler.abort(request)``
  runs when the connection is lost before its request was answered.
* Limits (``Limits``): request line and headers within ``header_timeout`` s of the
  connection opening or of the next request's first byte, and at most ``max_header_bytes``
  (else a JSON 408 / 400 and close; a connection that never sends a byte gets the 408 too);
  the body within ``body_timeout`` s of the headers (else the connection is closed) and at
  most ``max_body_bytes`` as it arrives, chunked or not (else a JSON 413 and close); idle
  keep-alive connections are closed after ``keep_alive`` s; beyond ``max_connections`` a
  new connection gets a JSON 503 and is closed. A request the parser refuses (a bad
  ``Content-Length``, a malformed request line, an upgrade) gets a JSON 400 and is closed.
  These refusals are the connection's own: the handler never sees their requests.
* A handler that raises costs its request a JSON 500, never the connection's state.

Deadlines are plain numbers updated per request; one timer per connection looks at them
lazily, so a request costs no timer bookkeeping.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from dataclasses import dataclass

import httptools

from orchestrator.predictor import protocol

log = logging.getLogger("orchestrator.predictor")

STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
JSON = b"application/json"


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 200.0          # ModelArts asks for long keep-alive
    max_connections: int = 512
    max_header_bytes: int = 65536
    max_body_bytes: int = 12 << 20


class Request:
    """One parsed request. ``headers``: lower-case names -> values (the last one wins);
    ``raw_headers``: every (name, value) in order. ``context``: the handler's own slot."""

    __slots__ = ("method", "path", "query", "raw_headers", "headers", "body", "size", "keep_alive", "started",
                 "answered", "context")

    def __init__(self, started: float):
        self.method = self.path = ""
        self.query = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.started = started
        self.answered = False
        self.context = None


def error_response(status: int, code: str, message: str, headers=()) -> bytes:
    """A whole JSON error answer that closes the connection (``headers``: extra (name, value) pairs)."""
    body = protocol.error_body(code, message)
    return b"".join([STATUS_LINES[status], b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
                     *(name + b": " + value + b"\r\n" for name, value in headers),
                     b"connection: close\r\n\r\n", body])


class HttpServer:
    """Protocol factory; ``connections`` holds the open ones (for the cap and for shutdown)."""

    def __init__(self, handler, limits: Limits):
        self.handler, self.limits = handler, limits
        self.connections: set[HttpConnection] = set()

    def __call__(self) -> "HttpConnection":
        return HttpConnection(self)

    def close_idle(self) -> None:
        """Close every connection with no request in progress (shutdown)."""
        for conn in list(self.connections):
            conn.close_when_idle()

    def busy(self) -> bool:
        return any(conn.current is not None for conn in self.connections)


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer):
        self.server, self.limits, self.handler = server, server.limits, server.handler
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.reading: Request | None = None     # the request being parsed
        self.current: Request | None = None     # the request being answered
        self.waiting: list[Request] = []        # pipelined requests behind it
        self.deadline, self.waiting_for = 0.0, None   # "headers" | "body" | "idle" | None
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = self._header_size = 0
        self._url = b""
        self._closing_when_idle = False
        self._last_answer: bytes | None = None   # an early refusal owed after the requests ahead of it
        self.peer = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.server.connections.add(self)
        if len(self.server.connections) > self.limits.max_connections:
            self.refuse(503, protocol.OVERLOADED, f"more than {self.limits.max_connections} open connections; "
                                                  "retry later")
            return
        self._expect("headers", self.limits.header_timeout)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.waiting_for = None
        if self._timer is not None:
            self._timer.cancel()
        for request in [self.reading, self.current, *self.waiting]:
            if request is not None and not request.answered:
                request.answered = True
                self.handler.abort(request)
        self.reading = self.current = None
        self.waiting = []

    def data_received(self, data: bytes) -> None:
        self._header_bytes += len(data)   # reset once headers are complete
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse(400, protocol.BAD_REQUEST, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self.transport.is_closing():
                self.refuse(400, protocol.BAD_REQUEST, f"{str(exc).rstrip('.') or 'invalid request'}: malformed "
                                                       "request line, header or Content-Length")
            return
        if self._header_bytes > self.limits.max_header_bytes and self.waiting_for == "headers":
            self.refuse(400, protocol.BAD_REQUEST, f"request line and headers larger than "
                                                   f"{self.limits.max_header_bytes} bytes")

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.reading = Request(time.perf_counter())
        self._url, self._header_bytes, self._header_size = b"", 0, 0
        if self.waiting_for != "headers":   # a new connection's first request keeps its deadline
            self._expect("headers", self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        pair = (name.lower(), value.rstrip(b" \t"))
        self.reading.raw_headers.append(pair)
        self.reading.headers[pair[0]] = pair[1]

    def on_headers_complete(self) -> None:
        request, self._header_bytes = self.reading, 0
        if self._header_size + len(self._url) > self.limits.max_header_bytes:
            self.reading = None
            return self.refuse(400, protocol.BAD_REQUEST, f"request line and headers larger than "
                                                          f"{self.limits.max_header_bytes} bytes")
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self.reading = None
            return self.refuse(400, protocol.BAD_REQUEST, "malformed request target")
        request.method, request.path, request.query = self.parser.get_method().decode("latin-1"), \
            url.path.decode("latin-1"), url.query or b""
        request.keep_alive = self.parser.should_keep_alive()
        declared = request.headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            self.reading = None
            return self.refuse(413, protocol.PAYLOAD_TOO_LARGE, f"request body is {int(declared)} bytes; the limit "
                                                                f"is {self.limits.max_body_bytes}")
        self._expect("body", self.limits.body_timeout)
        try:
            early = self.handler.begin(self, request)
        except Exception:
            log.exception("the predictor front failed on a request's headers")
            early = error_response(500, protocol.HANDLER_ERROR, "internal error in the predictor front")
        if early is not None:
            request.answered = True
            self.reading = None
            self.waiting_for = None
            if self.current is None:
                self.transport.write(early)
                self.transport.close()   # the body, if any, is not read
            else:   # pipelined behind requests still to answer: theirs go first, then this, then close
                self._last_answer = early
                self.transport.pause_reading()
        elif request.headers.get(b"expect", b"").lower() == b"100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self.reading
        if request is None:
            return   # answered before its body
        request.size += len(body)
        if request.size > self.limits.max_body_bytes:
            self.reading = None
            return self.refuse(413, protocol.PAYLOAD_TOO_LARGE, f"request body larger than "
                                                                f"{self.limits.max_body_bytes} bytes")
        request.body.append(body)

    def on_message_complete(self) -> None:
        request, self.reading = self.reading, None
        if request is None:
            return   # answered before its body
        self.waiting_for = None
        if self.current is None:
            self._start(request)
        else:
            self.waiting.append(request)
            self.transport.pause_reading()

    # -- answering ---------------------------------------------------------------------------
    def _start(self, request: Request) -> None:
        self.current = request
        try:
            self.handler.complete(self, request)
        except Exception:   # a bug must cost one request, not the connection's protocol state
            log.exception("the predictor front failed on a request")
            self.respond(request, 500, protocol.error_body(protocol.HANDLER_ERROR, "internal error in the predictor "
                                                                                   "front"))

    def respond(self, request: Request, status: int, body: bytes, headers=(), content_type: bytes = JSON) -> None:
        """Answer ``request`` (once; later calls and calls after a disconnect do nothing)."""
        if request.answered:
            return
        request.answered = True
        keep = request.keep_alive and not self._closing_when_idle
        head = [STATUS_LINES[status], b"content-type: ", content_type, b"\r\ncontent-length: %d\r\n" % len(body)]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n" if keep else b"connection: close\r\n\r\n")
        self.transport.writelines([b"".join(head), body])
        if request is not self.current:
            return
        self.current = None
        if not keep:
            self.transport.close()
        elif self.waiting:
            self._start(self.waiting.pop(0))
            if not self.waiting and self._last_answer is None:
                self.transport.resume_reading()
        elif self._last_answer is not None:
            self.transport.write(self._last_answer)
            self.transport.close()
        elif self.reading is None:
            self._expect("idle", self.limits.keep_alive)

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer with an error the connection itself decided on, and close."""
        self.waiting_for = None
        if not self.transport.is_closing():
            self.transport.write(error_response(status, code, message))
            self.transport.close()

    def close_when_idle(self) -> None:
        self._closing_when_idle = True
        if self.current is None and self.transport is not None:
            self.transport.close()

    # -- deadlines -----------------------------------------------------------------------------
    def _expect(self, what: str, seconds: float) -> None:
        self.deadline, self.waiting_for = self.loop.time() + seconds, what
        if self._timer is None:
            self._timer = self.loop.call_at(self.deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.waiting_for is None or self.transport.is_closing():
            return
        if self.loop.time() < self.deadline:
            self._timer = self.loop.call_at(self.deadline, self._check)
        elif self.waiting_for == "headers":
            self.refuse(408, protocol.TIMEOUT, f"request headers not received within "
                                               f"{self.limits.header_timeout:g} s")
        else:
            if self.waiting_for == "body":
                log.warning("closing a connection: request body not received within %g s", self.limits.body_timeout)
            self.waiting_for = None
            self.transport.close()
