"""The processes of a training job on this machine: their roles, commands and environment.

``instance_count: 1`` is one process, ``worker-0``, with ModelArts' single-node environment.
``instance_count: N > 1`` emulates N nodes as an MXNet parameter-server job on loopback,
like ``tools/launch.py --launcher local`` but bound to 127.0.0.1 only: one ``scheduler``,
N servers (``server-i``, one per node as on ModelArts) and N workers (``worker-i``).
Scheduler and servers are ``python -c "import mxnet"``: with ``DMLC_ROLE`` set to
``scheduler`` or ``server``, MXNet runs the kvstore server loop on import and exits when
the workers finish. Each worker is the job script with ``--kv_store=dist_sync`` (unless a
hyperparameter sets kv_store) and node i's ModelArts environment (``VC_TASK_INDEX=i`` ...),
started through ``worker_boot.py``.
``worker-i`` is node i; its kvstore rank is assigned by the scheduler (MXNet orders nodes
by port), so it need not be i: the script logs it.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..base import JobSpec

LOOPBACK = "127.0.0.1"
SERVER_COMMAND = (sys.executable, "-c", "import mxnet")
WORKER_BOOT = Path(__file__).with_name("worker_boot.py")


@dataclass(frozen=True)
class Role:
    name: str      # "worker-1", "server-0", "scheduler": also the stem of its log file
    kind: str      # DMLC_ROLE: worker | server | scheduler
    node: int      # the emulated node it runs on (VC_TASK_INDEX)


def roles(instance_count: int) -> tuple[Role, ...]:
    """Scheduler first, then servers, then workers (the order they are started in)."""
    workers = tuple(Role(f"worker-{i}", "worker", i) for i in range(instance_count))
    if instance_count == 1:
        return workers
    servers = tuple(Role(f"server-{i}", "server", i) for i in range(instance_count))
    return (Role("scheduler", "scheduler", 0),) + servers + workers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the scheduler binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def kv_store_args(hyperparameters: list, instance_count: int) -> list[str]:
    """``--kv_store=dist_sync`` for multi-node jobs whose hyperparameters do not choose one."""
    chosen = {name.replace("-", "_") for name, _ in hyperparameters}
    return ["--kv_store=dist_sync"] if instance_count > 1 and "kv_store" not in chosen else []


def node_env(job: JobSpec, node: int, job_dir: Path, code: Path, store_root: str = "") -> dict[str, str]:
    """What ModelArts v2 sets on node ``node`` of the job, so scripts that read it run unchanged;
    with ``store_root``, ORCHESTRATOR_OBS_ROOT too (moxing's obs:// on the local store)."""
    count = job.instance_count
    index = str(node)
    env = {"MA_NUM_HOSTS": str(count), "VC_TASK_INDEX": index, "MA_TASK_INDEX": index,
            "VC_WORKER_NUM": str(count), "VC_WORKER_HOSTS": ",".join([LOOPBACK] * count),
            "MA_CURRENT_IP": LOOPBACK, "MA_NUM_GPUS": "0", "MA_TASK_NAME": "worker",
            "MA_JOB_DIR": str(code.parent), "MA_LOG_DIR": str(job_dir / "logs"),
            "MA_CURRENT_INSTANCE_NAME": f"{job.name}-worker-{node}",
            "DLS_TASK_INDEX": index, "DLS_TASK_NUMBER": str(count), "DLS_APP_URL": str(code),
            "DLS_DATA_URL": job.data_url, "DLS_TRAIN_URL": job.train_url}
    return {**env, "ORCHESTRATOR_OBS_ROOT": store_root} if store_root else env


def dmlc_env(role: Role, instance_count: int, port: int) -> dict[str, str]:
    """MXNet's parameter-server variables; every node binds and advertises 127.0.0.1 only."""
    return {"DMLC_ROLE": role.kind, "DMLC_PS_ROOT_URI": LOOPBACK, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_WORKER": str(instance_count), "DMLC_NUM_SERVER": str(instance_count),
            "DMLC_NODE_HOST": LOOPBACK, "DMLC_INTERFACE": "lo"}


def role_env(job: JobSpec, role: Role, port: int | None, job_dir: Path, code: Path,
             store_root: str) -> dict[str, str]:
    """The full extra environment of one process (the user's ``envs`` win)."""
    count = job.instance_count
    env = node_env(job, role.node, job_dir, code, store_root)
    if count > 1:
        env.update(dmlc_env(role, count, port))
        # The emulated nodes share this machine's cores: a fair share each, so N workers
        # do not oversubscribe them (servers only sum gradients).
        share = max(1, (os.cpu_count() or 1) // count) if role.kind == "worker" else 1
        env["OMP_NUM_THREADS"] = str(share)
    env.update(dict(job.envs))
    return env


def role_command(role: Role, worker_command: list[str], instance_count: int) -> list[str]:
    """``worker_command`` is ``[python, script, args...]``; in a multi-node job workers start
    through ``worker_boot.py`` so that a failed worker exits instead of hanging."""
    if role.kind != "worker":
        return list(SERVER_COMMAND)
    if instance_count == 1:
        return list(worker_command)
    return [worker_command[0], str(WORKER_BOOT), *worker_command[1:]]
