"""The data tools a run starts itself (the prepare step: generators, im2rec, face_rec).

``run(ledger, backend, plan, tool, log)`` runs ``python -m <tool.module> <tool.args>``
from the project folder with the allow-listed environment, output appended to the run's
``logs/prepare.log``, and blocks until it exits; a non-zero exit is ``StepFailed`` with
the log's tail (and the free space, when the disk is nearly full and the log may be
empty for that reason). The tool is in the ledger (kind ``process``) before it starts and
carries ``ORCHESTRATOR_RUN_ID`` in its environment, so ``cleanup`` stops it after a
SIGKILL of the orchestrator; one an earlier attempt of the run left running is stopped
first; on Ctrl-C or SIGTERM it is stopped before the exception goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import Callable

import psutil

from . import failpoints
from .backends.base import Resource
from .childenv import allowed_env
from .errors import StepFailed
from .files import tail
from .reconcile import RUN_ENV, remove, stop_process
from .tasks import REPO_ROOT, DataTool


def run(ledger, backend, plan, tool: DataTool, log: Callable[[str], None]) -> None:
    run_id, log_path = plan.run_id, plan.run_dir / "logs" / "prepare.log"
    stale = [(Resource("process", r.ref_id or r.name, r.name, r.run_id), r.rid)
             for r in ledger.live_resources(run_id) if r.kind == "process"]
    if stale:   # an earlier attempt's tool may still be writing where this one will
        remove(backend, ledger, stale, lambda msg: log(msg + " (left by an earlier attempt)"))
    rid = ledger.intend(run_id, "process", f"{tool.title} of {run_id}", {"step": "prepare"})
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", tool.module, *tool.args], cwd=REPO_ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**allowed_env(), RUN_ENV: run_id})
    try:
        try:
            started = psutil.Process(proc.pid).create_time()
        except psutil.Error:   # already finished
            started = time.time()
        ledger.created(rid, f"{proc.pid}:{started}")
        failpoints.hit("prepare:tool")
        code = proc.wait()
    finally:   # in its own session the terminal's Ctrl-C does not reach it: we stop it
        if proc.poll() is None:
            stop_process(proc.pid, started)
            proc.wait()
        ledger.deleted(rid)
    if code != 0:
        why = tail(log_path, 8) or "(it wrote nothing)"
        free = shutil.disk_usage(plan.run_dir).free
        if free < 64 << 20:
            why += f"\nonly {free >> 20} MB are free on the disk holding {plan.root}"
        raise StepFailed("prepare", f"{tool.title} failed (exit {code}):\n{why}", log=str(log_path))
