"""HTTP surface of the predictor (FastAPI), wired to a ``WorkerPool``.

Routes: ``GET /health`` -> 200 ``{"health": "true"}`` when ready, else 503;
``POST /`` and ``POST /predict`` -> the JSON the service's ``_postprocess`` returned.

Request bodies: ``multipart/form-data`` with at least one file in field ``images`` (or in
the field named by ``$input_data_name``), or ``application/json`` holding an object.
Every error is ``{"error_code", "error_msg"}`` JSON: 400 malformed body / missing field /
bad input, 404/405 unknown route, 413 body over the limit, 415 other content types,
500 service exception or dead worker, 503 not ready or overloaded (``Retry-After: 1``),
504 over the request timeout. The front never imports mxnet.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from orchestrator.predictor import protocol
from orchestrator.predictor.asgi import AccessLog, BodyLimit, BodyTooLarge
from orchestrator.predictor.pool import PoolError, WorkerPool

MAX_FILES = 32
MAX_FIELDS = 32


class AppState:
    """Mutable readiness shared by the server loop and the routes."""

    def __init__(self):
        self.ready = False
        self.reason = "loading the model"


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return Response(protocol.error_body(code, message), status_code=status,
                    media_type="application/json", headers=headers)


async def _read_multipart(request: Request, file_fields: set[str]):
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except (MultiPartException, StarletteHTTPException) as exc:
        raise _Reject(400, protocol.BAD_REQUEST, f"malformed multipart body: {getattr(exc, 'detail', exc)}")
    files, text = [], {}
    try:
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((field, value.filename or field, await value.read()))
            else:
                text[field] = value
    finally:
        await form.close()
    if not any(field in file_fields for field, _, _ in files):
        wanted = " or ".join(sorted(file_fields))
        raise _Reject(400, protocol.BAD_REQUEST, f"multipart body has no file in field '{wanted}'")
    return ("multipart", files, text)


async def read_payload(request: Request, file_fields: set[str]):
    """Parse the body into the wire payload of ``protocol.py`` or raise ``_Reject``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _read_multipart(request, file_fields)
    if media == "application/json" or media.endswith("+json"):
        try:
            obj = json.loads(await request.body())
        except ValueError as exc:  # includes UnicodeDecodeError
            raise _Reject(400, protocol.BAD_REQUEST, f"malformed JSON body: {exc}")
        if not isinstance(obj, dict):
            raise _Reject(400, protocol.BAD_REQUEST, "JSON body must be an object")
        return ("json", obj)
    raise _Reject(415, protocol.UNSUPPORTED_MEDIA_TYPE,
                  f"unsupported Content-Type '{media or 'none'}': send multipart/form-data "
                  "with field 'images' or application/json")


def create_app(pool: WorkerPool, state: AppState, *, name: str, request_timeout: float,
               max_body_bytes: int):
    """The ASGI application (FastAPI wrapped in access log and body limit)."""
    app = FastAPI(title=f"predictor {name}", version="1")
    file_fields = {"images", os.environ.get("input_data_name") or "images"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        code = protocol.BY_STATUS.get(exc.status_code, protocol.BAD_REQUEST)
        return error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def too_large(_request, exc: BodyTooLarge):
        return error(413, protocol.PAYLOAD_TOO_LARGE, str(exc))

    @app.get("/health")
    async def health():
        if state.ready and pool.ready_workers():  # false while the only worker reloads
            return JSONResponse({"health": "true"})
        return JSONResponse({"health": "false", "error_code": protocol.NOT_READY,
                             "error_msg": state.reason}, status_code=503, headers={"Retry-After": "1"})

    async def predict(request: Request):
        if not state.ready:
            return error(503, protocol.NOT_READY, state.reason, retry_after=1)
        try:
            payload = await read_payload(request, file_fields)
        except _Reject as exc:
            return error(exc.status, exc.code, exc.message)
        try:
            status, body = await pool.submit(payload, request_timeout)
        except PoolError as exc:
            return error(exc.status, exc.code, exc.message, exc.retry_after)
        return Response(body, status_code=status, media_type="application/json")

    app.add_api_route("/", predict, methods=["POST"], include_in_schema=True)
    app.add_api_route("/predict", predict, methods=["POST"], include_in_schema=True)
    return AccessLog(BodyLimit(app, max_body_bytes))
