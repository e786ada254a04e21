"""Face training speed and verification accuracy of jobs/face_recognition/train.py.

1. Images/s per backbone and loss: the job (a train.py subprocess on generated faces:
   JPEG decoding, flips, margin head or P x K sampling + triplet mining, metrics) next to a
   plain Gluon loop of the same network (a subprocess of this script: one in-memory batch,
   a Dense softmax head, SGD) in the same run, and their ratio.  Speeds are medians over
   the epochs after the first (MKLDNN builds its primitives during the first); the job's
   come from metrics.json (verification excluded: its data folder has no .bin here).
2. Verification accuracy on lfw.bin (pairs of identities never trained on) after a short
   ArcFace training, next to the same network untrained and the generator's baselines
   (random embeddings, raw-pixel cosine).
3. ``--recipes face_softmax,...``: per example pipeline (examples/<name>.yaml, its
   hyperparameters with ``--recipe-epochs`` epochs), the job's
   images/s (median over epochs after the first), the lfw accuracy mean +- std over the 10
   folds of the exported weights, the job's CPU seconds, next to the raw-pixel and
   untrained-network accuracy on the same pairs (600 by default).
4. ``--dtype-only``: float32 against ``--dtype=bfloat16`` (MXNet AMP) at equal epochs, per
   backbone: the accuracy run of part 2 in both types, alternating (``_dtype_compare.py``):
   images/s and final lfw accuracy, medians with their spread, the ratio, and whether bf16 is
   faster at equal accuracy (skipped, with a note, on a CPU without bfloat16 instructions).

    .venv/bin/python benchmarks/train_face.py                       # defaults below
    .venv/bin/python benchmarks/train_face.py --backbones mobilefacenet --losses arcface \
        --batches 3 --epochs 2 --accuracy-epochs 6
    .venv/bin/python benchmarks/train_face.py --dtype-only           # part 4 only

2 CPU cores shared with other work make absolute numbers noisy; compare the ratios.
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
JOB = REPO / "jobs" / "face_recognition"
sys.path.insert(0, str(REPO))

BACKBONES = {  # name -> train.py arguments (a width multiplier is added)
    "mobilefacenet": ["--network=mobilefacenet"],
    "r18": ["--network=r18"],
    "iresnet-small": ["--network=iresnet", "--net_units=1,1,1,1"],
}


def recipe(name: str) -> dict:
    """The hyperparameters of examples/<name>.yaml."""
    import yaml
    spec = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    return dict(spec["train"]["hyperparameters"])


def run_recipe(name: str, data: Path, out: Path, a) -> dict:
    hp = recipe(name)
    hp.update({"num_epochs": a.recipe_epochs, "verbose": 0, "frequent": 1000, "export_model": False})
    hp.pop("num_epoch", None)
    hp.pop("epoch_image_num", None)
    args = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in hp.items()]
    before = os.times()
    proc = subprocess.run([sys.executable, str(JOB / "train.py"), f"--data_url={data}",
                           f"--train_url={out}", *args], capture_output=True, text=True,
                          timeout=7200, env=env(a))
    after = os.times()
    if proc.returncode:
        sys.exit(f"recipe {name} failed:\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    speeds = [e["samples_per_s"] for e in m["epochs"]]
    return {"images_per_s": statistics.median(speeds[1:] or speeds),
            "accuracy": m["final"]["lfw_accuracy"], "std": m["final"]["lfw_accuracy_std"],
            "cpu_s": (after.children_user + after.children_system)
            - (before.children_user + before.children_system), "hp": hp}


def untrained_recipe(hp: dict, bin_path: Path) -> float:
    """The recipe's network, initialised as the job does and never trained, on the pairs."""
    sys.path.insert(0, str(JOB))
    import mxnet as mx

    import evaluation
    import networks
    from jobs.data.face_bin import load_bin
    from verification import verify
    mx.random.seed(0)
    size = tuple(int(v) for v in str(hp.get("image_size", "112,112")).split(","))
    ints = lambda k: tuple(int(v) for v in str(hp[k]).split(",")) if hp.get(k) else None
    net, _ = networks.build(hp.get("network", "iresnet"), int(hp.get("num_layers", 50)),
                            hp.get("emb_size", hp.get("num_embed")), size, ints("net_units"),
                            ints("net_blocks"), float(hp.get("width_mult", 1.0)),
                            float(hp.get("dropout", 0.4)))
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    net.hybridize()
    images, issame = load_bin(str(bin_path), size)
    return verify(evaluation.embedder(net, mx.cpu()), images, issame, 32)["accuracy"]


