"""Closed-loop HTTP load generator for benchmarks/serve.py, run as its own process so it
never shares a GIL with the server under test.

    python benchmarks/_serve_load.py URL BODY_FILE CONTENT_TYPE --concurrency C --warmup W --duration D

``C`` keep-alive connections each send the same POST (body read from ``BODY_FILE``) back to
back for ``W + D`` seconds; requests that END inside the measured window (after the warm-up,
before the deadline) are counted, as wrk counts them, so slow points still get a rate. Prints one JSON line: ``{"concurrency", "seconds", "ok", "answered", "rps",
"errors": {status: n}, "p50_ms", "p90_ms", "p99_ms", "max_ms"}`` (``rps`` counts 2xx
answers in the measured window; ``answered``: every response, warm-up included;
``errors`` counts other statuses and broken connections as ``"conn"``).
Raw asyncio streams instead of an HTTP library keep the client's own cost per request
in the tens of microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def _request(url: str, body: bytes, content_type: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Connection: keep-alive"]
    return parts.hostname, parts.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _connection(host: str, port: int, request: bytes, start_at: float, stop_at: float,
                      latencies: list, errors: dict) -> None:
    clock = time.perf_counter  # uvloop's loop.time() has millisecond steps
    reader = writer = None
    while clock() < stop_at:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                errors["conn"] = errors.get("conn", 0) + 1
                await asyncio.sleep(0.05)
                continue
        sent = clock()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            errors["conn"] = errors.get("conn", 0) + 1
            writer.close()
            reader = writer = None
            continue
        done = clock()
        errors["_answered"] = errors.get("_answered", 0) + 1
        if start_at <= done <= stop_at:  # like wrk: what completes in the window
            if 200 <= status < 300:
                latencies.append(done - sent)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _percentile(sorted_values: list, q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] * 1000.0


async def run(url: str, body: bytes, content_type: str, concurrency: int, warmup: float, duration: float) -> dict:
    host, port, request = _request(url, body, content_type)
    start_at = time.perf_counter() + warmup
    stop_at = start_at + duration
    latencies: list[float] = []
    errors: dict[str, int] = {}
    await asyncio.gather(*(_connection(host, port, request, start_at, stop_at, latencies, errors)
                           for _ in range(concurrency)))
    latencies.sort()
    answered = errors.pop("_answered", 0)
    return {"concurrency": concurrency, "seconds": duration, "ok": len(latencies), "answered": answered,
            "rps": len(latencies) / duration, "errors": errors,
            "p50_ms": _percentile(latencies, 0.50), "p90_ms": _percentile(latencies, 0.90),
            "p99_ms": _percentile(latencies, 0.99), "max_ms": _percentile(latencies, 1.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("body_file")
    p.add_argument("content_type")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args()
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    coro = run(args.url, body, args.content_type, args.concurrency, args.warmup, args.duration)
    try:
        import uvloop
        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
