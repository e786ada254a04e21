"""Messages between the predictor front and its worker processes, and error bodies.

Transport: a ``socketpair`` per worker wrapped in ``multiprocessing.connection.Connection``
(pickled tuples). Imports nothing heavy; both sides use it.

worker -> front
  ``("ready", pid, style)``                       service instantiated (and warmed up)
  ``("load_failed", exit_code, message, traceback)``  then the worker exits
  ``("result", job_id, http_status, json_bytes)`` one per job; errors are error bodies
front -> worker
  ``("predict", job_id, payload)``   payload: ``("json", obj)`` or
                                     ``("multipart", [(field, filename, bytes)], {field: text})``
  ``None``                           finish and exit
"""

from __future__ import annotations

import json

# error_code values of the JSON error bodies, by meaning (HTTP status in the comment).
BAD_REQUEST = "PRED.BAD_REQUEST"            # 400 malformed body, no `images` field
INVALID_INPUT = "PRED.INVALID_INPUT"        # 400 _preprocess rejected the data
NOT_FOUND = "PRED.NOT_FOUND"                # 404
METHOD_NOT_ALLOWED = "PRED.METHOD_NOT_ALLOWED"  # 405
PAYLOAD_TOO_LARGE = "PRED.PAYLOAD_TOO_LARGE"    # 413
UNSUPPORTED_MEDIA_TYPE = "PRED.UNSUPPORTED_MEDIA_TYPE"  # 415
HANDLER_ERROR = "PRED.HANDLER_ERROR"        # 500 exception in the service
WORKER_DIED = "PRED.WORKER_DIED"            # 500 the worker process exited mid-request
NOT_READY = "PRED.NOT_READY"                # 503 loading, draining or no live worker
OVERLOADED = "PRED.OVERLOADED"              # 503 in-flight limit reached
TIMEOUT = "PRED.TIMEOUT"                    # 504 over --request-timeout

BY_STATUS = {400: BAD_REQUEST, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: PAYLOAD_TOO_LARGE,
             415: UNSUPPORTED_MEDIA_TYPE, 500: HANDLER_ERROR, 503: NOT_READY, 504: TIMEOUT}


def error_body(code: str, message: str) -> bytes:
    """The JSON error document ``{"error_code": ..., "error_msg": ...}`` as bytes."""
    return json.dumps({"error_code": code, "error_msg": message}).encode("utf-8")
