"""How a worker runs requests through one loaded service (imported in workers only).

``Runner(service, style)``:

* ``handle(payload) -> (status, json_bytes, timings)`` runs one request through the
  service's ``inference`` (``_preprocess -> _inference -> _postprocess``); never raises.
* ``handle_batch(payloads) -> [(status, json_bytes, timings)]`` for services whose class
  sets ``supports_batching = True``: ``_preprocess`` per request (each returns an array,
  or a list of arrays, whose first axis is the batch), the arrays concatenated on axis 0,
  ONE ``_inference`` call, its outputs (an array or a list of arrays, first axis = batch)
  split back by each request's share, ``_postprocess`` per request. A request whose
  ``_preprocess`` fails gets its own error; a failing ``_inference`` fails the batch.
* ``warm_up() -> (status, note)``: one synthetic request (a grey JPEG of the signature's
  HxW for image signatures; else a forward pass on zeros for the default ``_inference``).
* Errors: ``ValueError``, ``KeyError`` (an input the request lacks) or an image-decoding
  error in ``_preprocess`` -> 400
  ``INVALID_INPUT``; anything else -> 500 ``HANDLER_ERROR`` (``Type: message``, traceback
  to stderr). Timings: seconds per stage (``protocol.STAGES``). Data is never logged.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
import traceback

from orchestrator.predictor import protocol
from orchestrator.predictor.payload import Rejected, parse_payload

# Exceptions that mean "this is not a decodable image / document", by qualified name so
# that this module needs neither PIL nor cv2 nor mxnet to classify them.
_DECODE_ERRORS = {"PIL.UnidentifiedImageError", "cv2.error", "mxnet.base.MXNetError"}


def to_service_input(payload, style: str, input_names: list[str]):
    """Turn a wire payload into what ``_preprocess`` of this style of service expects:
    multipart -> ``{field: {filename: BytesIO}}`` (+ text fields) for new-style services,
    ``[bytes, ...]`` of the signature's input fields (else ``images``) for legacy ones;
    JSON -> the decoded object. A raw body (``("raw", content_type, bytes)``, what the
    front sends) is parsed first; ``payload.Rejected`` (400/415) when it is malformed."""
    if payload[0] == "raw":
        fields = {"images", os.environ.get("input_data_name") or "images"}
        payload = parse_payload(payload[1], payload[2], fields)
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


def _error(exc: BaseException, stage: str | None) -> tuple[int, bytes]:
    if isinstance(exc, Rejected):   # the body itself is malformed: the service never saw it
        return exc.status, protocol.error_body(exc.code, exc.message)
    msg = f"{type(exc).__name__}: {exc}"
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    preprocess = (stage or getattr(exc, "mms_stage", None)) == "preprocess"
    if preprocess and isinstance(exc, KeyError):   # the service looked for an input the request lacks
        msg = f"the request has no input {exc} (send it as a multipart field or a JSON key of that name)"
        print(f"worker {os.getpid()}: rejected input: {msg}", file=sys.stderr, flush=True)
        return 400, protocol.error_body(protocol.INVALID_INPUT, msg)
    if preprocess and (isinstance(exc, ValueError) or names & _DECODE_ERRORS):
        print(f"worker {os.getpid()}: rejected input: {msg}", file=sys.stderr, flush=True)
        return 400, protocol.error_body(protocol.INVALID_INPUT, msg)
    traceback.print_exception(exc, file=sys.stderr)
    return 500, protocol.error_body(protocol.HANDLER_ERROR, msg)


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


def _encode(result) -> tuple[int, bytes]:
    try:
        return 200, json.dumps(result, default=_jsonable, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        return 500, protocol.error_body(protocol.HANDLER_ERROR, f"result is not JSON serialisable: {exc}")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _concat(arrays: list):
    if any(hasattr(a, "asnumpy") for a in arrays):
        import mxnet as mx

        return mx.nd.concat(*[a if hasattr(a, "asnumpy") else mx.nd.array(a) for a in arrays], dim=0)
    import numpy as np

    return np.concatenate([np.asarray(a) for a in arrays], axis=0)


def assemble(parts: list[list]) -> list:
    """Per-request lists of arrays -> one list of arrays concatenated on axis 0."""
    return [_concat([p[i] for p in parts]) for i in range(len(parts[0]))]


def split(outputs, sizes: list[int]) -> list:
    """Inverse of ``assemble`` for the outputs: one share per request, same container."""
    shares, start = [], 0
    for n in sizes:
        part = [o[start:start + n] for o in _as_list(outputs)]
        shares.append(part if isinstance(outputs, (list, tuple)) else part[0])
        start += n
    return shares


class Runner:
    def __init__(self, service, style: str):
        self.service, self.style = service, style
        self.batching = bool(getattr(type(service), "supports_batching", False))
        self.timings: dict[str, float] = {}
        self._run = self._chain()
        for stage in protocol.STAGES:  # time the stages without changing how they are called
            method = getattr(service, "_" + stage, None)
            if callable(method):
                setattr(service, "_" + stage, self._timed(stage, method))
        try:
            self.input_names = [d["data_name"] for d in service.signature["inputs"]]
        except (AttributeError, KeyError, TypeError, IndexError):
            self.input_names = []

    def _chain(self):
        if callable(getattr(self.service, "inference", None)):
            return self.service.inference
        from mms.model_service.model_service import SingleNodeService

        for stage in protocol.STAGES:  # duck-typed service: missing stages pass data through
            if not callable(getattr(self.service, "_" + stage, None)):
                setattr(self.service, "_" + stage, lambda data: data)
        return functools.partial(SingleNodeService.inference, self.service)

    def _timed(self, stage: str, method):
        def timed(data):
            start = time.perf_counter()
            try:
                return method(data)
            finally:
                self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        return timed

    def handle(self, payload) -> tuple[int, bytes, dict]:
        self.timings = {}
        try:
            status, body = _encode(self._run(to_service_input(payload, self.style, self.input_names)))
        except Exception as exc:  # a handler exception fails the request, never the worker
            status, body = _error(exc, None)
        return status, body, self.timings

    def handle_batch(self, payloads: list) -> list[tuple[int, bytes, dict]]:
        results: list = [None] * len(payloads)
        parts, owners = [], []
        for i, payload in enumerate(payloads):
            self.timings = {}
            try:
                parts.append(_as_list(self.service._preprocess(to_service_input(payload, self.style, self.input_names))))
                owners.append((i, self.timings))
            except Exception as exc:
                results[i] = (*_error(exc, "preprocess"), self.timings)
        if parts:
            self.timings = {}
            try:
                outputs = self.service._inference(assemble(parts))
                shares = split(outputs, [int(p[0].shape[0]) for p in parts])
            except Exception as exc:
                failed = _error(exc, "inference")
                shares = None
            shared = self.timings
            for n, (i, own) in enumerate(owners):
                own.update(shared)  # every request of the batch waited for the whole forward
                if shares is None:
                    results[i] = (*failed, own)
                    continue
                self.timings = own
                try:
                    results[i] = (*_encode(self.service._postprocess(shares[n])), own)
                except Exception as exc:
                    results[i] = (*_error(exc, "postprocess"), own)
        return results

    def warm_up(self) -> tuple[int, str]:
        shape = next(iter(getattr(self.service, "signature", {}).get("inputs", [])), {}).get("data_shape", [])
        if len(shape) == 4 and shape[1] in (1, 3) and shape[2] > 0 and shape[3] > 0:
            import cv2
            import numpy as np

            _, jpeg = cv2.imencode(".jpg", np.full((shape[2], shape[3], 3), 128, np.uint8))
            field = self.input_names[0] if self.input_names else "images"
            status, body, _ = self.handle(("multipart", [(field, "warmup.jpg", jpeg.tobytes())], {}))
            return status, "" if status == 200 else body.decode("utf-8", "replace")
        return _forward_zeros(self.service)


def _forward_zeros(service) -> tuple[int, str]:
    from mms.model_service.mxnet_model_service import MXNetBaseService

    if not isinstance(service, MXNetBaseService) or type(service)._inference is not MXNetBaseService._inference:
        return 200, "no synthetic input for this signature; nothing to warm up"
    import mxnet as mx
    from mxnet.io import DataBatch

    module = service.mx_model
    module.forward(DataBatch([mx.nd.zeros(d.shape) for d in module.data_shapes]), is_train=False)
    for out in module.get_outputs():
        out.wait_to_read()
    return 200, ""
