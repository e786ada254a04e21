"""Training images/s of the classification job on 1 worker vs 2 (``instance_count``) on the
local backend: the 2-node run is a real MXNet parameter-server job on loopback (scheduler,
2 servers, 2 workers with ``--kv_store=dist_sync``).

Same generated RecordIO data, network and global batch (1 x B against 2 x B/2), same
epochs; the runs alternate (``--repeats`` times each) and the median counts. The single
worker runs twice: with the job's default of one OpenMP thread per core, and with one
thread, since the 2 workers get one core's share each (OMP_NUM_THREADS = cores / 2); on a
busy machine OpenMP threads that outnumber the free cores slow MXNet down a lot. A job's speed
is rank 0's median ``samples_per_s`` over epochs after the warm-up (validation excluded)
times the number of workers (dist_sync keeps them in lockstep). Also shown: the wall time
from submit to Completed, which includes starting the processes.

Caveat: the emulated nodes share this machine's cores (OMP threads are split between the
workers), so the ratio measures the parameter-server overhead, not multi-node scaling.

    .venv/bin/python benchmarks/train_distributed.py                 # ResNet-20, 3x32x32, global batch 32
    .venv/bin/python benchmarks/train_distributed.py --num-layers 8 --epochs 6 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobs.data import generate_classification as gen  # noqa: E402
from jobs.data import im2rec as i2r  # noqa: E402
from orchestrator.backends.base import JobSpec  # noqa: E402
from orchestrator.backends.local.backend import LocalBackend  # noqa: E402

WARMUP = 2   # epochs left out: MKLDNN builds its primitives during the first ones
RUN = "261124-130000-be9c"


CONFIGS = (("1 worker, 1 OMP thread per core", 1, ()),
           ("1 worker, 1 OMP thread", 1, (("OMP_NUM_THREADS", "1"),)),
           ("2 workers, cores/2 OMP threads each", 2, ()))


def run_job(backend: LocalBackend, workers: int, envs: tuple, attempt: int, a) -> dict:
    hp = {"num_layers": a.num_layers, "image_shape": a.image_shape, "batch_size": a.batch_size // workers,
          "num_epochs": a.epochs, "lr": 0.05, "lr_step": 1000, "disp_batches": 20, "export_model": False}
    name = f"bench{workers}{len(envs)}x{attempt}-{RUN}-train"
    spec = JobSpec(name=name, run_id=RUN, code_dir=str(REPO / "jobs" / "image_classification"), boot_file="train.py",
                   data_url="obs://bench-dist/data/", train_url=f"obs://bench-dist/{name}/",
                   hyperparameters=tuple((k, str(v)) for k, v in hp.items()), instance_count=workers,
                   envs=envs, max_runtime_s=1800)
    started = time.time()
    ref = backend.submit_job(spec)
    while not (state := backend.job_status(ref)).terminal:
        time.sleep(0.2)
    wall = time.time() - started
    if state.phase != "Completed":
        sys.exit(f"{workers}-worker job {state.phase}: {state.reason}")
    target = backend.root / f"{name}-metrics.json"
    backend.storage.get(f"{spec.train_url}metrics.json", str(target))
    epochs = json.loads(target.read_text())["epochs"]
    speed = statistics.median(e["samples_per_s"] for e in epochs[WARMUP:]) * workers
    backend.delete_job(ref)
    return {"images_per_s": speed, "wall_s": wall, "val_accuracy": epochs[-1]["val_accuracy"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--images-per-class", type=int, default=150)
    p.add_argument("--num-layers", type=int, default=20)
    p.add_argument("--image-shape", default="3,32,32")
    p.add_argument("--batch-size", type=int, default=32, help="global batch; each of 2 workers gets half")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    if a.epochs <= WARMUP or a.batch_size % 2:
        p.error(f"--epochs must be > {WARMUP} and --batch-size even")
    side = int(a.image_shape.split(",")[-1])
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        root = Path(tmp)
        gen.generate(root / "images", classes=a.classes, images_per_class=a.images_per_class, seed=0,
                     min_size=side + 8, max_size=2 * side, progress=False)
        i2r.im2rec(root / "images", root / "packed", val_ratio=0.2, test_ratio=0.0, resize=side + 4, seed=0,
                   workers=os.cpu_count() or 1, progress=False)
        backend = LocalBackend(root / "state")
        backend.storage.put(str(root / "packed"), "obs://bench-dist/data/")
        runs: dict[str, list[dict]] = {label: [] for label, _, _ in CONFIGS}
        for attempt in range(a.repeats):
            for label, workers, envs in CONFIGS:
                r = run_job(backend, workers, envs, attempt, a)
                runs[label].append(r)
                print(f"  run {attempt + 1}, {label}: {r['images_per_s']:7.1f} images/s, {r['wall_s']:5.1f} s wall, "
                      f"val accuracy {r['val_accuracy']:.3f}", flush=True)
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("images_per_s", "wall_s")}
           for label, rs in runs.items()}
    print(f"ResNet-{a.num_layers} {a.image_shape}, global batch {a.batch_size}, {a.epochs} epochs, "
          f"{os.cpu_count()} CPU cores, median of {a.repeats}:")
    for label, m in med.items():
        print(f"  {label:38s} {m['images_per_s']:7.1f} images/s  ({m['wall_s']:.1f} s wall)")
    two = med[CONFIGS[2][0]]["images_per_s"]
    best_one = max(med[label]["images_per_s"] for label, _, _ in CONFIGS[:2])
    print(f"  ratio 2 workers / best single worker: {two / best_one:.2f}x  (caveat: the 2 workers, the scheduler "
          f"and the 2 servers share the same {os.cpu_count()} cores: this measures the parameter-server "
          f"overhead on one machine, not multi-node scaling)")
    print(json.dumps({"configs": med, "ratio_vs_best_single": round(two / best_one, 3), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
