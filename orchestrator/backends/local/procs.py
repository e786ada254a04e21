"""Processes the local backend starts: spawn them in their own session, remember who they
are (pid + start time, so a recycled pid is never killed by mistake) and stop their whole
process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ...childenv import allowed_env
from ...files import read_json, tail, write_json  # noqa: F401  (the backend's modules call procs.*)

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"   # mms / moxing shims


@dataclass(frozen=True)
class ProcId:
    pid: int
    started: float                   # psutil create_time

    def to_dict(self) -> dict:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_dict(cls, data: dict | None) -> "ProcId | None":
        return cls(int(data["pid"]), float(data["started"])) if data else None


def identify(pid: int) -> ProcId | None:
    try:
        return ProcId(pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def alive(proc: ProcId | None) -> bool:
    if proc is None:
        return False
    try:
        p = psutil.Process(proc.pid)
        return abs(p.create_time() - proc.started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spawn(cmd: list[str], *, log_path: Path, cwd: Path | None = None, env: dict | None = None) -> tuple[subprocess.Popen, ProcId]:
    """Start ``cmd`` in a new session (its own process group) with output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ident = identify(proc.pid) or ProcId(proc.pid, time.time())
    return proc, ident


def stop(proc: ProcId | None, grace_s: float = 10.0) -> bool:
    """SIGTERM the process group of ``proc`` (and any stray descendants), SIGKILL what is
    left after ``grace_s``. Idempotent; returns True when something was running."""
    if not alive(proc):
        return False
    try:
        victims = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return False
    _signal_group(proc.pid, signal.SIGTERM)
    for v in victims:
        _quiet(v.send_signal, signal.SIGTERM)
    _, left = psutil.wait_procs(victims, timeout=grace_s)
    if left:
        _signal_group(proc.pid, signal.SIGKILL)
        for v in left:
            _quiet(v.kill)
        psutil.wait_procs(left, timeout=5)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:   # only groups we created (start_new_session)
            os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except psutil.Error:
        pass


def child_env(extra: dict[str, str] | None = None, pythonpath: list[Path] | None = None) -> dict[str, str]:
    """The allow-listed environment (``childenv.allowed_env``: no credentials) + the
    runtime shims on ``PYTHONPATH`` + ``extra`` (what the job spec names)."""
    env = allowed_env()
    paths = [str(p) for p in (pythonpath or [])] + [str(RUNTIME_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
