"""HTTP surface of the predictor (FastAPI), wired to a ``Router`` of worker pools.

Routes: ``GET /health`` -> 200 ``{"health": "true"}`` when every worker is loaded and
warm, else 503 with the reason; ``POST /`` and ``POST /predict`` -> the JSON the service's
``_postprocess`` returned, with header ``X-Model-Id`` naming the config that served it
(``Predict``, a plain ASGI endpoint); ``GET /metrics`` (Prometheus text); ``GET /docs``
and ``/openapi.json`` (FastAPI).

Request bodies: ``multipart/form-data`` with at least one file in field ``images`` (or in
the field named by the config's ``input_data_name``), or ``application/json`` holding an
object. Every error is ``{"error_code", "error_msg"}`` JSON: 400 malformed body / missing
field / bad input, 401 bearer token, 404/405 unknown route, 413 body over the limit, 415
other content types, 500 service exception or dead worker, 503 not ready or overloaded
(``Retry-After``: 1, or the seconds the queue needs to drain), 504 over the request timeout. The front never imports mxnet.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.predictor import protocol
from orchestrator.predictor.asgi import INFERENCE_PATHS, BearerAuth, BodyLimit, BodyTooLarge, Observe, send_error
from orchestrator.predictor.metrics import CONTENT_TYPE
from orchestrator.predictor.payload import Rejected, parse_payload
from orchestrator.predictor.pool import PoolError

log = logging.getLogger("orchestrator.predictor")


class AppState:
    """Whether the front serves yet (set by the server once the first configs are warm)."""

    def __init__(self):
        self.started = False
        self.reason = "loading the model"


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


def error(status: int, code: str, message: str) -> Response:
    return Response(protocol.error_body(code, message), status_code=status, media_type="application/json")


class Predict:
    """ASGI endpoint of ``POST /`` and ``POST /predict``: the hot path, kept out of FastAPI's
    per-request routing and dependency machinery (its OpenAPI entry is added to the schema)."""

    def __init__(self, router, state: AppState, request_timeout: float):
        self.router, self.state, self.request_timeout = router, state, request_timeout

    async def __call__(self, scope, receive, send):
        pool = self.router.pick() if self.state.started else None
        if pool is None:
            reason = self.state.reason if not self.state.started else "no model config has a ready worker"
            return await send_error(send, 503, protocol.NOT_READY, reason, [(b"retry-after", b"1")])
        model = [(b"x-model-id", pool.config.id.encode())]
        try:
            pool.reserve()  # before reading: a full queue must not hold 12 MB bodies in memory
            try:
                body = await _read_body(receive)
                if body is None:
                    return  # the client went away
                content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
                payload = parse_payload(content_type, body, pool.file_fields)
            finally:
                pool.unreserve()
            if pool.would_wait():
                answer = await _submit_unless_gone(pool, payload, self.request_timeout, receive)
                if answer is None:
                    return  # the client went away while its request waited: it was dropped, not run
                status, answer = answer
            else:  # a worker takes it at once (the common case): no watcher to pay for
                status, answer = await pool.submit(payload, self.request_timeout)
        except BodyTooLarge as exc:
            return await send_error(send, 413, protocol.PAYLOAD_TOO_LARGE, str(exc), model)
        except Rejected as exc:
            return await send_error(send, exc.status, exc.code, exc.message, model)
        except PoolError as exc:
            retry = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after else []
            return await send_error(send, exc.status, exc.code, exc.message, model + retry)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode()), *model]})
        await send({"type": "http.response.body", "body": answer})


async def _submit_unless_gone(pool, payload, timeout: float, receive) -> tuple[int, bytes] | None:
    """``pool.submit``, cancelled when the client disconnects (the pool then drops the
    request if it still waits: a closed connection's request must not take a worker or
    a queue place from a live one); None in that case."""
    task, gone = asyncio.current_task(), False
    watcher = asyncio.ensure_future(receive())  # after the body, the next message is the disconnect

    def on_message(done: asyncio.Future) -> None:
        nonlocal gone
        if not done.cancelled() and done.exception() is None and done.result()["type"] == "http.disconnect":
            gone = True
            task.cancel()

    watcher.add_done_callback(on_message)
    try:
        return await pool.submit(payload, timeout)
    except asyncio.CancelledError:
        if not gone:
            raise  # a shutdown, not the client
        task.uncancel()
        return None
    finally:
        watcher.remove_done_callback(on_message)
        watcher.cancel()


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class _Dispatch:
    """``/`` and ``/predict`` to ``Predict`` (POST only: 405 otherwise), the rest to FastAPI."""

    def __init__(self, predict: Predict, app):
        self.predict, self.app = predict, app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in INFERENCE_PATHS:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await send_error(send, 405, protocol.METHOD_NOT_ALLOWED, "Method Not Allowed",
                                    [(b"allow", b"POST")])
        try:
            await self.predict(scope, receive, send)
        except Exception:  # a bug here must cost one request, not the connection's protocol state
            log.exception("predict failed")
            await send_error(send, 500, protocol.HANDLER_ERROR, "internal error in the predictor front")


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


def create_app(router, state: AppState, metrics, *, name: str, request_timeout: float, max_body_bytes: int,
               token: str | None = None):
    """The ASGI application: observation, bearer token and body limit around the predict
    endpoint and FastAPI (health, metrics, docs)."""
    app = FastAPI(title=f"predictor {name}", version="1",
                  description="ModelArts-compatible MXNet predictor: POST / with multipart `images` or JSON.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        code = protocol.BY_STATUS.get(exc.status_code, protocol.BAD_REQUEST)
        return error(exc.status_code, code, str(exc.detail))

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
    inner = _Dispatch(Predict(router, state, request_timeout), app)
    return Observe(BearerAuth(BodyLimit(inner, max_body_bytes), token), metrics)
