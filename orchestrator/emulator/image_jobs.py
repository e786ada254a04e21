"""A v2 training job with ``algorithm.engine.image_url``, run the way ModelArts runs a
custom image, with the image's own boot scripts (``HostImage``: the build context's files,
container paths under the job's root folder):

1. ``code_dir`` is downloaded to ``MA_JOB_DIR/<last level of code_dir>``; each input to
   its ``local_dir`` (default ``~/modelarts/inputs/<name>_0/``); each output's
   ``local_dir`` (default ``~/modelarts/outputs/<name>_0/``) is created.
2. ``algorithm.command`` runs in the home folder with ModelArts' environment (``MA_*``,
   ``VC_*``), the image's ``ENV`` and the job's ``environments``, the channels and
   ``parameters`` appended as ``--name=value``; its output is the job's log.
3. The outputs' folders are uploaded to their OBS paths when the command ends (also after
   a failure, so checkpoints survive); a stop request sends SIGTERM to the command's
   process group (SIGKILL after 15 s).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orchestrator.backends.base import JobSpec
from orchestrator.backends.local import distributed, procs
from orchestrator.files import tail
from orchestrator.image import layout
from orchestrator.image.local import HostImage

from .records import s3_uri


def channels(algo: dict, host: HostImage) -> list[tuple[str, str, Path, str]]:
    """(kind, name, host folder, OBS path) of every input and output."""
    out = []
    for kind, default in (("inputs", layout.input_dir), ("outputs", layout.output_dir)):
        for channel in algo.get(kind) or []:
            name = channel["name"]
            local = host.path(channel.get("local_dir") or default(name))
            out.append((kind, name, local, channel["remote"]["obs"]["obs_url"]))
    return out


def run(record: dict, host: HostImage, obs, obs_endpoint: str, log_path: Path, stop: threading.Event,
        started) -> tuple[str, str, int]:
    """Run the job to its end: (phase, message, exit code). ``started(ident)`` is called
    once the command runs."""
    algo = record["algorithm"]
    home = host.make_home()
    job_dir = host.path(layout.JOB_DIR)
    if algo.get("code_dir"):
        code_dir = algo["code_dir"].rstrip("/")
        obs.get(s3_uri(code_dir + "/", obs_endpoint), job_dir / code_dir.rsplit("/", 1)[-1])
    args = []
    for kind, name, local, url in channels(algo, host):
        if kind == "inputs":
            obs.get(s3_uri(url if url.endswith("/") else url + "/", obs_endpoint), local)
        local.mkdir(parents=True, exist_ok=True)
        args.append(f"--{name}={local}/")
    args += [f"--{p['name']}={p.get('value', '')}" for p in algo.get("parameters") or []]
    urls = {name: "obs:/" + url if url.startswith("/") else url for _, name, _, url in channels(algo, host)}
    job = JobSpec(name=record["metadata"]["name"], run_id="", code_dir=str(job_dir / "code"), boot_file="",
                  data_url=urls.get("data_url", ""), train_url=urls.get("train_url", ""))
    ma_env = distributed.node_env(job, 0, log_path.parent, job_dir / "code")   # MA_JOB_DIR = job_dir; no local store
    env = host.env(**ma_env, **(algo.get("environments") or {}))
    cmd = host.command(algo["command"]) + args
    proc, ident = procs.spawn(cmd, log_path=log_path, cwd=home, env=env)
    started(ident)
    while proc.poll() is None:
        if stop.is_set():
            procs.stop(ident, grace_s=15)
            proc.wait()
            return "Terminated", "terminated on request", proc.returncode
        time.sleep(0.2)
    code = proc.returncode
    for kind, _, local, url in channels(algo, host):
        if kind == "outputs":
            obs.put(local, s3_uri(url if url.endswith("/") else url + "/", obs_endpoint))
    if code != 0:
        last = "\n".join(tail(log_path, 5).splitlines()[-3:])
        return "Failed", f"the boot command exited with code {code}; last log lines:\n{last}", code
    return "Completed", "", 0
