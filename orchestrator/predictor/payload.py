"""Request bodies -> what ``handler.to_service_input`` takes (parsed in the worker, off the front).

``parse_payload(content_type, body, file_fields)`` returns ``("json", dict)`` or
``("multipart", [(field, filename, bytes)], {field: text})`` and raises ``Rejected`` with
the HTTP status to answer: 400 malformed multipart/JSON, a JSON body that is not an
object or nests deeper than ``MAX_JSON_DEPTH``, no file in any of ``file_fields``, more
than ``MAX_PARTS`` parts; 415 any other
content type. The body is already in memory (the front caps it at 12 MB), so multipart
parts are sliced straight out of it, never spooled to temporary files; python-multipart's
header-parameter parser reads Content-Type and Content-Disposition.
"""

from __future__ import annotations

import json

from python_multipart.multipart import parse_options_header

from orchestrator.predictor import protocol

MAX_PARTS = 64
MAX_JSON_DEPTH = 64  # arrays/objects inside each other; far beyond any model input, far below recursion limits
_TOO_DEEP = f"JSON body nests arrays/objects more than {MAX_JSON_DEPTH} levels deep"


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> Rejected:
    return Rejected(400, protocol.BAD_REQUEST, message)


def _headers(block: bytes) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in block.split(b"\r\n") if block else ():
        name, colon, value = line.partition(b":")
        if not colon or not name or name[:1] in b" \t":
            raise _bad("malformed multipart body: a part header is not 'Name: value'")
        headers[name.strip().lower()] = value.strip()
    return headers


def _multipart(content_type: str, body: bytes, file_fields: set[str]):
    """RFC 7578 form data, the whole body in memory: delimiters found with ``bytes.find``
    (C speed; the part contents are sliced once, never scanned byte by byte in Python)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad("malformed multipart body: the Content-Type has no boundary")
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):   # no preamble, as python-multipart and browsers have it
        raise _bad("malformed multipart body: it does not start with the boundary of its Content-Type")
    files, text, parts = [], {}, 0
    separator, pos = b"\r\n" + delimiter, len(delimiter)
    while not body.startswith(b"--", pos):   # "--" after a delimiter closes the body
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _bad("malformed multipart body: the body ends early or a boundary line has extra text")
        parts += 1
        if parts > MAX_PARTS:
            raise _bad(f"multipart body has more than {MAX_PARTS} parts")
        if body.startswith(b"\r\n", line_end + 2):   # a part without headers
            head_end, headers = line_end, {}
        else:
            head_end = body.find(b"\r\n\r\n", line_end + 2)
            if head_end < 0:
                raise _bad("malformed multipart body: a part's headers do not end")
            headers = _headers(body[line_end + 2:head_end])
        content_end = body.find(separator, head_end + 4)
        if content_end < 0:
            raise _bad("malformed multipart body: a part is not followed by a boundary")
        kind, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if kind != b"form-data" or not disposition.get(b"name"):
            raise _bad("malformed multipart body: a part has no 'Content-Disposition: form-data; name=...'")
        name = disposition[b"name"].decode("utf-8", "replace")
        content = body[head_end + 4:content_end]
        if b"filename" in disposition:
            files.append((name, disposition[b"filename"].decode("utf-8", "replace") or name, content))
        else:
            text[name] = content.decode("utf-8", "replace")
        pos = content_end + len(separator)
    if not any(field in file_fields for field, _, _ in files):
        raise _bad(f"multipart body has no file in field '{' or '.join(sorted(file_fields))}'")
    return ("multipart", files, text)


def too_deep(obj, limit: int) -> bool:
    """True when ``obj`` nests lists/dicts more than ``limit`` levels (iteratively: a deep
    document must not hit the recursion limit here either)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_payload(content_type: str, body: bytes, file_fields: set[str]):
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart(content_type, body, file_fields)
    if media == "application/json" or media.endswith("+json"):
        try:
            obj = json.loads(body)
        except ValueError as exc:  # includes UnicodeDecodeError
            raise _bad(f"malformed JSON body: {exc}") from None
        except RecursionError:  # nested beyond the interpreter's own limit
            raise _bad(_TOO_DEEP) from None
        # counting brackets is cheap and rules out deep nesting for nearly every body
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and too_deep(obj, MAX_JSON_DEPTH):
            raise _bad(_TOO_DEEP)
        if not isinstance(obj, dict):
            raise _bad("JSON body must be an object")
        return ("json", obj)
    raise Rejected(415, protocol.UNSUPPORTED_MEDIA_TYPE,
                   f"unsupported Content-Type '{media or 'none'}': send multipart/form-data "
                   "with field 'images' or application/json")
