"""What the predictor front answers: ``Front``, the handler of ``http.HttpConnection``.

Routes: ``POST /`` and ``POST /predict`` -> the JSON the service's ``_postprocess``
returned, with header ``X-Model-Id`` naming the config that served it (the hot path:
no ASGI, no task per request); everything else goes to a FastAPI app through a small ASGI
bridge: ``GET /health`` -> 200 ``{"health": "true"}`` when every worker is loaded and warm,
else 503 with the reason; ``GET /metrics`` (Prometheus text); ``GET /docs`` and
``/openapi.json``; JSON 404/405 for the rest.

Per inference request, decided from the headers alone, before the body is read: 401
(bearer token, when one is set; every path but ``/health``), 405 (not POST), 415 (neither
multipart/form-data nor JSON), 503 ``NOT_READY`` (loading, or no ready worker) or 503
``OVERLOADED`` (every place in the config's queue is taken; ``Retry-After`` = the seconds
the queue needs). Then a place is held while the body arrives, and the raw body goes to a
worker, which parses it (400 for a malformed body or no file in ``images``). A client
that disconnects while its request waits has it dropped, never run. Every error is
``{"error_code", "error_msg"}`` JSON. One access-log line per request (``AccessLog``) and
request metrics for the inference paths.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
import time

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.predictor import protocol
from orchestrator.predictor.http import error_response
from orchestrator.predictor.metrics import CONTENT_TYPE
from orchestrator.predictor.pool import PoolError

log = logging.getLogger("orchestrator.predictor")
INFERENCE_PATHS = ("/", "/predict")
OPEN_PATHS = ("/health",)
MEDIA_TYPES = ("multipart/form-data", "application/json")


class AppState:
    """Whether the front serves yet (set by the server once the first configs are warm)."""

    def __init__(self):
        self.started = False
        self.reason = "loading the model"


class AccessLog:
    """``<time> access METHOD PATH STATUS MSms MODEL`` lines on stdout, written in batches
    (at most ``flush_s`` late, and at exit) instead of one write per request."""

    def __init__(self, stream=None, flush_s: float = 0.2):
        self.stream, self.flush_s = stream or sys.stdout, flush_s
        self._lines: list[str] = []
        self._second, self._stamp = -1, ""

    def line(self, method: str, path: str, status: int, ms: float, model: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        self._lines.append(f"{self._stamp},{int((now - second) * 1000):03d} access {method} {path} {status} "
                           f"{ms:.1f}ms {model}\n")
        if len(self._lines) == 1:
            asyncio.get_running_loop().call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass   # stdout gone (closed pipe): the log is lost, the service is not


class Front:
    def __init__(self, router, state: AppState, metrics, docs_app, *, request_timeout: float,
                 token: str | None = None, access: AccessLog | None = None):
        self.router, self.state, self.metrics, self.docs_app = router, state, metrics, docs_app
        self.request_timeout = request_timeout
        self._expected = token.encode("utf-8") if token else None
        self.access = access or AccessLog()

    # -- http.HttpConnection's handler ------------------------------------------------------
    def begin(self, conn, req) -> bytes | None:
        if self._expected is not None and req.path not in OPEN_PATHS and not self._authorized(req):
            return self._early(req, 401, protocol.UNAUTHORIZED, "missing or wrong bearer token: send "
                               "'Authorization: Bearer <token>'", [(b"www-authenticate", b'Bearer realm="predictor"')])
        if req.path not in INFERENCE_PATHS:
            return None
        if req.method != "POST":
            return self._early(req, 405, protocol.METHOD_NOT_ALLOWED, "Method Not Allowed", [(b"allow", b"POST")])
        media = req.headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if media not in MEDIA_TYPES and not media.endswith("+json"):
            return self._early(req, 415, protocol.UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Type "
                               f"'{media or 'none'}': send multipart/form-data with field 'images' or application/json")
        pool = self.router.pick() if self.state.started else None
        if pool is None:
            reason = self.state.reason if not self.state.started else "no model config has a ready worker"
            return self._early(req, 503, protocol.NOT_READY, reason, [(b"retry-after", b"1")])
        try:
            pool.reserve()  # before reading: a full queue must not hold 12 MB bodies in memory
        except PoolError as exc:
            return self._early(req, exc.status, exc.code, exc.message, _headers(pool, exc))
        req.context = pool
        return None

    def complete(self, conn, req) -> None:
        if req.path not in INFERENCE_PATHS:
            task = asyncio.ensure_future(self._asgi(conn, req))
            req.context = task
            return
        pool = req.context
        pool.unreserve()
        payload = ("raw", req.headers.get(b"content-type", b"").decode("latin-1"), b"".join(req.body))
        req.body = None

        def done(outcome) -> None:
            if isinstance(outcome, PoolError):
                self._answer(conn, req, outcome.status, protocol.error_body(outcome.code, outcome.message),
                             _headers(pool, outcome), pool.config.id)
            else:
                self._answer(conn, req, outcome[0], outcome[1], [(b"x-model-id", pool.model_header)], pool.config.id)

        try:
            req.context = (pool, pool.enqueue(payload, self.request_timeout, done))
        except PoolError as exc:
            done(exc)

    def abort(self, req) -> None:
        """The client went away before its answer: free its place, drop its request if it
        still waits (a closed connection must not take a worker from a live one)."""
        context = req.context
        if isinstance(context, tuple):
            pool, job = context
            pool.cancel(job)
        elif isinstance(context, asyncio.Task):
            context.cancel()
        elif context is not None:
            context.unreserve()

    # -- answers ----------------------------------------------------------------------------
    def _authorized(self, req) -> bool:
        scheme, _, given = req.headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._expected)

    def _early(self, req, status: int, code: str, message: str, headers=()) -> bytes:
        model = next((v.decode() for k, v in headers if k == b"x-model-id"), "-")
        self._observe(req, status, model)
        return error_response(status, code, message, headers)

    def _answer(self, conn, req, status: int, body: bytes, headers, model: str) -> None:
        if not req.answered:
            self._observe(req, status, model)
            conn.respond(req, status, body, headers)

    def _observe(self, req, status: int, model: str) -> None:
        seconds = time.perf_counter() - req.started
        if self.metrics is not None and req.method == "POST" and req.path in INFERENCE_PATHS:
            self.metrics.observe_request(model, status, seconds)
        self.access.line(req.method, req.path, status, seconds * 1000.0, model)

    async def _asgi(self, conn, req) -> None:
        """Run the FastAPI app for one request whose body is complete, answer in one write."""
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": req.method, "scheme": "http", "path": req.path, "raw_path": req.path.encode("latin-1"),
                 "query_string": req.query, "root_path": "", "headers": req.raw_headers,
                 "server": conn.transport.get_extra_info("sockname")[:2], "client": (conn.peer or ("", 0))[:2]}
        body, sent = b"".join(req.body), False
        start: dict = {}
        chunks: list[bytes] = []

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Future()  # no disconnect event: the bridge is cancelled instead

        async def send(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.docs_app(scope, receive, send)
        except Exception:   # the answer must still come, or the client would wait for ever
            log.exception("the docs app failed on %s %s", req.method, req.path)
            start, chunks = {"status": 500, "headers": [(b"content-type", b"application/json")]}, [
                protocol.error_body(protocol.HANDLER_ERROR, "internal error in the predictor front")]
        headers = [(k.lower(), v) for k, v in start.get("headers", ()) if k.lower() not in (b"content-length",
                                                                                           b"content-type")]
        content_type = next((v for k, v in start.get("headers", ()) if k.lower() == b"content-type"), b"text/plain")
        status = start.get("status", 500)
        payload = b"" if req.method == "HEAD" else b"".join(chunks)
        self._observe(req, status, "-")
        conn.respond(req, status, payload, headers, content_type=content_type)


def _headers(pool, exc: PoolError) -> list:
    model = [(b"x-model-id", pool.model_header)]
    return model + [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after else model


class ErrorBody(BaseModel):
    error_code: str
    error_msg: str


_PREDICT_DOC = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "string", "format": "binary", "description": "the file(s) to predict on"}}}},
        "application/json": {"schema": {"type": "object", "description": "passed to _preprocess as a dict"}}}},
}
_ERRORS = {400: "malformed body, no `images` file, or input the service rejected", 401: "bearer token missing or wrong",
           405: "not POST", 413: "body over the size limit", 415: "neither multipart/form-data nor JSON",
           500: "the service raised, or its worker died", 503: "not ready, or overloaded (see Retry-After)",
           504: "over the per-request time limit"}


def _openapi(app: FastAPI):
    def schema() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ErrorBody.model_json_schema()
            ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            responses = {"200": {"description": "what the service's _postprocess returned, as JSON; header "
                                                "X-Model-Id names the model config that served it"},
                         **{str(code): {"description": text, "content": ref} for code, text in _ERRORS.items()}}
            for path in INFERENCE_PATHS:
                doc["paths"][path] = {"post": {"summary": "Predict", "operationId": f"predict{path.replace('/', '_')}",
                                               **_PREDICT_DOC, "responses": responses}}
            app.openapi_schema = doc
        return app.openapi_schema
    return schema


def docs_app(router, state: AppState, metrics, *, name: str) -> FastAPI:
    """The FastAPI app of every route but the inference paths: health, metrics, docs."""
    app = FastAPI(title=f"predictor {name}", version="1",
                  description="ModelArts-compatible MXNet predictor: POST / with multipart `images` or JSON.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        code = protocol.BY_STATUS.get(exc.status_code, protocol.BAD_REQUEST)
        return Response(protocol.error_body(code, str(exc.detail)), status_code=exc.status_code,
                        media_type="application/json")

    @app.get("/health", responses={503: {"model": ErrorBody, "description": "not ready"}})
    async def health():
        """Readiness: every worker of every weighted config loaded and answered a warm-up."""
        ready, reason = router.readiness() if state.started else (False, state.reason)
        if ready:
            return JSONResponse({"health": "true"})
        return JSONResponse({"health": "false", "error_code": protocol.NOT_READY, "error_msg": reason},
                            status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics():
        """Prometheus text format (see orchestrator/predictor/metrics.py)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.openapi = _openapi(app)
    return app


__all__ = ["AccessLog", "AppState", "Front", "docs_app"]
