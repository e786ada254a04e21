"""Test helpers for the cloud path: a moto S3 server and the ModelArts emulator, each a
real process on a free 127.0.0.1 port, stopped (and its children with it) on exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

AK, SK, PROJECT = "EMULATORAK0000000001", "emulator-secret-key-0001", "emulator-project"
ENV = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(cmd: list[str], url: str, log: Path, env: dict):
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env}, start_new_session=True)
    try:
        _wait_http(url, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def moto_server(folder: Path):
    """An S3-compatible server accepting OBS' 100 KB minimum part size; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url,
                  folder / "moto.log", {"S3_UPLOAD_PART_MIN_SIZE": "102400"}):
        yield url


@contextmanager
def emulator(folder: Path, obs_url: str, *extra: str):
    """The ModelArts emulator over ``obs_url``; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "orchestrator.emulator", "--port", str(port), "--root", str(folder / "emulator"),
           "--obs-endpoint", obs_url, "--project-id", PROJECT, *extra]
    with _process(cmd, url, folder / "emulator.log", ENV) as proc:
        yield url, proc


def profile(modelarts_url: str, obs_url: str, root: Path, **overrides) -> dict:
    """A config.json profile for the emulator + moto pair."""
    return {"backend": "modelarts", "region": "local-1", "project_id": PROJECT, "modelarts_endpoint": modelarts_url,
            "obs_endpoint": obs_url, "root": str(root), "path_style": True, "obs_signature": "v2",
            "create_bucket": True, "poll_interval": 0.2, "retries": 3, **overrides}


def write_config(tmp_path: Path, modelarts_url: str, obs_url: str, **overrides) -> Path:
    """config.json with the tiny pipelines' local profile plus an 'emulator' profile."""
    path = tmp_path / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {"profiles": {}}
    config["profiles"]["emulator"] = profile(modelarts_url, obs_url, tmp_path / "state", **overrides)
    path.write_text(json.dumps(config))
    return path


def wait_job(backend, ref, phases=("Completed", "Failed", "Terminated"), timeout=60.0):
    """The job's state once it reaches one of ``phases`` (AssertionError after ``timeout``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = backend.job_status(ref)
        if state.phase in phases:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {ref.name} did not reach {phases}")
