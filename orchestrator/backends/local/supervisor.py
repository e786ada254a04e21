"""Runs one training job to its end, independently of the orchestrator process.

``python -m orchestrator.backends.local.supervisor JOB_DIR`` reads ``JOB_DIR/job.json``,
walks the job through Creating (code copied, inputs staged from the object store) ->
Pending -> Running (the job's processes, see ``distributed.py``: the script as
``worker-0``, or for ``instance_count`` N > 1 a scheduler, N servers and N workers) ->
Completed (every worker exited 0; outputs copied to ``train_url``) | Failed | Terminated,
and records every transition in ``JOB_DIR/state.json`` with the processes it started.

Each process logs to ``logs/<role>.log``; the supervisor appends their whole lines to
``logs/job.log`` (prefixed ``[worker-1] `` etc. when there are several), which is what
``job_logs`` shows. The first process to exit non-zero (workers are checked first) fails
the job with its name, exit code and last log lines, and all the others are stopped.
SIGTERM terminates the job; ``max_runtime_s`` is enforced here, so it holds even when the
orchestrator is gone. No process outlives the job: each is stopped with its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..base import JobSpec
from ..staging import stage_code
from . import distributed, procs
from .storage import LocalObjectStore

# Outputs are copied to train_url this often while the job runs (checkpoints survive a crash).
SYNC_S = float(os.environ.get("ORCHESTRATOR_OUTPUT_SYNC_S", "10"))
STOP = threading.Event()   # set by SIGTERM: stop the processes, record Terminated
# Failures whose cause the log names better than the last lines: (marker in the log, hint).
OBS_READ_HINT = ("\nhint: MXNet reads only local files here (ModelArts' MXNet engine was built with S3 support; "
                 "the pip wheel is not). Copy the files to a local folder with moxing first and read them from "
                 "there, as ModelArts tutorials do: import moxing as mox; mox.file.copy_parallel(args.data_url, "
                 "local_dir)")
HINTS = (("DMLC_USE_S3", OBS_READ_HINT), ("unknown filesystem protocol obs://", OBS_READ_HINT),
         ("unknown filesystem protocol s3://", OBS_READ_HINT))
EXIT_GRACE_S = 30.0        # servers and scheduler leave by themselves once the workers are done


def record(job_dir: Path, phase: str, reason: str = "", **extra) -> None:
    state = procs.read_json(job_dir / "state.json") or {"history": []}
    state["history"].append({"phase": phase, "reason": reason, "at": time.time()})
    state.update(phase=phase, reason=reason, **extra)
    procs.write_json(job_dir / "state.json", state)


def log(job_dir: Path, message: str) -> None:
    with open(job_dir / "logs" / "supervisor.log", "a") as fh:
        fh.write(time.strftime("%H:%M:%S ") + message + "\n")


def job_command(job: JobSpec, code: Path, data: Path, output: Path) -> list[str]:
    args = [f"--data_url={data}/", f"--train_url={output}/", "--num_gpus=0"]
    args += distributed.kv_store_args(job.hyperparameters, job.instance_count)
    args += [f"--{k}={v}" for k, v in job.hyperparameters]
    return [sys.executable, str(code / job.boot_file), *args]


class LogMerger:
    """Copies the whole new lines of every process log into ``logs/job.log``."""

    def __init__(self, logs: Path, names: list[str]):
        self.logs, self.offsets = logs, dict.fromkeys(names, 0)
        self.prefixed = len(names) > 1

    def drain(self, final: bool = False) -> None:
        """``final``: also the last line without a newline (its process has ended)."""
        out = []
        for name, offset in self.offsets.items():
            try:
                with open(self.logs / f"{name}.log", "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            end = len(chunk) if final else chunk.rfind(b"\n") + 1
            self.offsets[name] = offset + end
            for line in chunk[:end].decode("utf-8", "replace").splitlines():
                out.append(f"[{name}] {line}" if self.prefixed else line)
        if out:
            with open(self.logs / "job.log", "a", encoding="utf-8") as fh:
                fh.write("\n".join(out) + "\n")


class Cluster:
    """The job's processes, started, watched and stopped together."""

    def __init__(self, job: JobSpec, store_root: str, job_dir: Path, command: list[str], code: Path):
        self.job_dir, self.logs = job_dir, job_dir / "logs"
        self.roles = distributed.roles(job.instance_count)
        port = distributed.free_port() if len(self.roles) > 1 else None
        self.merger = LogMerger(self.logs, [r.name for r in self.roles])
        self.procs: dict[str, tuple[subprocess.Popen, procs.ProcId]] = {}
        try:
            for role in self.roles:
                # As on ModelArts: the code folder's parent is the working directory and on the
                # import path (``from <code folder>.symbol import ...``), the code folder too.
                env = procs.child_env(distributed.role_env(job, role, port, job_dir, code, store_root),
                                      pythonpath=[code.parent, code])
                cmd = distributed.role_command(role, command, job.instance_count)
                log(job_dir, f"{role.name}: " + " ".join(cmd))
                self.procs[role.name] = procs.spawn(cmd, log_path=self.logs / f"{role.name}.log", cwd=code.parent,
                                                    env=env)
        except BaseException:
            self.stop()   # the ones already started
            raise

    def idents(self) -> dict[str, dict]:
        return {name: ident.to_dict() for name, (_, ident) in self.procs.items()}

    def workers_done(self) -> bool:
        return all(self.procs[r.name][0].poll() == 0 for r in self.roles if r.kind == "worker")

    def failure(self) -> tuple[str, int] | None:
        """(name, exit code) of a process that failed, workers first. Servers and the
        scheduler exit 0 once every worker has reached the kvstore's final barrier, which
        can be a moment before the last worker process ends, so only a non-zero code counts."""
        for role in sorted(self.roles, key=lambda r: r.kind != "worker"):
            code = self.procs[role.name][0].poll()
            if code not in (None, 0):
                return role.name, code
        return None

    def reason(self, name: str, code: int) -> str:
        who = "the script" if len(self.roles) == 1 else name
        lines = [line for line in procs.tail(self.logs / f"{name}.log", 10).splitlines() if line.strip()]
        last = "\n".join(lines[-3:])
        hint = next((h for marker, h in HINTS if marker in procs.tail(self.logs / f"{name}.log", 200)), "")
        return f"{who} exited with code {code}" + (f"; last log lines:\n{last}" if last else "") + hint

    def wait_servers(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while any(p.poll() is None for p, _ in self.procs.values()) and time.time() < deadline:
            if STOP.is_set():
                break
            time.sleep(0.1)
        for name, (proc, _) in self.procs.items():
            if proc.poll() is None:
                log(self.job_dir, f"{name} did not exit {timeout:.0f}s after the workers finished: stopping it")
            elif proc.returncode != 0:
                log(self.job_dir, f"{name} exited with code {proc.returncode} after the workers finished")
        self.stop()

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop every process (in parallel, so the grace periods do not add up) and reap it."""
        items = list(self.procs.values())
        with ThreadPoolExecutor(max(1, len(items))) as pool:
            list(pool.map(lambda item: procs.stop(item[1], grace_s=grace_s), items))
        for proc, _ in items:
            proc.wait()
        self.merger.drain(final=True)


def sync_outputs(store: LocalObjectStore, output: Path, job: JobSpec, job_dir: Path) -> None:
    """Copy what the job wrote so far to train_url (unchanged files are skipped), so that
    checkpoints outlive a failed or stopped job, as files written to OBS do."""
    try:
        store.put(str(output), job.train_url)
    except Exception as exc:   # a half-written file: the next sync or the final upload catches up
        log(job_dir, f"syncing outputs to {job.train_url} failed for now: {exc}")


def main(job_dir: Path) -> int:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    written = procs.read_json(job_dir / "job.json")
    job, store_root = JobSpec.from_json(written), written["store_root"]
    store = LocalObjectStore(Path(store_root))
    record(job_dir, "Creating", "staging code and data", supervisor=procs.identify(os.getpid()).to_dict())
    code = job_dir / "code" / Path(job.code_dir).name
    data, output = job_dir / "data", job_dir / "output"
    try:
        stage_code(job.code_dir, job.include_dirs, code, job.shipped)
        store.get(job.data_url, str(data))
        output.mkdir(parents=True, exist_ok=True)
        if store.list(job.train_url):   # as on OBS, a restarted job sees what it wrote before (checkpoints)
            store.get(job.train_url, str(output))
    except Exception as exc:  # staging problems end the job with a reason, never silently
        record(job_dir, "Failed", f"staging failed: {exc}")
        return 1
    if STOP.is_set():
        record(job_dir, "Terminated", "stopped before start")
        return 0
    record(job_dir, "Pending", "starting the script")
    try:
        cluster = Cluster(job, store_root, job_dir, job_command(job, code, data, output), code)
    except OSError as exc:
        record(job_dir, "Failed", f"could not start the job's processes: {exc}")
        return 1
    idents = cluster.idents()
    record(job_dir, "Running", "", processes=idents, worker=idents["worker-0"])
    deadline = time.time() + float(job.max_runtime_s or 1e12)
    next_sync = time.time() + SYNC_S
    while not cluster.workers_done():
        cluster.merger.drain()
        failed = cluster.failure()
        if failed:
            cluster.stop()
            sync_outputs(store, output, job, job_dir)
            record(job_dir, "Failed", cluster.reason(*failed), exit_code=failed[1], failed_process=failed[0])
            return 1
        if STOP.is_set() or time.time() > deadline:
            cluster.stop()
            sync_outputs(store, output, job, job_dir)
            stopped = STOP.is_set()   # read once: a late SIGTERM must not mix the two outcomes
            why = "terminated on request" if stopped else f"exceeded max_runtime of {job.max_runtime_s:.0f}s"
            record(job_dir, "Terminated" if stopped else "Failed", why)
            return 0 if stopped else 1
        if time.time() >= next_sync:
            sync_outputs(store, output, job, job_dir)
            next_sync = time.time() + SYNC_S
        time.sleep(0.2)
    cluster.wait_servers(EXIT_GRACE_S)
    try:
        stats = store.put(str(output), job.train_url)
        log(job_dir, f"uploaded {stats.files} output files ({stats.bytes} bytes) to {job.train_url}")
    except Exception as exc:
        record(job_dir, "Failed", f"copying outputs to {job.train_url} failed: {exc}")
        return 1
    record(job_dir, "Completed", "", exit_code=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