def recipes_table(a) -> None:
    from jobs.data import generate_faces
    with tempfile.TemporaryDirectory(prefix="bench-face-recipes-") as tmp:
        tmp = Path(tmp)
        generate_faces.generate(tmp / "gen", a.identities, a.images_per_identity, a.verify_identities,
                                a.pairs, seed=a.seed, progress=False)
        packed = tmp / "gen" / "packed"
        base = generate_faces.baselines(str(packed / "lfw.bin"))
        print(f"{a.identities} identities x {a.images_per_identity} images; lfw.bin: {a.pairs} pairs of "
              f"{a.verify_identities} unseen identities (seed {a.seed}); raw-pixel cosine "
              f"{base['raw_pixels']:.3f}, random embeddings {base['random']:.3f}; {a.recipe_epochs} epochs; "
              f"OMP threads {a.threads}")
        print(f"{'recipe':<28}{'img/s':>8}{'CPU s':>8}{'lfw acc':>16}{'untrained':>11}{'raw pixels':>12}")
        for name in a.recipes.split(","):
            r = run_recipe(name, packed, tmp / name, a)
            untrained = untrained_recipe(r["hp"], packed / "lfw.bin")
            print(f"{name:<28}{r['images_per_s']:>8.1f}{r['cpu_s']:>8.0f}"
                  f"{r['accuracy']:>9.3f} +- {r['std']:.3f}{untrained:>11.3f}{base['raw_pixels']:>12.3f}",
                  flush=True)


def env(a) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(a.threads))


def job_speed(data: Path, out: Path, backbone: str, loss: str, a) -> float:
    args = [sys.executable, str(JOB / "train.py"), f"--data_url={data}", f"--train_url={out}",
            *BACKBONES[backbone], f"--width_mult={a.width}", f"--emb_size={a.emb_size}",
            f"--loss={loss}", f"--per_batch_size={a.batch_size}", f"--num_epochs={a.epochs}",
            f"--epoch_size={a.batches}", "--verbose=0", "--export_model=False", "--lr=0.05",
            f"--frequent={a.batches}", "--images_per_identity=4", "--mining=batch_hardest"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600, env=env(a))
    if proc.returncode:
        sys.exit(f"train.py failed ({backbone}, {loss}):\n{proc.stderr[-2000:]}")
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    return statistics.median(e["samples_per_s"] for e in epochs[1:])


def plain_speed(backbone: str, data: Path, a) -> float:
    """Run `plain_loop` in a fresh process (same OMP setup as the job)."""
    cmd = [sys.executable, __file__, "--plain", backbone, f"--plain-data={data}",
           f"--width={a.width}", f"--emb-size={a.emb_size}", f"--batch-size={a.batch_size}",
           f"--batches={a.batches}", f"--epochs={a.epochs}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env(a))
    if proc.returncode:
        sys.exit(f"plain loop failed ({backbone}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"]


def plain_loop(a) -> None:
    """The reference: the same network and initialiser, one batch of the data set's images
    decoded once and kept in memory, a Dense softmax head."""
    sys.path.insert(0, str(JOB))
    import mxnet as mx
    from mxnet import autograd, gluon

    import networks
    from face_iter import FaceBatches
    from jobs.data.face_rec import FaceRec
    extra = {"iresnet-small": {"units": (1, 1, 1, 1)}}.get(a.plain, {})
    name = {"iresnet-small": "iresnet"}.get(a.plain, a.plain)
    net, _ = networks.build(name, emb_size=a.emb_size, width=a.width, **extra)
    rec = FaceRec(a.plain_data)
    head = gluon.nn.Dense(rec.num_classes)
    for block in (net, head):
        block.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
        block.hybridize(static_alloc=True)
    params = net.collect_params()
    params.update(head.collect_params())
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.05, "momentum": 0.9, "wd": 5e-4})
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    data, label = FaceBatches(rec, a.batch_size).batch()
    x, y = mx.nd.array(data), mx.nd.array(label)
    speeds = []
    for _ in range(a.epochs):
        tic = time.time()
        for _ in range(a.batches):
            with autograd.record():
                loss = ce(head(net(x)), y)
            loss.backward()
            trainer.step(a.batch_size)
        mx.nd.waitall()
        speeds.append(a.batches * a.batch_size / (time.time() - tic))
    print(json.dumps({"images_per_s": statistics.median(speeds[1:])}))


