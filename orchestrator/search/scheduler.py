"""How many trials run at once, and with how many threads each, so that trials sharing
this machine never oversubscribe its cores: ``threads per trial x parallel trials <= cores``.

Pure accounting (no processes); the runner asks ``allocate`` once and starts at most
``parallel`` trials at a time, each with ``OMP_NUM_THREADS`` = ``threads``. On ModelArts
(not this machine) every trial gets its own nodes, so only ``max_parallel`` limits it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Allocation:
    parallel: int              # trials running at the same time
    threads: int | None        # OMP threads per trial (None: the flavour's own machine decides)
    cores: int | None          # cores shared by the trials (None: not this machine)
    reason: str                # one line for plan and the report

    def thread_envs(self) -> tuple[tuple[str, str], ...]:
        if self.threads is None:
            return ()
        return (("OMP_NUM_THREADS", str(self.threads)), ("MXNET_CPU_WORKER_NTHREADS", "1"))


def allocate(*, trials: int, max_parallel: int, cores: int | None, threads: int | None = None,
             nodes_per_trial: int = 1) -> Allocation:
    """``cores`` is this machine's core count when the trials run here, None when each trial
    gets its own cloud machine. ``threads`` is what the trial asked for (its envs'
    OMP_NUM_THREADS), None to share the cores evenly. ``nodes_per_trial`` > 1 (dist_sync)
    counts each emulated node's worker as a trial process."""
    if trials < 1 or max_parallel < 1 or nodes_per_trial < 1:
        raise ValueError("trials, max_parallel and nodes_per_trial must be at least 1")
    wanted = min(max_parallel, trials)
    if cores is None:
        return Allocation(wanted, threads, None, f"{wanted} trial(s) at a time, each on its own machine")
    if cores < 1:
        raise ValueError("cores must be at least 1")
    per_trial_min = (threads or 1) * nodes_per_trial
    if per_trial_min > cores:             # a trial that asks for more than the machine has gets all of it
        threads, per_trial_min = max(1, cores // nodes_per_trial), max(1, cores // nodes_per_trial) * nodes_per_trial
    parallel = max(1, min(wanted, cores // per_trial_min))
    if threads is None:
        threads = max(1, cores // (parallel * nodes_per_trial))
    reason = (f"{parallel} trial(s) at a time x {threads} thread(s)"
              + (f" x {nodes_per_trial} nodes" if nodes_per_trial > 1 else "") + f" <= {cores} cores")
    if parallel < wanted:
        reason += f" (max_parallel {max_parallel} would oversubscribe them)"
    return Allocation(parallel, threads, cores, reason)
