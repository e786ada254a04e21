"""The two servers benchmarks/serve.py compares: our predictor and Multi Model Server 1.1.11.

Both are started in their own session (``spawn``) with output to a log file, and
``stop()`` ends the whole process group (SIGTERM, then SIGKILL), so no process outlives a run.
``start()`` returns the cold start in seconds: process start until every worker has loaded
the model (ours: and answered its warm-up request; MMS: its log shows every worker in
state WORKER_MODEL_LOADED; MMS does no warm-up, so its first requests pay for it).
``rss_mb()`` / ``cpu_seconds()``: resident memory / CPU time of the server's process tree.

``find_mms(venv, cache)`` -> ``(venv_path, None)`` or ``(None, reason)``: uses ``--mms-venv``
(or ``$MMS_VENV``) when given, else ``<cache>/mms-1.1.11``, creating that venv with pip
(``multi-model-server==1.1.11`` plus the MXNet/NumPy/OpenCV pins of this project) when it
is missing. MMS needs Java 8+ on PATH (or ``$JAVA_HOME``).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil

from _serve_models import mms_folder

MMS_VERSION = "1.1.11"
MMS_PACKAGES = [f"multi-model-server=={MMS_VERSION}", "mxnet==1.9.1", "numpy==1.23.5",
                "opencv-python-headless>=4.8,<4.12", "Pillow>=10,<12"]


def free_port() -> int:
    """A free port below 32767: MMS's frontend refuses larger ones ("Invalid port number")."""
    for port in random.sample(range(20000, 32700), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32700")


def spawn(cmd: list[str], autogroup_nice: int | None, **popen) -> subprocess.Popen:
    """Start ``cmd`` in a new session (so ``os.killpg`` reaches all it starts); with
    ``autogroup_nice``, give that session's scheduler group this nice value (Linux: the CPU
    is first shared between sessions, so plain ``nice`` does not shield a benchmark from the
    other sessions of a shared machine; negative values need root)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, **popen)
    if autogroup_nice is not None:
        with open(f"/proc/{proc.pid}/autogroup", "w") as fh:
            fh.write(str(autogroup_nice))
    return proc


def _wait(check, timeout: float, proc: subprocess.Popen, log_path: str, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; log: {log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s; log: {log_path}")
        time.sleep(0.05)


class _Server:
    label = "?"
    url = ""

    def __init__(self, workdir: str, autogroup_nice: int | None = None):
        self.workdir, self.proc, self.autogroup_nice = workdir, None, autogroup_nice
        os.makedirs(workdir, exist_ok=True)
        self.log_path = os.path.join(workdir, "server.log")

    def _spawn(self, cmd: list[str], env: dict | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = spawn(cmd, self.autogroup_nice, cwd=self.workdir, env=env, stdout=log,
                              stderr=subprocess.STDOUT)

    def _tree(self) -> list:
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def rss_mb(self) -> float:
        return sum(_quiet(lambda: p.memory_info().rss) for p in self._tree()) / 2 ** 20

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's live processes."""
        return sum(_quiet(lambda: sum(p.cpu_times()[:2])) for p in self._tree())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # workers the leader left behind (its group, same session)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _quiet(read) -> float:
    try:
        return read()
    except psutil.Error:  # the process just exited
        return 0


class Ours(_Server):
    label = "ours"

    def __init__(self, package: str, workdir: str, workers: int, autogroup_nice: int | None = None,
                 label: str = "ours", batch_size: str = "1"):
        super().__init__(workdir, autogroup_nice)
        self.package, self.workers, self.label, self.batch_size = package, workers, label, batch_size

    def start(self, timeout: float = 180) -> float:
        ready = os.path.join(self.workdir, "ready.json")
        began = time.perf_counter()
        self._spawn([sys.executable, "-m", "orchestrator.predictor", "--model-dir", self.package,
                     "--workers", str(self.workers), "--ready-file", ready, "--port", "0",
                     "--batch-size", self.batch_size])
        _wait(lambda: os.path.exists(ready), timeout, self.proc, self.log_path, "our predictor")
        with open(ready) as fh:
            self.url = json.load(fh)["url"]
        return time.perf_counter() - began


class Mms(_Server):
    label = f"MMS {MMS_VERSION}"

    def __init__(self, venv: str, package: str, workdir: str, name: str, workers: int,
                 autogroup_nice: int | None = None):
        super().__init__(workdir, autogroup_nice)
        self.venv, self.name, self.workers = venv, name, workers
        self.store = os.path.join(workdir, "store")
        mms_folder(package, self.store, name)
        port, self.management = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}/predictions/{name}"
        self.config = os.path.join(workdir, "config.properties")
        with open(self.config, "w") as fh:  # MMS defaults otherwise (queue 100, netty threads = cores)
            fh.write(f"inference_address=http://127.0.0.1:{port}\n"
                     f"management_address=http://127.0.0.1:{self.management}\n"
                     f"model_store={self.store}\ndefault_workers_per_model={workers}\n")

    def _workers_ready(self) -> bool:
        # The management API says "READY" as soon as a worker process runs, before it loaded
        # the model; the frontend logs each worker's switch to WORKER_MODEL_LOADED.
        with open(self.log_path, "rb") as fh:
            return fh.read().count(b"-> WORKER_MODEL_LOADED") >= self.workers

    def start(self, timeout: float = 240) -> float:
        env = dict(os.environ, TMPDIR=self.workdir,  # MMS keeps its pid file in the temp folder
                   PATH=os.path.join(self.venv, "bin") + os.pathsep + os.environ.get("PATH", ""))
        env.pop("PYTHONPATH", None)
        began = time.perf_counter()
        self._spawn([os.path.join(self.venv, "bin", "multi-model-server"), "--start", "--foreground",
                     "--mms-config", self.config, "--model-store", self.store, "--models",
                     f"{self.name}={self.name}"], env=env)
        _wait(self._workers_ready, timeout, self.proc, self.log_path, "MMS")
        return time.perf_counter() - began


def _mms_ok(venv: str) -> bool:
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(os.path.join(venv, "bin", "multi-model-server")):
        return False
    probe = subprocess.run([python, "-c", "import mms.version, mxnet, cv2; print(mms.version.__version__)"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == MMS_VERSION


def find_mms(venv: str | None, cache: str) -> tuple[str | None, str | None]:
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return None, "Java is not installed (MMS's frontend is a Java program): install a JRE 8+ and rerun"
    venv = venv or os.environ.get("MMS_VENV")
    if venv:
        if _mms_ok(venv):
            return venv, None
        return None, (f"{venv} has no working multi-model-server {MMS_VERSION} with mxnet and opencv; "
                      f"create it with: python3.11 -m venv {venv} && {venv}/bin/pip install " + shlex.join(MMS_PACKAGES))
    venv = os.path.join(cache, f"mms-{MMS_VERSION}")
    if _mms_ok(venv):
        return venv, None
    print(f"installing MMS {MMS_VERSION} into {venv} (once; a few minutes)...", flush=True)
    log = os.path.join(cache, "mms-install.log")
    os.makedirs(cache, exist_ok=True)
    with open(log, "w") as fh:
        steps = [[sys.executable, "-m", "venv", "--clear", venv],
                 [os.path.join(venv, "bin", "pip"), "install", "--quiet", *MMS_PACKAGES]]
        for step in steps:
            if subprocess.run(step, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"installing MMS failed (no network to PyPI?); see {log}"
    return (venv, None) if _mms_ok(venv) else (None, f"MMS installed but does not import; see {log}")
