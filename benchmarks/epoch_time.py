"""How long will an epoch take? Training images/s of the project's jobs per network and
image size, on this machine, for docs/jobs.md.

Each configuration runs the real job (jobs/image_classification/train.py or
jobs/face_recognition/train.py) on small generated data for a few epochs and reports

* images/s: the median of the per-epoch ``samples_per_s`` of metrics.json after the first
  (warm-up) epoch, with the spread (min-max) over those epochs (validation excluded, as in
  the jobs' own numbers); this is wall time, so it drops when the machine is busy;
* CPU seconds per 1,000 images: the job's whole CPU time (user + system, start-up and
  validation included) over the images it trained: it barely moves with other load, and on
  an idle machine whose N cores the job keeps busy, wall time is about this divided by N.

    .venv/bin/python benchmarks/epoch_time.py               # the table of docs/jobs.md (~5-10 min on 2 cores)
    .venv/bin/python benchmarks/epoch_time.py --only resnet-20
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

# (name, job, image size, batch size, images per epoch, job arguments)
CONFIGS = [
    ("resnet-20", "classification", 32, 32, 960, ["--num_layers=20"]),
    ("resnet-20", "classification", 64, 32, 960, ["--num_layers=20"]),
    ("resnet-18", "classification", 112, 32, 192, ["--num_layers=18"]),
    ("resnet-18", "classification", 224, 16, 96, ["--num_layers=18"]),
    ("resnet-50", "classification", 224, 16, 64, ["--num_layers=50"]),
    ("mobilefacenet", "face", 112, 16, 96, ["--network=mobilefacenet", "--loss=arcface"]),
    ("iresnet-50", "face", 112, 8, 32, ["--network=r50", "--loss=arcface"]),
]


def sh(args: list[str]) -> None:
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr[-2000:]}")


def classification_data(root: Path, size: int, images: int) -> Path:
    folder = root / f"cls-{size}-{images}"
    if not folder.exists():
        sh([PY, "-m", "jobs.data.generate_classification", str(folder / "images"), "--classes", "4",
            "--images-per-class", str(images // 4), "--seed", "0", "--min-size", str(max(size, 32)),
            "--max-size", str(size * 2)])
        sh([PY, "-m", "jobs.data.im2rec", str(folder / "images"), str(folder / "packed"), "--val-ratio", "0",
            "--test-ratio", "0", "--resize", str(size)])
    return folder / "packed"


def face_data(root: Path) -> Path:
    folder = root / "faces"
    if not folder.exists():
        sh([PY, "-m", "jobs.data.generate_faces", "--out", str(folder), "--identities", "8",
            "--images-per-identity", "16", "--verify-identities", "4", "--pairs", "20", "--test-ratio", "0"])
    return folder / "packed"


def speed(root: Path, config, epochs: int) -> tuple[list[float], float]:
    """(images/s of the epochs after the first, CPU seconds per 1,000 trained images)."""
    name, job, size, batch, images, extra = config
    out = Path(tempfile.mkdtemp(dir=root))
    data = classification_data(root, size, images) if job == "classification" else face_data(root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if job == "classification":
        sh([PY, "jobs/image_classification/train.py", f"--data_url={data}",
            f"--train_url={out}", f"--num_epochs={epochs}", f"--batch_size={batch}", f"--image_shape=3,{size},{size}",
            "--lr=0.01", "--lr_step=1000", "--export_model=False", "--disp_batches=1000", *extra])
    else:
        sh([PY, "jobs/face_recognition/train.py", f"--data_url={data}", f"--train_url={out}",
            f"--num_epochs={epochs}", f"--per_batch_size={batch}", f"--epoch_size={images // batch}", "--lr=0.01",
            "--verbose=0", "--export_model=False", "--frequent=1000", *extra])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    epochs_seen = json.loads((out / "metrics.json").read_text())["epochs"]
    return [e["samples_per_s"] for e in epochs_seen[1:]], 1000 * cpu / (images * epochs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="per configuration; the first is warm-up")
    p.add_argument("--only", help="comma-separated network names (default: all)")
    a = p.parse_args()
    chosen = [c for c in CONFIGS if not a.only or c[0] in a.only.split(",")]
    print(f"# {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{a.epochs - 1} measured epochs each", flush=True)
    print(f"# load average before: {os.getloadavg()[0]:.1f}")
    print("| job | network | input | batch | images/s (median, min-max) | CPU s per 1,000 images |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="epoch-time-") as tmp:
        for config in chosen:
            rates, cpu = speed(Path(tmp), config, a.epochs)
            mid = statistics.median(rates)
            print(f"| {config[1]} | {config[0]} | {config[2]}x{config[2]} | {config[3]} | {mid:.1f} "
                  f"({min(rates):.1f}-{max(rates):.1f}) | {cpu:.0f} |", flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
