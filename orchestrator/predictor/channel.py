"""One worker process as the front sees it: spawn, message channel, shared body buffer.

``await spawn(cmd, env=, cwd=, on_message=, on_closed=) -> WorkerProcess`` starts
``cmd`` (the worker) with one end of a ``socketpair`` and, on Linux, a shared-memory
buffer (``memfd``, ``SHARED_BYTES``); the worker gets ``--fd N [--shared-fd M
--shared-size S]`` appended. ``on_message(msg)`` is called on the loop for each message
the worker sends (``protocol.py``: length-prefixed pickles), ``on_closed()`` once when
its end closes (exit or crash).

``WorkerProcess.send(message)`` frames and writes one message. ``send_jobs(jobs)`` sends
``protocol.Predict`` for ``[(job_id, payload)]`` and moves raw request bodies
(``("raw", content_type, bytes)``) into the shared buffer first, so that the channel
carries a few hundred bytes instead of the upload (``("shared", content_type, offset,
length)``; what does not fit goes through the socket). The buffer is reused by the next
``send_jobs``: callers send to a worker only after it has answered every job it holds,
so the worker has already read it.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import pickle
import socket
import struct
import subprocess

from orchestrator.predictor import protocol

SHARED_BYTES = 16 << 20   # a 12 MB upload, or several usual ones in a batch; pages are used only when written


class _Channel(asyncio.Protocol):
    """Splits the byte stream from a worker into messages."""

    def __init__(self, on_message, on_closed):
        self.on_message, self.on_closed = on_message, on_closed
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            size, = struct.unpack_from("!i", buffer, start)
            header = 4
            if size == -1:
                if len(buffer) - start < 12:
                    break
                size, header = struct.unpack_from("!Q", buffer, start + 4)[0], 12
            if len(buffer) - start < header + size:
                break
            message = pickle.loads(memoryview(buffer)[start + header:start + header + size])
            start += header + size
            self.on_message(message)
        del buffer[:start]

    def connection_lost(self, exc) -> None:
        self.on_closed()


class WorkerProcess:
    """The channel to one worker and, once started, its ``proc`` (``asyncio.subprocess.Process``)."""

    def __init__(self, transport, shared: mmap.mmap | None):
        self.transport, self.shared = transport, shared
        self.proc = None

    def send(self, message) -> None:
        if not self.transport.is_closing():
            self.transport.writelines(protocol.frame(message))

    def send_jobs(self, jobs: list) -> None:
        """``protocol.Predict(jobs)``, raw bodies through the shared buffer when they fit."""
        if self.shared is not None:
            offset, moved = 0, []
            for job_id, payload in jobs:
                if payload[0] == "raw" and offset + len(payload[2]) <= len(self.shared):
                    end = offset + len(payload[2])
                    self.shared[offset:end] = payload[2]
                    payload, offset = ("shared", payload[1], offset, end - offset), end
                moved.append((job_id, payload))
            jobs = moved
        self.send(protocol.Predict(jobs))

    def close(self) -> None:
        self.transport.close()
        if self.shared is not None:
            self.shared.close()
            self.shared = None


def _shared_buffer() -> tuple[int, mmap.mmap] | tuple[None, None]:
    if not hasattr(os, "memfd_create"):
        return None, None  # not Linux: bodies go through the socket
    fd = os.memfd_create("predictor-bodies", os.MFD_CLOEXEC)
    os.ftruncate(fd, SHARED_BYTES)
    return fd, mmap.mmap(fd, SHARED_BYTES)


async def spawn(cmd: list[str], *, env: dict, cwd: str, on_message, on_closed) -> WorkerProcess:
    ours, theirs = socket.socketpair()
    for end in (ours, theirs):  # a 12 MB request in few syscalls (the kernel caps it at wmem_max)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    fd, shared = _shared_buffer()
    loop = asyncio.get_running_loop()
    # connected before the child exists, so no message of it can arrive unheard
    transport, _ = await loop.create_unix_connection(lambda: _Channel(on_message, on_closed), sock=ours)
    process = WorkerProcess(transport, shared)
    extra = ["--fd", str(theirs.fileno())] + (["--shared-fd", str(fd), "--shared-size", str(SHARED_BYTES)]
                                             if fd is not None else [])
    try:
        process.proc = await asyncio.create_subprocess_exec(
            *cmd, *extra, pass_fds=[theirs.fileno()] + ([fd] if fd is not None else []), cwd=cwd, env=env,
            stdin=subprocess.DEVNULL)
    except BaseException:
        process.close()
        raise
    finally:
        theirs.close()
        if fd is not None:
            os.close(fd)  # the mapping stays; the worker has its own descriptor
    return process


def resolve(payload, shared: mmap.mmap | None):
    """Worker side: a ``("shared", content_type, offset, length)`` payload back to ``("raw", ...)``."""
    if payload[0] != "shared":
        return payload
    _, content_type, offset, length = payload
    return ("raw", content_type, shared[offset:offset + length])
