"""The predictor front's own HTTP/1.1 layer (``http.py``) and body parser (``payload.py``),
checked against independent implementations and raw sockets."""

from __future__ import annotations

import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from orchestrator.predictor.payload import Rejected, parse_payload
from test_predictor import FIXTURES, post_json, start


def reference_parse(content_type: str, body: bytes):
    """python-multipart's streaming parser: the parts of a body, or None if it refuses it."""
    _, options = parse_options_header(content_type)
    parts, current = [], {}

    def part_begin():
        current.clear()
        current.update(headers={}, data=[], field=[], value=[])

    def header_field(data, start, end):
        current["field"].append(data[start:end])

    def header_value(data, start, end):
        current["value"].append(data[start:end])

    def header_end():
        current["headers"][b"".join(current["field"]).strip().lower()] = b"".join(current["value"]).strip()
        current["field"], current["value"] = [], []

    def part_data(data, start, end):
        current["data"].append(data[start:end])

    def part_end():
        kind, opts = parse_options_header(current["headers"].get(b"content-disposition", b""))
        parts.append((opts.get(b"name"), opts.get(b"filename"), b"".join(current["data"])))

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": part_begin, "on_header_field": header_field, "on_header_value": header_value,
        "on_header_end": header_end, "on_part_data": part_data, "on_part_end": part_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception:
        return None
    return parts


def ours(content_type: str, body: bytes):
    try:
        _, files, text = parse_payload(content_type, body, {"images"})
    except Rejected:
        return None
    return sorted([(n.encode(), f.encode(), c) for n, f, c in files] + [(n.encode(), None, v.encode())
                                                                         for n, v in text.items()])


names = st.text(st.characters(min_codepoint=48, max_codepoint=122, blacklist_characters='\\"'), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(st.tuples(names, names, st.binary(max_size=300)), min_size=1, max_size=3),
       texts=st.dictionaries(names, st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
                             max_size=2))
def test_well_formed_bodies_parse_as_python_multipart_parses_them(files, texts):
    files = [("images", *files[0][1:])] + files[1:]
    prepared = requests.Request("POST", "http://127.0.0.1/", files=[(n, (f, c)) for n, f, c in files],
                                data=texts).prepare()
    content_type, body = prepared.headers["Content-Type"], prepared.body
    expected = reference_parse(content_type, body)
    expected = sorted((n, f, c) if f is not None else (n, None, c) for n, f, c in expected)
    # a repeated text field keeps its last value, as the service sees it
    last = {n: c for n, f, c in expected if f is None}
    expected = sorted([p for p in expected if p[1] is not None] + [(n, None, c) for n, c in last.items()])
    assert ours(content_type, body) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_bodies_are_refused_or_parsed_like_python_multipart(data):
    prepared = requests.Request("POST", "http://127.0.0.1/", files={"images": ("a.jpg", b"\xff\xd8 data \r\n--")},
                                data={"k": "v"}).prepare()
    body = bytearray(prepared.body)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        if action == "cut":
            del body[at:]
        elif action == "flip":
            body[at] = data.draw(st.integers(0, 255))
        else:
            body[at:at] = data.draw(st.sampled_from([b"\r\n", b"--", b"\r\n\r\n", b":", b"x"]))
        if not body:
            break
    got = ours(prepared.headers["Content-Type"], bytes(body))
    if got is None:
        return  # refused with a 400: always allowed for damaged input
    # what we accept, python-multipart accepts with the same file contents
    reference = reference_parse(prepared.headers["Content-Type"], bytes(body))
    assert reference is not None
    assert [c for n, f, c in got if f is not None] == [c for n, f, c in reference if f is not None]


# -- the HTTP layer over a real socket ----------------------------------------------------

@pytest.fixture(scope="module")
def front(tmp_path_factory):
    p = start(tmp_path_factory, FIXTURES / "echo", "--name", "http-test", "--max-connections", "8")
    yield p
    p.stop()


def raw(url: str, data: bytes, read_until_close: bool = True) -> bytes:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        if not read_until_close:
            return sock.recv(65536)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def request(path: str, body: bytes = b"", method: str = "POST", extra: str = "", close: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
           f"Content-Length: {len(body)}\r\n{extra}{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    return head.encode() + body


def test_pipelined_requests_are_answered_in_order(front):
    answer = raw(front.url, request("/", b'{"n": 1}') + request("/", b'{"n": 2}') + request("/", b'{"n": 3}',
                                                                                              close=True))
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b'"n": 1') < answer.index(b'"n": 2') < answer.index(b'"n": 3')


def test_a_pipelined_request_refused_from_its_headers_waits_for_the_answer_ahead_of_it(front):
    slow = request("/", b'{"sleep": 0.3}')
    refused = b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"
    answer = raw(front.url, slow + refused)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b'"sleep": 0.3' in answer
    assert answer.index(b"HTTP/1.1 415") > answer.index(b'"sleep": 0.3')


def test_expect_100_continue_gets_an_interim_answer_before_the_body(front):
    host, port = front.url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request("/", b"", extra="Expect: 100-continue\r\n").replace(b"Content-Length: 0",
                                                                               b"Content-Length: 8"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b'{"a": 1}')
        assert b"200 OK" in sock.recv(65536)


def test_http_1_0_and_connection_close_are_honoured(front):
    answer = raw(front.url, b"POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in answer.lower()


def test_oversized_headers_and_bad_targets_get_a_json_400(front):
    answer = raw(front.url, b"POST / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"PRED.BAD_REQUEST" in answer and b"larger than" in answer
    answer = raw(front.url, b"GET /health HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"upgrade" in answer


def test_head_and_query_strings_reach_the_docs_app(front):
    resp = requests.head(front.url + "health?x=1", timeout=5)
    assert resp.status_code == 405 and resp.content == b""   # GET only, as FastAPI declares it
    assert requests.get(front.url + "openapi.json?x=1", timeout=5).json()["paths"]["/"]["post"]
    missing = requests.get(front.url + "nothing-here", timeout=5)
    assert missing.status_code == 404 and missing.json()["error_code"] == "PRED.NOT_FOUND"


def test_unsupported_media_type_is_refused_before_the_body(front):
    answer = raw(front.url, b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 5000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 415") and b"PRED.UNSUPPORTED_MEDIA_TYPE" in answer
    assert post_json(front.url, {"still": "serving"}).status_code == 200


def test_large_uploads_go_through_the_shared_buffer_and_beyond_it(front):
    for size in (100_000, 17_000_000 // 2):   # the second with its JSON answer is beyond 16 MB in all
        pad = "0123456789abcdef" * (size // 16)
        resp = post_json(front.url, {"pad": pad})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.json()["data"]["pad"] == pad
