"""The image's training boot, ``run_train.sh``: ``python -m orchestrator.image.train
[--code-url URL] BOOT_FILE [--name=value ...]``.

What ModelArts' own ``run_train.sh`` does for the boot file of a custom-image job, with
this project's job runtime (``moxing`` and ``mms`` on the path, ModelArts' arguments):

1. Finds ``BOOT_FILE`` (relative to ``MA_JOB_DIR``, where ModelArts puts ``code_dir``).
   If it is not there and ``--code-url`` names an ``obs://`` folder, downloads that folder
   to ``MA_JOB_DIR/<its last level>`` first.
2. Arguments whose value is an ``obs://``/``s3://`` URL are staged: ``--train_url`` (and
   any name in ``$MA_OUTPUT_ARGS``, comma-separated) becomes a local output folder under
   ``~/modelarts/outputs/<name>_0/`` holding what the URL already had (checkpoints of an
   earlier attempt); any other becomes a local copy under ``~/modelarts/inputs/<name>_0/``
   (a folder, or the one file an URL names).
   Local paths (ModelArts' ``local_dir`` channels) are passed as they are.
3. Runs ``python BOOT_FILE ARGS`` in the home folder with the code folder, its parent and
   the runtime shims on ``sys.path``, output on stdout. SIGTERM and SIGINT are passed on to it.
4. Uploads the output folders to their URLs, also when the script failed or was stopped,
   and exits with the script's exit code (128 + signal when a signal ended it).

Exit code 2 without running anything: no boot file, or a download failed. Downloads and
uploads use the ``moxing`` on the path: this project's shim, which reaches the local store
of ``$ORCHESTRATOR_OBS_ROOT``, not the real OBS (on ModelArts the platform stages
``code_dir`` and the ``local_dir`` channels of the jobs the orchestrator creates).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.backends.local import procs

from . import layout

SCHEMES = ("obs://", "s3://")


def say(message: str) -> None:
    print(f"[run_train] {message}", flush=True)


def _mox():
    if str(procs.RUNTIME_DIR) not in sys.path:
        sys.path.append(str(procs.RUNTIME_DIR))
    import moxing
    return moxing


def split_argv(argv: list[str]) -> tuple[str | None, str, list[str]]:
    code_url = None
    if argv and argv[0].startswith("--code-url"):
        if "=" in argv[0]:
            code_url, argv = argv[0].split("=", 1)[1], argv[1:]
        else:
            code_url, argv = (argv[1] if len(argv) > 1 else None), argv[2:]
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: run_train.sh [--code-url obs://bucket/code/] BOOT_FILE [--name=value ...]")
    return code_url, argv[0], argv[1:]


def locate(boot_file: str, job_dir: Path, code_url: str | None) -> tuple[Path, Path]:
    """(boot file, code folder), downloading ``code_url`` when the file is not there."""
    rel = Path(boot_file)
    boot = rel if rel.is_absolute() else job_dir / rel
    code = boot.parent if rel.is_absolute() or len(rel.parts) < 2 else job_dir / rel.parts[0]
    if not boot.is_file() and code_url:
        folder = job_dir / code_url.rstrip("/").rsplit("/", 1)[-1]
        say(f"downloading the code folder {code_url} to {folder}")
        _mox().file.copy_parallel(code_url, str(folder))
    if not boot.is_file():
        raise FileNotFoundError(f"boot file {boot} not found: ModelArts downloads code_dir to "
                                f"{job_dir}/<last level of code_dir>; check code_dir and the job's command")
    return boot, code


def stage(args: list[str], home: Path, outputs: set[str]) -> tuple[list[str], list[tuple[Path, str]]]:
    """Arguments with OBS URLs replaced by local folders; the (folder, URL) to upload after."""
    out, uploads = [], []
    for arg in args:
        name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not sep or not value.lower().startswith(SCHEMES):
            out.append(arg)
            continue
        mox = _mox()
        url = value if value.endswith("/") else value + "/"
        if name in outputs:
            local = layout.under(home, layout.output_dir(name))
            local.mkdir(parents=True, exist_ok=True)
            if mox.file.exists(url):
                mox.file.copy_parallel(url, str(local))
            uploads.append((local, url))
        elif not value.endswith("/") and mox.file.exists(value) and not mox.file.is_directory(value):
            local = layout.under(home, layout.input_dir(name))
            local.mkdir(parents=True, exist_ok=True)
            say(f"downloading {value} to {local}")
            mox.file.copy(value, str(local / value.rsplit("/", 1)[-1]))
            out.append(f"--{name}={local / value.rsplit('/', 1)[-1]}")      # a file stays a file
            continue
        else:
            local = layout.under(home, layout.input_dir(name))
            say(f"downloading {url} to {local}")
            mox.file.copy_parallel(url, str(local))
        out.append(f"--{name}={local}/")
    return out, uploads


def run(cmd: list[str], cwd: Path, env: dict) -> int:
    """Run the script in its own process group; SIGTERM/SIGINT are passed on to it (also
    one that arrives while it is being started)."""
    child: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signum, _frame):
        say(f"signal {signal.Signals(signum).name}: passing it on to the training script")
        if not child:
            pending.append(signum)
            return
        try:
            os.killpg(child[0].pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child.append(subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True))
    for signum in pending:
        forward(signum, None)
    code = child[0].wait()
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    code_url, boot_file, args = split_argv(list(sys.argv[1:] if argv is None else argv))
    home = Path(os.environ.get("HOME") or layout.HOME)
    job_dir = Path(os.environ.get("MA_JOB_DIR") or layout.under(home, layout.JOB_DIR))
    outputs = {"train_url", *filter(None, os.environ.get("MA_OUTPUT_ARGS", "").split(","))}
    try:
        boot, code = locate(boot_file, job_dir, code_url)
        args, uploads = stage(args, home, outputs)
    except Exception as exc:  # noqa: BLE001 - nothing ran yet: say why, exit 2
        say(f"error: {exc}")
        return 2
    # as the local backend does: the code folder and its parent on the import path
    env = procs.child_env({"MA_JOB_DIR": str(job_dir)}, pythonpath=[code.parent, code])
    say(f"running {boot} {' '.join(args)}")
    code_ = run([sys.executable, str(boot), *args], home, env)
    for local, url in uploads:
        try:
            _mox().file.copy_parallel(str(local), url)
            say(f"uploaded {local} to {url}")
        except Exception as exc:  # noqa: BLE001 - report, and fail the job if it had succeeded
            say(f"error: uploading {local} to {url} failed: {exc}")
            code_ = code_ or 1
    say(f"the training script exited with code {code_}")
    return code_


if __name__ == "__main__":
    sys.exit(main())
