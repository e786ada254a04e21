"""Runs one training job to its end, independently of the orchestrator process.

``python -m orchestrator.backends.local.supervisor JOB_DIR`` reads ``JOB_DIR/job.json``,
walks the job through Creating (code copied, inputs staged from the object store) ->
Pending -> Running (the script as a child process with ModelArts' arguments and
environment) -> Completed (outputs copied to ``train_url``) | Failed | Terminated, and
records every transition in ``JOB_DIR/state.json``. SIGTERM terminates the job;
``max_runtime_s`` is enforced here, so it holds even when the orchestrator is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from . import procs
from .storage import LocalObjectStore

STOP = threading.Event()   # set by SIGTERM: stop the script, record Terminated


def record(job_dir: Path, phase: str, reason: str = "", **extra) -> None:
    state = procs.read_json(job_dir / "state.json") or {"history": []}
    state["history"].append({"phase": phase, "reason": reason, "at": time.time()})
    state.update(phase=phase, reason=reason, **extra)
    procs.write_json(job_dir / "state.json", state)


def log(job_dir: Path, message: str) -> None:
    with open(job_dir / "logs" / "supervisor.log", "a") as fh:
        fh.write(time.strftime("%H:%M:%S ") + message + "\n")


def job_command(job: dict, code: Path, data: Path, output: Path) -> list[str]:
    args = [f"--data_url={data}/", f"--train_url={output}/", "--num_gpus=0"]
    args += [f"--{k}={v}" for k, v in job["hyperparameters"]]
    return [sys.executable, str(code / job["boot_file"]), *args]


def job_env(job: dict, job_dir: Path, code: Path) -> dict:
    # What ModelArts v2 sets on each node (single node here), so scripts that read it run unchanged.
    env = {"MA_NUM_HOSTS": "1", "VC_TASK_INDEX": "0", "MA_TASK_INDEX": "0", "VC_WORKER_NUM": "1",
           "VC_WORKER_HOSTS": "127.0.0.1", "MA_CURRENT_IP": "127.0.0.1", "MA_NUM_GPUS": "0", "MA_TASK_NAME": "worker",
           "MA_JOB_DIR": str(code.parent), "MA_LOG_DIR": str(job_dir / "logs"), "MA_CURRENT_INSTANCE_NAME": f"{job['name']}-worker-0",
           "DLS_TASK_INDEX": "0", "DLS_TASK_NUMBER": "1", "ORCHESTRATOR_OBS_ROOT": job["store_root"]}
    env.update(dict(job["envs"]))
    return procs.child_env(env, pythonpath=[code])


def main(job_dir: Path) -> int:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    job = procs.read_json(job_dir / "job.json")
    store = LocalObjectStore(Path(job["store_root"]))
    record(job_dir, "Creating", "staging code and data", supervisor=procs.identify(os.getpid()).to_dict())
    code = job_dir / "code" / Path(job["code_dir"]).name
    data, output = job_dir / "data", job_dir / "output"
    try:
        shutil.copytree(job["code_dir"], code, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
        for extra in job.get("include_dirs", []):   # e.g. the inference code that export_model packs
            shutil.copytree(extra, code, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        store.get(job["data_url"], str(data))
        output.mkdir(parents=True, exist_ok=True)
    except Exception as exc:  # staging problems end the job with a reason, never silently
        record(job_dir, "Failed", f"staging failed: {exc}")
        return 1
    if STOP.is_set():
        record(job_dir, "Terminated", "stopped before start")
        return 0
    record(job_dir, "Pending", "starting the script")
    cmd = job_command(job, code, data, output)
    log(job_dir, "command: " + " ".join(cmd))
    child, ident = procs.spawn(cmd, log_path=job_dir / "logs" / "worker-0.log", cwd=code.parent,
                               env=job_env(job, job_dir, code))
    record(job_dir, "Running", "", worker=ident.to_dict())
    deadline = time.time() + float(job["max_runtime_s"] or 1e12)
    while child.poll() is None:
        if STOP.is_set() or time.time() > deadline:
            procs.stop(ident, grace_s=10)
            child.wait()
            stopped = STOP.is_set()   # read once: a late SIGTERM must not mix the two outcomes
            why = "terminated on request" if stopped else f"exceeded max_runtime of {job['max_runtime_s']:.0f}s"
            record(job_dir, "Terminated" if stopped else "Failed", why)
            return 0 if stopped else 1
        time.sleep(0.2)
    code_ = child.returncode
    if code_ != 0:
        last = procs.tail(job_dir / "logs" / "worker-0.log", 1)
        record(job_dir, "Failed", f"the script exited with code {code_}" + (f": {last}" if last else ""), exit_code=code_)
        return 1
    try:
        stats = store.put(str(output), job["train_url"])
        log(job_dir, f"uploaded {stats.files} output files ({stats.bytes} bytes) to {job['train_url']}")
    except Exception as exc:
        record(job_dir, "Failed", f"copying outputs to {job['train_url']} failed: {exc}")
        return 1
    record(job_dir, "Completed", "", exit_code=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
