"""What dynamic batching saves per image on the CPU, on the project's real services.

    python benchmarks/batch_gain.py [--models resnet18,resnet50,face-iresnet50,face-mobilefacenet]
        [--modes fp32,int8] [--batches 1,2,4,8] [--images 16] [--reps 5] [--json FILE]

Each model is a ModelArts package with the project's own ``customize_service.py``, random
weights: ResNet-18 / ResNet-50 classifiers at 224x224 (``_serve_models.build_classifier``)
and face packages at 112x112 with the face job's default backbone (IResNet-50, 512-d) and
the example pipelines' MobileFaceNet (``face_arcface_mobilefacenet.yaml``). ``int8`` is the
same package converted by ``python -m orchestrator.optimize.convert`` (naive calibration on
16 images, as ``benchmarks/serve.py`` does) and served the way a predictor worker serves it.

The requests go through the predictor's own ``Runner.handle_batch`` (multipart payload ->
``_preprocess`` per request -> ONE ``_inference`` on the concatenation -> ``_postprocess``
and JSON per request), one process, ONE OpenMP thread (a predictor worker's setting when
workers = cores). Classification requests are distinct 640x480 photo-like JPEGs, face
requests distinct 112x112 ones (one face each: two rows, the face and its mirror). B=1
goes through ``handle_batch`` too (a lone request with batching on). One unmeasured
repetition comes first (executors made, oneDNN primitives built). Per (model, mode, B), a
repetition runs ``--images`` requests as batches of B and reports CPU seconds per image
(process time: all threads) and, separately, the ``_inference`` share; the (model, mode)
pairs and the batch sizes are visited in an order rotated every repetition, so background
load hits all alike. Printed per point: the median over ``--reps`` with its spread
((max - min) / median) in brackets, then the gain per image of batch B over batch 1
(1 - cost(B) / cost(1); positive = batching is cheaper).
About 7 minutes on 2 cores with the defaults (--reps 9: 11).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before mxnet is imported anywhere
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _serve_models import ROOT, build_classifier, image_set, sample_jpeg  # noqa: E402

sys.path.insert(0, ROOT)
CLASSIFIERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FACE_BACKBONES = {"face-iresnet50": ("iresnet", {"num_layers": 50}),
                  "face-mobilefacenet": ("mobilefacenet", {})}


def build_face(dest: str, network: str, **kw) -> str:
    """A face package (the face job's own network and export code, random weights, 112x112)."""
    import mxnet as mx

    sys.path.insert(0, os.path.join(ROOT, "jobs", "face_recognition"))
    try:
        import model_export
        import networks
    finally:
        sys.path.pop(0)
    mx.random.seed(0)
    net, description = networks.build(network, **kw)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    emb_size = int(net(mx.nd.zeros((1, 3, 112, 112))).shape[1])
    symbol, params = model_export.network_params(net)
    info = {"image_size": [112, 112], "emb_size": emb_size,
            "threshold": 0.3, "network": description}
    os.makedirs(dest)
    return model_export.export_package(dest, symbol, params, info, None,
                                       os.path.join(ROOT, "inference", "face_recognition"))


def face_set(folder: str, seeds) -> str:
    """112x112 JPEG face stand-ins and a test.lst (three shots per identity)."""
    os.makedirs(folder)
    lines = []
    for i, seed in enumerate(seeds):
        with open(os.path.join(folder, f"{seed}.jpg"), "wb") as fh:
            fh.write(sample_jpeg(112, 112, seed=seed))
        lines.append(f"{i}\t{i // 3}\t{seed}.jpg\n")
    with open(os.path.join(folder, "test.lst"), "w") as fh:
        fh.write("".join(lines))
    return os.path.join(folder, "test.lst")


def convert(package: str, mode: str, face: bool, tmp: str) -> str:
    """A copy of ``package`` converted to ``mode`` by the project's converter."""
    make = face_set if face else image_set
    images = os.path.join(tmp, "faces" if face else "photos")
    if not os.path.isdir(images):
        make(os.path.join(images, "calib"), range(100, 116))
        make(os.path.join(images, "holdout"), range(200, 224))
    dest = f"{package}-{mode}"
    shutil.copytree(package, dest)
    cmd = [sys.executable, "-m", "orchestrator.optimize.convert", dest, "--mode", mode, "--min-top1", "0",
           "--max-verification-drop", "100", "--task", "face" if face else "classification",
           "--calib", os.path.join(images, "calib"), "--holdout", os.path.join(images, "holdout", "test.lst")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} conversion of {package} failed: {done.stderr.strip()[-800:]}")
    return dest


def load(package: str, mode: str):
    """The package's service as a predictor worker loads it (converted files served for int8)."""
    from orchestrator.predictor.handler import Runner
    from orchestrator.predictor.loader import load_service, prepare_path

    prepare_path(package)  # the runtime folder (mms) on sys.path, as in a worker
    from mms import optimized

    assert optimized.activate(package, mode) == mode
    try:
        service, style = load_service(package, os.path.basename(package))
    finally:
        optimized.deactivate()
    return Runner(service, style)


def payloads(face: bool, n: int) -> list:
    size = (112, 112) if face else (640, 480)
    return [("multipart", [("images", f"{seed}.jpg", sample_jpeg(*size, seed=seed))], {})
            for seed in range(300, 300 + n)]


def run_once(runner, requests: list, batch: int) -> float:
    """CPU seconds per image of ``requests`` served as batches of ``batch``."""
    start = time.process_time()
    for i in range(0, len(requests), batch):
        results = runner.handle_batch(requests[i:i + batch])
        assert all(status == 200 for status, _, _ in results), results[0][1][:300]
    return (time.process_time() - start) / len(requests)


def timed_inference(runner):
    """Wrap the service's _inference to add up its CPU time (the runner's own timings are wall-clock)."""
    service = runner.service
    inner = service._inference
    box = {"s": 0.0}

    def counted(data):
        start = time.process_time()
        try:
            return inner(data)
        finally:
            box["s"] += time.process_time() - start
    service._inference = counted
    return box


def prepare(models: list, modes: list, batches: list, images: int, tmp: str) -> dict:
    """{(model, mode): (runner, requests, CPU-seconds box of _inference)}, every batch size warmed up."""
    runners = {}
    for model in models:
        face = model.startswith("face-")
        started = time.perf_counter()
        if face:
            network, kw = FACE_BACKBONES[model]
            package = build_face(os.path.join(tmp, model), network, **kw)
        else:
            package = build_classifier(os.path.join(tmp, model), int(model[len("resnet"):]))
        for mode in modes:
            runner = load(package if mode == "fp32" else convert(package, mode, face, tmp), mode)
            requests = payloads(face, images)
            for b in batches:  # one unmeasured repetition: executors made, primitives and caches warm
                run_once(runner, requests, b)
            runners[(model, mode)] = (runner, requests, timed_inference(runner))
        print(f"  {model}: built{' and converted' if modes != ['fp32'] else ''} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return runners


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="CPU cost per image of batched requests on the real services.")
    p.add_argument("--models", default="resnet18,resnet50,face-iresnet50,face-mobilefacenet")
    p.add_argument("--modes", default="fp32,int8")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--images", type=int, default=16, help="requests per point and repetition (a multiple of every B)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", help="also write the raw numbers here")
    args = p.parse_args(argv)
    models, modes = args.models.split(","), args.modes.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    unknown = [m for m in models if m not in FACE_BACKBONES and m not in CLASSIFIERS]
    if unknown:
        p.error(f"unknown model(s) {unknown}: choose from {', '.join([*CLASSIFIERS, *FACE_BACKBONES])}")
    if any(args.images % b for b in batches):
        p.error(f"--images {args.images} is not a multiple of every batch size {batches}")
    logging.getLogger("mms").setLevel(logging.WARNING)  # no per-request log line in the measurement
    print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {args.reps} repetitions x {args.images} requests "
          f"per point, batches {batches}", flush=True)
    tmp = tempfile.mkdtemp(prefix="batch-gain-")
    try:
        runners = prepare(models, modes, batches, args.images, tmp)
        points = {(key, b): {"total": [], "inference": []} for key in runners for b in batches}
        keys = list(runners)
        for rep in range(args.reps):
            for k in range(len(keys)):
                key = keys[(k + rep) % len(keys)]
                runner, requests, box = runners[key]
                order = batches[rep % len(batches):] + batches[:rep % len(batches)]
                for b in order:
                    box["s"] = 0.0
                    total = run_once(runner, requests, b)
                    points[(key, b)]["total"].append(total)
                    points[(key, b)]["inference"].append(box["s"] / len(requests))
            print(f"  repetition {rep + 1}/{args.reps} done", flush=True)
        print(report(points, keys, batches))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump([{"model": m, "mode": mode, "batch": b, **v} for ((m, mode), b), v in points.items()],
                          fh, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(points: dict, keys: list, batches: list) -> str:
    """Two tables (whole request, then its _inference share): per (model, mode) and batch size,
    median CPU ms per image, spread, and the gain per image over the first batch size."""
    out = []
    for part, title in (("total", "CPU ms per image, whole request (decode to JSON)"),
                        ("inference", "CPU ms per image in _inference (the forward pass)")):
        head = ["model", "mode"] + [f"B={b}" for b in batches]
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in keys:
            base = statistics.median(points[(key, batches[0])][part])
            cells = []
            for b in batches:
                values = points[(key, b)][part]
                median = statistics.median(values)
                cell = f"{median * 1e3:.1f} ({(max(values) - min(values)) / median:.0%})"
                cells.append(cell if b == batches[0] else f"{cell} {1 - median / base:+.1%}")
            lines.append("| " + " | ".join([*key, *cells]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
