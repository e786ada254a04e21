"""Training speed of jobs/image_classification/train.py against a plain ``mx.mod.Module.fit``.

Both run as separate processes, alternately, on the same generated RecordIO data, network
(the job's resnet.py) and batch size, each with per-epoch checkpoints and validation.  The
score is the median training images/s over epochs after the first (warm-up), validation
excluded.  Also measured: the ``ImageRecordIter`` alone (decode + augment), which bounds
any training speed.  The job passes when it is at most 5% slower than the reference.

    .venv/bin/python benchmarks/train_classification.py            # ResNet-20, 3x64x64, bs 32
    .venv/bin/python benchmarks/train_classification.py --num-layers 18 --image-shape 3,112,112
    .venv/bin/python benchmarks/train_classification.py --dtype-only     # float32 vs bfloat16 (AMP)

It also compares the job in float32 against ``--dtype=bfloat16`` (MXNet AMP) at equal
epochs, alternating (``_dtype_compare.py``): images/s and final validation accuracy, medians
with their spread, and whether bf16 is faster at equal accuracy (skipped, with a note, on a
CPU without bfloat16 instructions).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _dtype_compare import compare

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
WARMUP = 2   # epochs left out: MKLDNN builds its primitives during the first ones


def sh(args: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr[-2000:]}")
    return proc


def make_data(root: Path, classes: int, per_class: int, resize: int) -> Path:
    sh([PY, "-m", "jobs.data.generate_classification", str(root / "images"), "--classes", str(classes),
        "--images-per-class", str(per_class), "--seed", "0"])
    sh([PY, "-m", "jobs.data.im2rec", str(root / "images"), str(root / "packed"), "--val-ratio", "0.2",
        "--test-ratio", "0", "--resize", str(resize)])
    return root / "packed"


def job_run(data: Path, out: Path, a, dtype: str = "float32") -> tuple[float, float | None]:
    """(median training images/s after the warm-up epochs, final validation accuracy)."""
    sh([PY, "jobs/image_classification/train.py", f"--data_url={data}", f"--train_url={out}",
        f"--num_epochs={a.epochs}", f"--batch_size={a.batch_size}", f"--num_layers={a.num_layers}",
        f"--image_shape={a.image_shape}", "--lr_step=1000", "--export_model=False", "--disp_batches=20",
        f"--dtype={dtype}"])
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics["epochs"][-1].get("val_accuracy")
    return statistics.median(e["samples_per_s"] for e in metrics["epochs"][WARMUP:]), final


def job_speed(data: Path, out: Path, a) -> float:
    return job_run(data, out, a)[0]


def dtype_comparison(data: Path, tmp: Path, a) -> None:
    """float32 against bfloat16 (MXNet AMP) for the job itself, alternating, equal epochs."""
    compare(lambda dtype, r: job_run(data, tmp / f"{dtype}{r}", a, dtype), a.dtype_rounds, 0.01,
            f"resnet-{a.num_layers} {a.image_shape}, {a.epochs} epochs", "val accuracy")


def reference_speed(data: Path, out: Path, a, classes: int, samples_per_epoch: int) -> float:
    out.mkdir(parents=True, exist_ok=True)
    proc = sh([PY, "benchmarks/_module_fit_reference.py", "--data", str(data), "--out", str(out),
               "--num_layers", str(a.num_layers), "--image_shape", a.image_shape, "--batch_size",
               str(a.batch_size), "--num_epochs", str(a.epochs), "--num_classes", str(classes)])
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["epoch_seconds"]
    return statistics.median(samples_per_epoch / s for s in seconds[WARMUP:])


def iterator_speed(data: Path, a) -> float:
    code = f"""
import os, time, mxnet as mx
it = mx.io.ImageRecordIter(path_imgrec={str(data / 'train.rec')!r}, data_shape=({a.image_shape}),
    batch_size={a.batch_size}, shuffle=True, rand_crop=True, rand_mirror=True,
    preprocess_threads=os.cpu_count())
n = 0
for epoch in range(4):
    it.reset()
    if epoch == 1: t = time.time(); n = 0
    for batch in it: n += batch.data[0].shape[0] - batch.pad
print(n / (time.time() - t))
"""
    return float(sh([PY, "-c", code]).stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-layers", type=int, default=20)
    p.add_argument("--image-shape", default="3,64,64")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6, help=f"per run; the first {WARMUP} are warm-up")
    p.add_argument("--rounds", type=int, default=2, help="alternating job/reference runs")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--images-per-class", type=int, default=300)
    p.add_argument("--dtype-rounds", type=int, default=2, help="alternating float32/bfloat16 job runs (0: skip)")
    p.add_argument("--dtype-only", action="store_true", help="only the float32/bfloat16 comparison")
    a = p.parse_args()
    if a.epochs <= WARMUP:
        p.error(f"--epochs must be more than the {WARMUP} warm-up epochs")
    side = max(int(x) for x in a.image_shape.split(",")[1:])
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        t = time.time()
        data = make_data(tmp, a.classes, a.images_per_class, resize=side + side // 8)
        info = json.loads((data / "dataset.json").read_text())
        batches = -(-info["num_train"] // a.batch_size)
        print(f"data: {info['num_train']} train images, {a.classes} classes, packed in {time.time() - t:.1f}s; "
              f"resnet-{a.num_layers} {a.image_shape} batch {a.batch_size}, {a.epochs} epochs x {a.rounds} rounds, "
              f"{os.cpu_count()} CPUs", flush=True)
        if a.dtype_rounds:
            dtype_comparison(data, tmp, a)
        if a.dtype_only:
            return 0
        jobs, refs = [], []
        for r in range(a.rounds):
            jobs.append(job_speed(data, tmp / f"job{r}", a))
            refs.append(reference_speed(data, tmp / f"ref{r}", a, a.classes, batches * a.batch_size))
            print(f"round {r + 1}: job {jobs[-1]:.1f} img/s, Module.fit {refs[-1]:.1f} img/s", flush=True)
        it = iterator_speed(data, a)
    job, ref = statistics.median(jobs), statistics.median(refs)
    ratio = job / ref
    print(f"\n{'':22}{'images/s':>10}{'ratio':>8}")
    print(f"{'Module.fit reference':22}{ref:10.1f}{1.0:8.2f}")
    print(f"{'train.py job':22}{job:10.1f}{ratio:8.2f}")
    print(f"{'ImageRecordIter only':22}{it:10.1f}{it / ref:8.2f}")
    ok = ratio >= 0.95
    print(f"\njob/reference = {ratio:.3f}: {'OK' if ok else 'SLOWER THAN 5%'} (limit 0.95)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
