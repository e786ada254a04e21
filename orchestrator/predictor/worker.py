"""Predictor worker process: one service instance, one request (or batch) at a time.

Started by the front (``pool.py``, ``channel.py``) as ``python -m orchestrator.predictor.worker
--fd N --model-dir DIR --name NAME [--parent-pid P] [--py2-compat] [--batch-size B]
[--shared-fd M --shared-size S]`` with ``OMP_NUM_THREADS`` already in its environment and
cwd = the model folder. Speaks ``protocol.py`` on fd N; request bodies the front put in
the shared buffer M are read from there.

Contract:
* Ignores SIGINT/SIGTERM (the front decides when it stops; a terminal Ctrl-C reaches the
  whole process group) and dies with the front (``PR_SET_PDEATHSIG`` on Linux, and EOF).
* Loads the service (``loader.load_service``) and says ``loaded``; the network files it
  loads are the converted ones of the package's ``optimize.json`` unless ``MODEL_OPTIMIZE``
  says otherwise (``mms.optimized``; a mode the package lacks is a load failure, exit 2); answers the front's
  ``warmup`` with one synthetic request (``handler.Runner.warm_up``), then serves
  ``predict`` messages. ``--batch-size`` > 1 with a service that does not declare
  ``supports_batching = True`` is a load failure (exit 2), not a silent fallback;
  ``--batch-size 0`` (auto) serves either kind.
"""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from orchestrator.predictor import protocol
from orchestrator.predictor.channel import resolve


def _die_with_parent(parent_pid: int | None) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: EOF on the connection still ends us once we are idle
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)  # the front died before we armed the signal


def _load(conn: Connection, model_dir: str, name: str, py2_compat: bool, batch_size: int, runtime: str = ""):
    from orchestrator.predictor import loader
    from orchestrator.predictor.handler import Runner

    try:
        loader.prepare_path(model_dir)
        from mms import optimized

        try:
            mode = optimized.activate(model_dir, os.environ.get("MODEL_OPTIMIZE"))
        except (ValueError, OSError) as exc:
            raise loader.PackageError(str(exc)) from None
        if mode != "fp32":
            print(f"worker {os.getpid()}: serving the {mode} network of optimize.json", file=sys.stderr, flush=True)
        service, style = loader.load_service(model_dir, name, py2_compat=py2_compat, runtime=runtime)
        runner = Runner(service, style)
        if batch_size > 1 and not runner.batching:
            raise loader.PackageError(
                f"batch_size {batch_size} was asked for, but {type(service).__name__} does not declare "
                "supports_batching = True (see docs/predictor.md, 'Dynamic batching'); use batch_size 1")
    except loader.PackageError as exc:
        conn.send(protocol.LoadFailed(2, str(exc), ""))
        return None
    except BaseException as exc:  # SystemExit in a service module is a load failure too
        conn.send(protocol.LoadFailed(1, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return None
    conn.send(protocol.Loaded(os.getpid(), style, runner.batching))
    return runner


def serve(conn: Connection, model_dir: str, name: str, py2_compat: bool, batch_size: int = 1,
          runtime: str = "", shared=None) -> int:
    runner = _load(conn, model_dir, name, py2_compat, batch_size, runtime)
    if runner is None:
        return 1
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0  # the front is gone
        if msg is None:
            return 0
        if isinstance(msg, protocol.Warmup):
            status, note = runner.warm_up()
            if status != 200:
                print(f"worker {os.getpid()}: warm-up request answered {status} ({note}); "
                      "serving anyway", file=sys.stderr, flush=True)
            replies = [protocol.Warm(status, note)]
        else:
            jobs = [(job_id, resolve(payload, shared)) for job_id, payload in msg.jobs]
            results = [runner.handle(jobs[0][1])] if len(jobs) == 1 else runner.handle_batch([p for _, p in jobs])
            replies = [protocol.Result(job_id, *result) for (job_id, _), result in zip(jobs, results)]
        try:
            for reply in replies:
                conn.send(reply)
        except OSError:
            return 0  # the front is gone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator.predictor.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--py2-compat", action="store_true")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--runtime", default="", help="overrides config.json's runtime (python2.7 when unset)")
    parser.add_argument("--shared-fd", type=int)
    parser.add_argument("--shared-size", type=int, default=0)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent(args.parent_pid)
    conn = Connection(args.fd)
    shared = mmap.mmap(args.shared_fd, args.shared_size) if args.shared_fd is not None else None
    os.chdir(args.model_dir)
    try:
        return serve(conn, os.path.abspath(args.model_dir), args.name, args.py2_compat, args.batch_size,
                     args.runtime, shared)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
