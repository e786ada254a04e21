"""Property-based hostile input (issue 12): the predictor's protocol end to end (nesting,
sizes, encodings, field counts, raw request bytes) and the YAML loader (aliases, depth,
size, special files). Every case gets an answer (JSON, never a traceback) or one
``UserError``; the worker pool still serves afterwards. Example counts are bounded so the
suite stays fast."""

from __future__ import annotations

import json
import os
import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import UserError
from orchestrator.yamlsource import MAX_NODES, load_with_lines
from test_predictor import FIXTURES, jpeg, post_json, start
from test_predictor_safety import connect, read_all

FEW = settings(max_examples=15, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    p = start(tmp_path_factory, FIXTURES / "echo", "--name", "fuzz-hostile", "--workers", "2",
              "--request-timeout", "10", "--max-body-mb", "1", "--header-timeout", "2", "--body-timeout", "2")
    yield p
    p.stop()


def answered(resp: requests.Response) -> None:
    body = resp.json()                                   # always JSON
    if resp.status_code != 200:
        assert body["error_code"].startswith("PRED.") and body["error_msg"], body
        assert "Traceback" not in body["error_msg"] and 'File "' not in body["error_msg"]
    assert resp.status_code not in (500, 502, 504), body


def nested(depth: int, kind: str) -> str:
    return '{"a": ' + ("[" * depth + "]" * depth if kind == "list" else '{"b": ' * depth + "1" + "}" * depth) + "}"


@FEW
@given(depth=st.integers(0, 3000), kind=st.sampled_from(["list", "dict"]),
       charset=st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", "; charset=utf-16"]))
def test_json_nesting_and_charsets(echo, depth, kind, charset):
    answered(requests.post(echo.url, data=nested(depth, kind).encode(),
                           headers={"Content-Type": "application/json" + charset}, timeout=30))


@FEW
@given(size=st.sampled_from([0, 1, 1000, 500_000, 1024 * 1024 - 200, 1024 * 1024 + 1, 3 * 1024 * 1024]),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "garbage"]))
def test_body_sizes_and_encodings(echo, size, encoding):
    text = json.dumps({"pad": "é" * (size // 2)})
    body = os.urandom(size) if encoding == "garbage" else text.encode(encoding)[:max(size, 2)]
    answered(requests.post(echo.url, data=body, headers={"Content-Type": "application/json"}, timeout=30))


@FEW
@given(files=st.integers(0, 80), texts=st.integers(0, 80), name=st.sampled_from(["images", "other", "日本", ""]))
def test_multipart_field_counts(echo, files, texts, name):
    parts = [(name, (f"{i}.jpg", jpeg(8, 8))) for i in range(files)] + [(f"t{i}", (None, "x")) for i in range(texts)]
    if not parts:
        parts = [("empty", (None, ""))]
    answered(requests.post(echo.url, files=parts, timeout=30))


@FEW
@given(raw=st.binary(min_size=1, max_size=600) | st.builds(
    lambda line, headers: line + b"\r\n" + headers + b"\r\n\r\n",
    st.sampled_from([b"POST / HTTP/1.1", b"GET /health HTTP/1.1", b"POST / HTTP/9.9", b"\x00\x01 / HTTP/1.1"]),
    st.binary(max_size=300)))
def test_raw_request_bytes_get_an_answer_or_a_close(echo, raw):
    with connect(echo.url) as sock:
        sock.sendall(raw)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reply = read_all(sock)                           # the server closes: no connection left hanging
    if reply:
        assert reply.startswith(b"HTTP/1.1 "), reply[:80]
        assert b"Traceback" not in reply


def test_the_pool_still_serves_after_the_fuzzing(echo):
    assert requests.get(echo.url + "health", timeout=5).status_code == 200
    pids = {post_json(echo.url, {"n": i}).json()["pid"] for i in range(6)}
    assert len(pids) >= 1 and echo.proc.poll() is None


# -- the YAML loader ---------------------------------------------------------------------------

def alias_doc(levels: int, fanout: int, cyclic: bool) -> str:
    lines, prev = ["l0: &l0 [x, y]"], "l0"
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*{prev}"] * fanout) + "]")
        prev = f"l{n}"
    if cyclic:
        lines.append("loop: &loop {self: *loop}")
    return "\n".join(lines) + "\n"


def depth_doc(depth: int, flow: bool) -> str:
    if flow:
        return "a: " + "[" * depth + "]" * depth + "\n"
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"


def count(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(count(v) for v in value)
    return 1


documents = st.one_of(
    st.builds(alias_doc, st.integers(1, 12), st.integers(1, 12), st.booleans()),
    st.builds(depth_doc, st.integers(0, 300), st.booleans()) | st.builds(depth_doc, st.integers(0, 3000), st.just(True)),
    st.builds(lambda n, c: "a: " + c * n + "\n", st.sampled_from([10, 10_000, 2_000_000]), st.sampled_from(["x", "9"])),
    st.text(max_size=300),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_yaml_loader_answers_every_document_within_bounds(tmp_path, doc):
    path = tmp_path / "pipeline.yaml"
    path.write_text(doc, encoding="utf-8")
    try:
        data, _ = load_with_lines(path)
    except UserError as exc:
        assert str(path) in str(exc) and "Traceback" not in str(exc)
        return
    assert count(data) <= MAX_NODES                      # an alias bomb never expands past the budget


@pytest.mark.parametrize("special", ["fifo", "folder", "/dev/zero", "/dev/null"])
def test_yaml_loader_refuses_special_files(tmp_path, special):
    path = tmp_path / "pipeline.yaml"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "folder":
        path.mkdir()
    else:
        path = special
    with pytest.raises(UserError):
        load_with_lines(path)