def untrained_accuracy(bin_path: Path, a) -> float:
    sys.path.insert(0, str(JOB))
    import mxnet as mx

    import evaluation
    import networks
    from jobs.data.face_bin import load_bin
    from verification import verify
    mx.random.seed(0)
    net, _ = networks.build(a.accuracy_network, emb_size=a.emb_size, width=a.width,
                            blocks=(1, 1, 1, 1) if a.accuracy_network == "mobilefacenet" else None)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    net.hybridize()
    images, issame = load_bin(str(bin_path), (112, 112))
    return verify(evaluation.embedder(net, mx.cpu()), images, issame, 32)["accuracy"]


def trained_accuracy(data: Path, out: Path, a, network: list[str] | None = None, dtype: str = "float32",
                     epochs: int | None = None) -> dict:
    """A short ArcFace training verified on lfw.bin: accuracy of the exported weights, per
    verification, images/s (median over epochs after the first, verification excluded)."""
    if network is None:
        network = [f"--network={a.accuracy_network}"]
        network += ["--net_blocks=1,1,1,1"] if a.accuracy_network == "mobilefacenet" else []
    args = [sys.executable, str(JOB / "train.py"), f"--data_url={data}", f"--train_url={out}", *network,
            f"--width_mult={a.width}", f"--emb_size={a.emb_size}", "--loss=arcface", "--margin_s=32",
            f"--per_batch_size={a.batch_size}", f"--num_epochs={epochs or a.accuracy_epochs}",
            "--lr=0.1", "--verbose=0", "--export_model=False", "--frequent=1000", f"--dtype={dtype}"]
    started = time.time()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=7200, env=env(a))
    if proc.returncode:
        sys.exit(f"accuracy run failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics.get("dtype", "float32") != dtype:
        sys.exit(f"train.py --dtype={dtype} trained in {metrics.get('dtype')}:\n{proc.stderr[-2000:]}")
    speeds = [e["samples_per_s"] for e in metrics["epochs"]]
    return {"accuracy": metrics["final"]["lfw_accuracy"], "std": metrics["final"]["lfw_accuracy_std"],
            "per_epoch": [v["accuracy"] for v in metrics["verification"]], "seconds": time.time() - started,
            "images_per_s": statistics.median(speeds[1:] or speeds)}


DTYPE_BACKBONES = {"mobilefacenet": ["--network=mobilefacenet", "--net_blocks=1,1,1,1"],
                   "iresnet-small": BACKBONES["iresnet-small"]}


def dtype_comparison(packed: Path, tmp: Path, a) -> None:
    """Per backbone: the accuracy run (ArcFace, equal epochs) in float32 and in bfloat16."""
    for backbone in a.dtype_backbones.split(","):
        def run(dtype, r, backbone=backbone):
            got = trained_accuracy(packed, tmp / f"dtype-{backbone}-{dtype}-{r}", a, DTYPE_BACKBONES[backbone],
                                   dtype, a.dtype_epochs)
            return got["images_per_s"], got["accuracy"]
        compare(run, a.dtype_rounds, a.accuracy_tolerance,
                f"{backbone} width {a.width}, ArcFace s=32, batch {a.batch_size}, {a.dtype_epochs} epochs",
                "lfw acc")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="mobilefacenet,iresnet-small",
                   help=f"comma list of {', '.join(BACKBONES)}")
    p.add_argument("--losses", default="softmax,arcface,triplet")
    p.add_argument("--width", type=float, default=0.5, help="channel multiplier of the backbones")
    p.add_argument("--emb-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=5, help="batches per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per speed run (first = warm-up)")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs; medians count")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0))
                   or os.cpu_count(), help="OMP_NUM_THREADS of every run")
    p.add_argument("--identities", type=int, default=12)
    p.add_argument("--images-per-identity", type=int, default=20)
    p.add_argument("--accuracy-network", default="mobilefacenet")
    p.add_argument("--accuracy-epochs", type=int, default=8)
    p.add_argument("--recipes", default="", help="comma list of example pipelines (face_softmax, "
                   "face_arcface_mobilefacenet, face_arcface_iresnet50, face_triplet, "
                   "face_cosface_small): only the recipe table (part 3)")
    p.add_argument("--recipe-epochs", type=int, default=2)
    p.add_argument("--verify-identities", type=int, default=20)
    p.add_argument("--pairs", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype-only", action="store_true", help="only the float32/bfloat16 comparison (part 4, "
                   "about 40 minutes on 2 cores)")
    p.add_argument("--dtype-rounds", type=int, default=3, help="alternating float32/bfloat16 runs of --dtype-only")
    p.add_argument("--dtype-backbones", default="mobilefacenet,iresnet-small",
                   help=f"comma list of {', '.join(DTYPE_BACKBONES)}")
    p.add_argument("--dtype-epochs", type=int, default=6, help="epochs of every float32/bfloat16 run")
    p.add_argument("--accuracy-tolerance", type=float, default=0.02,
                   help="bfloat16 counts as equally accurate down to this far below float32 (lfw accuracy)")
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--plain-data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.plain:
        return plain_loop(a)
    if a.recipes:
        return recipes_table(a)
    from jobs.data import generate_faces
    with tempfile.TemporaryDirectory(prefix="bench-face-") as tmp:
        tmp = Path(tmp)
        generate_faces.generate(tmp / "gen", a.identities, a.images_per_identity, 8, 100, seed=0,
                                progress=False)
        packed = tmp / "gen" / "packed"
        if a.dtype_only:
            return dtype_comparison(packed, tmp, a)
        speed_data = tmp / "speed"  # the same records without lfw.bin: no verification
        speed_data.mkdir()
        for name in ("train.rec", "train.idx", "property", "labels.txt"):
            (speed_data / name).symlink_to(packed / name)
        print(f"{a.identities} identities x {a.images_per_identity} images, batch {a.batch_size}, "
              f"{a.batches} batches x {a.epochs} epochs, width {a.width}, emb {a.emb_size}, "
              f"OMP threads {a.threads}, medians of {a.repeats} alternating runs")
        print(f"{'backbone':<15}{'loss':<9}{'job img/s':>11}{'plain img/s':>13}{'job/plain':>11}")
        losses = a.losses.split(",")
        for backbone in a.backbones.split(","):
            plain, job = [], {loss: [] for loss in losses}
            for rep in range(a.repeats):  # plain, job, job, job, plain, ...: drifts hit both
                plain.append(plain_speed(backbone, speed_data, a))
                for loss in losses:
                    out = tmp / f"{backbone}-{loss}-{rep}"
                    job[loss].append(job_speed(speed_data, out, backbone, loss, a))
            ref = statistics.median(plain)
            for loss in losses:
                mine = statistics.median(job[loss])
                print(f"{backbone:<15}{loss:<9}{mine:>11.1f}{ref:>13.1f}{mine / ref:>11.2f}",
                      flush=True)
        from jobs.data.generate_faces import baselines
        base = baselines(str(packed / "lfw.bin"))
        untrained = untrained_accuracy(packed / "lfw.bin", a)
        trained = trained_accuracy(packed, tmp / "accuracy", a)
        print(f"\nlfw.bin (100 pairs of 8 unseen identities), {a.accuracy_network} "
              f"width {a.width}, ArcFace s=32, {a.accuracy_epochs} epochs:")
        print(f"  random embeddings      {base['random']:.3f}")
        print(f"  raw-pixel cosine       {base['raw_pixels']:.3f}")
        print(f"  untrained network      {untrained:.3f}")
        print(f"  trained ({trained['seconds']:.0f} s)        {trained['accuracy']:.3f} "
              f"+- {trained['std']:.3f}  (per epoch: "
              f"{', '.join(f'{v:.3f}' for v in trained['per_epoch'])})")


if __name__ == "__main__":
    main()
