"""Runs batch-inference workers (``worker.py``) over a list of files, in parallel, with
progress, resumable: each attempt shards the files not yet answered over ``workers``
processes that append to their own part files under ``work_dir/parts/``; a later attempt
(``run --resume``) reads every part and sends only what is missing.

``run_workers`` blocks until every file has a record, and never leaves a worker running:
on an error, Ctrl-C or SIGTERM the workers are stopped before the exception propagates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ..files import tail
from ..errors import StepFailed
from ..predictor.config import cpu_cores
from .worker import done_files

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def py2_package(model_dir: Path) -> bool:
    try:
        return str(json.loads((model_dir / "config.json").read_text()).get("runtime", "")).startswith("python2")
    except (OSError, ValueError, AttributeError):
        return False


def run_workers(step: str, model_dir: Path, files: list[str], work_dir: Path, workers: int,
                on_progress: Callable[[int, int], None], poll: float = 0.3) -> dict[str, dict]:
    """{file: record} for every file (see ``worker.py`` for the record)."""
    parts = work_dir / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    records = _read_parts(parts)
    remaining = [f for f in files if f not in records]
    on_progress(len(files) - len(remaining), len(files))
    if not remaining:
        return records
    attempt = len(list(parts.glob("part-*.jsonl")))
    n = max(1, min(workers, len(remaining)))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cpu_cores() // n)), "MXNET_CPU_WORKER_NTHREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (PROJECT_ROOT, os.environ.get("PYTHONPATH")) if p)}
    procs: list[tuple[subprocess.Popen, Path, Path]] = []
    try:
        for i in range(n):
            listing = work_dir / f"inputs-{attempt + i:03d}.txt"
            listing.write_text("".join(f + "\n" for f in remaining[i::n]))
            part, log = parts / f"part-{attempt + i:03d}.jsonl", work_dir / f"worker-{attempt + i:03d}.log"
            with open(log, "ab") as fh:
                cmd = [sys.executable, "-m", "orchestrator.batch.worker", "--model-dir", str(model_dir),
                       "--inputs", str(listing), "--out", str(part)] + (["--py2-compat"] if py2_package(model_dir) else [])
                procs.append((subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               env=env, cwd=PROJECT_ROOT), part, log))
        while True:
            finished = all(p.poll() is not None for p, _, _ in procs)
            done = len(files) - len(remaining) + sum(len(done_files(str(part))) for _, part, _ in procs)
            on_progress(min(done, len(files)), len(files))
            if finished:
                break
            time.sleep(poll)
        for proc, _, log in procs:
            if proc.returncode != 0:
                raise StepFailed(step, f"a worker exited with {proc.returncode}:\n{tail(log, 8)}", log=str(log))
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return _read_parts(parts)


def _read_parts(parts: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in sorted(parts.glob("part-*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                out[record["file"]] = record
            except (ValueError, KeyError, TypeError):
                continue
    return out
