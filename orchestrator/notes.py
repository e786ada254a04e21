"""What a plan says about where things run: flavours emulated on this machine's CPU,
emulated nodes, ignored runtimes, and the cloud endpoint in use."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .backends.base import JobSpec, ModelSpec
from .spec import ConfigSpec, PipelineSpec


def local_notes(config: ConfigSpec, flavor: str, what: str) -> list[str]:
    known = config.flavors.get(flavor)
    if known is None:
        return [f"{what} flavour '{flavor}' is not in config.json's flavors; it runs on this machine's CPU"]
    if known.gpus:
        return [f"{what} flavour '{flavor}' ({known.gpus} x {known.gpu_type or 'GPU'}) is emulated on the CPU: "
                f"the local backend is CPU-only (MXNet 1.9.1 CUDA wheels have no kernels for current GPUs)"]
    return [f"{what} flavour '{flavor}' ({known.cpus} vCPU) runs on this machine's {os.cpu_count()} CPU cores"]


def backend_notes(spec: PipelineSpec, config: ConfigSpec, prof, job: JobSpec,
                  model: ModelSpec) -> tuple[list[str], list[str]]:
    """(information, settings emulated or ignored by this profile). The real cloud runs
    flavours, nodes and runtimes as written; the local backend and the emulator (a
    ModelArts endpoint on this machine) run everything on this machine's CPU. On a
    ModelArts profile, a job or model without a custom image relies on the preset MXNet
    engine, which current regions may not have: a note (an error with ``--strict``)."""
    flavors = ((job.flavor, "training"), (spec.service.flavor, "service"))
    preset = image_notes(prof, job, model)
    if prof.backend == "modelarts" and not on_this_machine(prof):
        return [f"{what} flavour '{f}' is not in config.json's flavors; ModelArts checks it on creation"
                for f, what in flavors if f not in config.flavors], preset
    info, emulated = [], list(preset)
    host = getattr(prof, "predictor_host", "127.0.0.1")
    if host not in ("127.0.0.1", "localhost", "::1"):
        info.append(f"warning: predictor_host '{host}' makes the service reachable from other machines"
                    + ("" if os.environ.get("PREDICTOR_AUTH_TOKEN") else
                       "; anyone who can reach it may use it (export PREDICTOR_AUTH_TOKEN to require a token)"))
    if prof.backend == "local" and (spec.train.image or spec.model.image):
        info.append("train.image / model.image: the local backend runs the same runtime without the image")
    for flavor, what in flavors:
        known = config.flavors.get(flavor)
        (emulated if known is None or known.gpus else info).extend(local_notes(config, flavor, what))
    emulated += _distributed_notes(job)
    runtime = spec.model.runtime
    if runtime and runtime.startswith("python2"):
        emulated.append(f"model.runtime '{runtime}' is emulated: the service runs on this machine's Python 3 in the "
                        "Python 2.7 compatibility mode (print statements, xrange, map(...)[0], ... rewritten in memory)")
    elif runtime:
        emulated.append(f"model.runtime '{runtime}' runs on this machine's Python 3 with MXNet 1.9.1 "
                        "(ModelArts' MXNet runtimes have MXNet 1.2.1)")
    if prof.backend == "modelarts":
        info.insert(0, f"ModelArts endpoint {prof.endpoints()[0]} is on this machine (the emulator): jobs and services "
                       "run here, through the real SDKs and wire protocols")
    return info, emulated


def image_notes(prof, job: JobSpec, model: ModelSpec) -> list[str]:
    unset = [(key, who) for key, who, image in (("train.image", "the job", job.image),
                                                ("model.image", "the model", model.image)) if not image]
    if prof.backend != "modelarts" or not unset:
        return []
    return [f"{' and '.join(k for k, _ in unset)} not set: {' and '.join(w for _, w in unset)} would use ModelArts' "
            f"preset MXNet engine ({prof.engine_name} {prof.engine_version}), which may not exist in your region "
            "(current preset images are PyTorch, TensorFlow, Horovod, MindSpore and Ascend). Build the MXNet image "
            "(python -m orchestrator image build-context image/, then docker build and docker push to SWR) and set "
            "train.image and model.image, or the profile's image (docs/modelarts.md)"]


def on_this_machine(prof) -> bool:
    """Whether a profile's jobs run on this machine (local, or the ModelArts emulator)."""
    if prof.backend == "local":
        return True
    host = (urlsplit(prof.endpoints()[0]).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _distributed_notes(job: JobSpec) -> list[str]:
    n = job.instance_count
    if n == 1:
        return []
    return [f"training on {n} emulated nodes: {n} workers + {n} servers + scheduler on loopback (dist_sync), "
            f"sharing this machine's {os.cpu_count()} CPU cores"]
