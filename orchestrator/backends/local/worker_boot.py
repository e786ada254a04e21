"""Boot wrapper of a parameter-server worker: ``python worker_boot.py SCRIPT ARGS...``.

Runs SCRIPT as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``, as ``python SCRIPT ARGS``
would (like ModelArts' ``run_train.sh`` around the boot file). Why it exists: when a
worker of a ``dist_*`` kvstore fails, Python's normal exit destroys the kvstore, whose
destructor waits at a barrier for all the other workers, which never come: the failed
worker would hang instead of exiting. So after a failure (an uncaught exception, or
``sys.exit`` with a non-zero code) this prints the traceback, flushes and leaves with
``os._exit``. After success it first waits for MXNet's pending operations: the last
kvstore pushes are asynchronous, and Python's exit stops MXNet's engine before the
kvstore is freed, so a script that does not wait itself would drop its last gradients
and hang the other workers; then the kvstore shuts down normally (barrier, servers stop).
Standalone on purpose: it runs with the job's interpreter and imports nothing of ours.
"""

import os
import runpy
import sys
import traceback


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)   # sys.exit("message") prints it and exits 1
    return 1


def main() -> None:
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + sys.argv[2:]
    sys.path[0] = os.path.dirname(script)
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:  # noqa: B036 - report like Python would, then leave at once
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:   # hide our frames
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        code = 1
    if code != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].nd.waitall()


if __name__ == "__main__":
    main()
