"""Predictor worker process: one service instance, one request at a time.

Started by the front (``pool.py``) as ``python -m orchestrator.predictor.worker --fd N
--model-dir DIR --name NAME [--parent-pid P] [--py2-compat]`` with ``OMP_NUM_THREADS``
already in its environment and cwd = the model folder. Speaks ``protocol.py`` on fd N.

Contract:
* Ignores SIGINT/SIGTERM (the front decides when it stops; a terminal Ctrl-C reaches the
  whole process group) and dies with the front (``PR_SET_PDEATHSIG`` on Linux, and EOF).
* Loads the service (``loader.load_service``); a service using the default ``_inference``
  has its network loaded and run once on zeros, so readiness means "answers fast".
* Multipart payloads become ``{field: {filename: BytesIO}}`` (+ text fields as str) for
  new-style services and ``[bytes, ...]`` (files of the signature's input fields, else of
  ``images``) for legacy ones; JSON payloads are the decoded object for both.
* Errors: ``ValueError`` or an image-decoding error raised in ``_preprocess`` -> 400
  ``INVALID_INPUT``; anything else -> 500 ``HANDLER_ERROR`` with ``Type: message``, and
  the traceback goes to stderr. Request data is never logged.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from orchestrator.predictor import protocol

# Exceptions that mean "this is not a decodable image / document", by qualified name so
# that this module needs neither PIL nor cv2 nor mxnet to classify them.
_DECODE_ERRORS = {"PIL.UnidentifiedImageError", "cv2.error", "mxnet.base.MXNetError"}


def _die_with_parent(parent_pid: int | None) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: EOF on the connection still ends us once we are idle
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)  # the front died before we armed the signal


def _warm_up(service) -> None:
    from mms.model_service.mxnet_model_service import MXNetBaseService

    if not isinstance(service, MXNetBaseService) or type(service)._inference is not MXNetBaseService._inference:
        return  # the service runs its own network (or none): nothing we can load for it
    import mxnet as mx
    from mxnet.io import DataBatch

    module = service.mx_model
    module.forward(DataBatch([mx.nd.zeros(d.shape) for d in module.data_shapes]), is_train=False)
    for out in module.get_outputs():
        out.wait_to_read()


def _chain(service):
    """The callable that runs one request: the service's ``inference`` or the base chain."""
    if callable(getattr(service, "inference", None)):
        return service.inference
    from mms.model_service.model_service import SingleNodeService

    for stage in ("_preprocess", "_inference", "_postprocess"):  # duck-typed service
        if not callable(getattr(service, stage, None)):
            setattr(service, stage, lambda data: data)
    return functools.partial(SingleNodeService.inference, service)


def _input_names(service) -> list[str]:
    try:
        return [d["data_name"] for d in service.signature["inputs"]]
    except (AttributeError, KeyError, TypeError, IndexError):
        return []


def to_service_input(payload, style: str, input_names: list[str]):
    """Turn a wire payload into what ``_preprocess`` of this style of service expects."""
    if payload[0] == "json":
        return payload[1]
    _, files, text = payload
    if style == "legacy":
        chosen = [content for name in input_names for field, _, content in files if field == name]
        return chosen or [content for field, _, content in files if field == "images"]
    data: dict = {}
    for field, filename, content in files:
        group = data.setdefault(field, {})
        key, n = filename, 1
        while key in group:  # two uploads with one name must not overwrite each other
            n += 1
            key = f"{filename}#{n}"
        group[key] = io.BytesIO(content)
    for field, value in text.items():
        data.setdefault(field, value)
    return data


def _is_bad_input(exc: BaseException) -> bool:
    if getattr(exc, "mms_stage", None) != "preprocess":
        return False
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    return isinstance(exc, ValueError) or bool(names & _DECODE_ERRORS)


def _jsonable(obj):
    if hasattr(obj, "asnumpy"):  # mx.nd.NDArray
        return obj.asnumpy().tolist()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def handle(run, style: str, input_names: list[str], payload) -> tuple[int, bytes]:
    """Run one request; never raises. Returns ``(http_status, json_bytes)``."""
    try:
        result = run(to_service_input(payload, style, input_names))
    except Exception as exc:  # a handler exception fails the request, never the worker
        msg = f"{type(exc).__name__}: {exc}"
        if _is_bad_input(exc):  # the client's fault: one line is enough
            print(f"worker {os.getpid()}: rejected input: {msg}", file=sys.stderr, flush=True)
            return 400, protocol.error_body(protocol.INVALID_INPUT, msg)
        traceback.print_exc(file=sys.stderr)
        return 500, protocol.error_body(protocol.HANDLER_ERROR, msg)
    try:
        return 200, json.dumps(result, default=_jsonable, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        return 500, protocol.error_body(protocol.HANDLER_ERROR, f"result is not JSON serialisable: {exc}")


def serve(conn: Connection, model_dir: str, name: str, py2_compat: bool) -> int:
    from orchestrator.predictor import loader

    try:
        service, style = loader.load_service(model_dir, name, py2_compat=py2_compat)
        _warm_up(service)
    except loader.PackageError as exc:
        conn.send(("load_failed", 2, str(exc), ""))
        return 2
    except BaseException as exc:  # SystemExit in a service module is a load failure too
        conn.send(("load_failed", 1, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return 1
    run, names = _chain(service), _input_names(service)
    conn.send(("ready", os.getpid(), style))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0  # the front is gone
        if msg is None:
            return 0
        _, job_id, payload = msg
        status, body = handle(run, style, names, payload)
        try:
            conn.send(("result", job_id, status, body))
        except OSError:
            return 0  # the front is gone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator.predictor.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--py2-compat", action="store_true")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent(args.parent_pid)
    conn = Connection(args.fd)
    os.chdir(args.model_dir)
    try:
        return serve(conn, os.path.abspath(args.model_dir), args.name, args.py2_compat)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
