"""Request bodies -> the wire payload of ``protocol.py`` (front side, the hot path).

``parse_payload(content_type, body, file_fields)`` returns ``("json", dict)`` or
``("multipart", [(field, filename, bytes)], {field: text})`` and raises ``Rejected`` with
the HTTP status to answer: 400 malformed multipart/JSON, a JSON body that is not an
object or nests deeper than ``MAX_JSON_DEPTH``, no file in any of ``file_fields``, more
than ``MAX_PARTS`` parts; 415 any other
content type. The body is already in memory (the front caps it at 12 MB), so multipart
parts are collected straight into bytes by python-multipart's parser, never spooled to
temporary files.
"""

from __future__ import annotations

import json

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

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


class _Parts:
    """Callbacks of ``MultipartParser`` that collect the parts of one body."""

    def __init__(self):
        self.files: list[tuple[str, str, bytes]] = []
        self.text: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value, self._data = [], [], []
        self._count = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_part_data": self.part_data, "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise _bad(f"multipart body has more than {MAX_PARTS} parts")
        self._headers, self._data = {}, []

    def header_field(self, data, start, end) -> None:
        self._field.append(data[start:end])

    def header_value(self, data, start, end) -> None:
        self._value.append(data[start:end])

    def header_end(self) -> None:
        self._headers[b"".join(self._field).strip().lower()] = b"".join(self._value).strip()
        self._field, self._value = [], []

    def part_data(self, data, start, end) -> None:
        self._data.append(data[start:end])

    def part_end(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if kind != b"form-data" or not options.get(b"name"):
            raise _bad("malformed multipart body: a part has no 'Content-Disposition: form-data; name=...'")
        name = options[b"name"].decode("utf-8", "replace")
        content = b"".join(self._data)
        if b"filename" in options:
            self.files.append((name, options[b"filename"].decode("utf-8", "replace") or name, content))
        else:
            self.text[name] = content.decode("utf-8", "replace")


def _multipart(content_type: str, body: bytes, file_fields: set[str]):
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad("malformed multipart body: the Content-Type has no boundary")
    parts = _Parts()
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise _bad(f"malformed multipart body: {exc}") from None
    if not any(field in file_fields for field, _, _ in parts.files):
        raise _bad(f"multipart body has no file in field '{' or '.join(sorted(file_fields))}'")
    return ("multipart", parts.files, parts.text)


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
