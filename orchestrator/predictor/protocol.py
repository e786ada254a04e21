"""Messages between the predictor front and its worker processes, and error bodies.

Transport: one ``socketpair`` per worker. The worker wraps its end in
``multiprocessing.connection.Connection``; the front speaks the same framing
(``frame``; read in ``channel.py``): a 4-byte big-endian signed length (or -1 and an
8-byte length) followed by a pickle. Imports nothing heavy; both sides use it.

The messages are the named tuples below (pickled by class, so both sides import this module).

worker -> front
  ``Loaded(pid, style, batching)``                  service instantiated
  ``LoadFailed(exit_code, message, details)``       then the worker exits; details: a traceback
  ``Warm(status, note)``                            answer to ``Warmup()``
  ``Result(job_id, status, body, timings)``         one per job; body: JSON bytes (errors are
                                                    error bodies); timings: ``{stage: seconds}``
front -> worker
  ``Warmup()``                       run one synthetic request (readiness waits for it)
  ``Predict([(job_id, payload), ...])``  one job, or a batch (see ``handler.py``);
                                     payload: the request body as received,
                                     ``("raw", content_type, bytes)``, or the same in
                                     the shared buffer, ``("shared", content_type,
                                     offset, length)`` (``channel.py``); also
                                     ``("json", obj)`` or
                                     ``("multipart", [(field, filename, bytes)], {field: text})``
  ``None``                           finish and exit
"""

from __future__ import annotations

import json
import pickle
import struct
from typing import NamedTuple


class Loaded(NamedTuple):
    pid: int
    style: str
    batching: bool = False         # the service declares supports_batching


class LoadFailed(NamedTuple):
    exit_code: int                 # 2: a malformed package, 1: anything else
    message: str
    details: str


class Warm(NamedTuple):
    status: int
    note: str


class Result(NamedTuple):
    job_id: int
    status: int
    body: bytes
    timings: dict


class Warmup(NamedTuple):
    pass


class Predict(NamedTuple):
    jobs: list                     # [(job_id, payload), ...]

# error_code values of the JSON error bodies, by meaning (HTTP status in the comment).
BAD_REQUEST = "PRED.BAD_REQUEST"            # 400 malformed body, no `images` field
INVALID_INPUT = "PRED.INVALID_INPUT"        # 400 _preprocess rejected the data
UNAUTHORIZED = "PRED.UNAUTHORIZED"          # 401 bearer token missing or wrong
NOT_FOUND = "PRED.NOT_FOUND"                # 404
METHOD_NOT_ALLOWED = "PRED.METHOD_NOT_ALLOWED"  # 405
PAYLOAD_TOO_LARGE = "PRED.PAYLOAD_TOO_LARGE"    # 413
UNSUPPORTED_MEDIA_TYPE = "PRED.UNSUPPORTED_MEDIA_TYPE"  # 415
HANDLER_ERROR = "PRED.HANDLER_ERROR"        # 500 exception in the service
WORKER_DIED = "PRED.WORKER_DIED"            # 500 the worker process exited mid-request
NOT_READY = "PRED.NOT_READY"                # 503 loading, draining or no ready worker
OVERLOADED = "PRED.OVERLOADED"              # 503 the wait queue is full
TIMEOUT = "PRED.TIMEOUT"                    # 504 over --request-timeout

BY_STATUS = {400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED,
             413: PAYLOAD_TOO_LARGE, 415: UNSUPPORTED_MEDIA_TYPE, 500: HANDLER_ERROR,
             503: NOT_READY, 504: TIMEOUT}

STAGES = ("preprocess", "inference", "postprocess")


def error_body(code: str, message: str) -> bytes:
    """The JSON error document ``{"error_code": ..., "error_msg": ...}`` as bytes."""
    return json.dumps({"error_code": code, "error_msg": message}).encode("utf-8")


def frame(message) -> list[bytes]:
    """``message`` as the chunks of one ``Connection`` frame (header, pickle)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    size = len(data)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
    return [header, data]
