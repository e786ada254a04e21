"""ModelArts-style face recognition training job (insightface recipe, MXNet Gluon).

Run (ModelArts passes the same arguments)::

    python train.py --data_url=DATA_DIR --train_url=OUT_DIR --num_gpus=0 \
        --network=mobilefacenet --loss=arcface --per_batch_size=64 --num_epochs=10 \
        --lr=0.1 --lr_steps=2000,3000 --verbose=500

Inputs in data_url: an insightface face .rec (``train.rec``, ``train.idx``, ``property``
``num_classes,H,W``; the identity table in record 0), optional ``labels.txt`` (line i =
name of identity i) and verification pair files ``*.bin`` (lfw.bin, cfp_fp.bin, ...).
All arguments: train_args.py (``--help``).  data_url and train_url are local folders or
``obs://`` / ``s3://`` URLs (copied through moxing).

Losses: softmax, nsoftmax, arcface, cosface, combined (losses.py) over random batches;
triplet (triplet.py, MassFace mining ``--mining``) over P x K identity-balanced batches,
starting from ``--pretrained=prefix,epoch`` (a softmax-trained checkpoint) or from
``--pretrain_epochs`` of ``--pretrain_loss`` run first in this job.

``--dtype=bfloat16`` runs the network under MXNet AMP (bf16 convolutions and fully connected
layers, float32 master weights) on a CPU with bf16 instructions, else float32 with a warning;
the head and loss, verification, checkpoints and the package stay float32
(jobs/common/runtime.py ``mixed_precision_block``).

Outputs in train_url:

* ``<prefix>-symbol.json`` + ``<prefix>-%04d.params`` after every epoch (embedding
  network only; N = completed epochs), ``<prefix>-best-*`` = the best verification so far
  by the first target's accuracy;
* ``metrics.json`` (face_metrics.py), rewritten after every epoch and verification;
* ``model/`` (model_export.py) with the best (else the last) weights, face.json with the
  same-person threshold, gallery.npz of the training identities, the inference code.

Log (stdout): ``Start training: num_epochs=.. epoch_size=..`` first, then MXNet Speedometer
lines ``Epoch[0] Batch [0-20]\\tSpeed: .. samples/sec\\taccuracy=..\\tloss=..``, every
``--verbose`` batches and at each epoch end insightface's verification lines
(``[lfw][1000]Accuracy-Flip: 0.99500+-0.00300``, XNorm, VAL@FAR), ``Epoch[0]
Validation-accuracy=..`` (first target), ``Epoch[0] Time cost=..``.

Exit codes: 0 done; 2 bad arguments or data (one line on stderr, no traceback).
"""
import logging
import math
import os
import sys
import time

CODE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, CODE_DIR)  # sibling modules, also when started from another folder
try:  # the shared modules: inside this folder on ModelArts (jobs/README.md), else the installed project
    import jobs.common, jobs.data.face_bin, jobs.data.face_rec_reader  # noqa: F401,E401,E402
except ImportError as e:
    sys.exit(print(f"train.py: error: {e.name} not found: copy jobs/__init__.py, jobs/common/, jobs/data/__init__.py, "
                   "jobs/data/face_bin.py and jobs/data/face_rec_reader.py into this folder at those paths, or "
                   "install the project (pip install -e .)", file=sys.stderr) or 2)
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

import evaluation  # noqa: E402
import face_iter  # noqa: E402
import face_metrics  # noqa: E402
import losses  # noqa: E402
import model_export  # noqa: E402
import networks  # noqa: E402
import optim  # noqa: E402
import publish  # noqa: E402
import resume  # noqa: E402
import steps  # noqa: E402
import train_args  # noqa: E402
from jobs.common.runtime import JobError, mixed_precision_block, pick_context, run_job  # noqa: E402
from jobs.data.face_bin import FaceBinError  # noqa: E402
from jobs.data.face_rec_reader import FaceRec, FaceRecError  # noqa: E402

log = logging.getLogger("train")


def main(argv=None):
    return run_job(sys.argv[1:] if argv is None else argv, train_args.parse, run, errors=(
        train_args.ArgError, model_export.ExportError, evaluation.TargetError, face_iter.FaceDataError,
        resume.ResumeError, publish.PretrainedError, FaceRecError, FaceBinError))


def run(args, sync_out):
    """Training, or with --eval_only the verification of an exported model, on local folders."""
    return (publish.evaluate_only if args.eval_only else train)(args, sync_out)


def plan_phases(args):
    """[{"name", "loss", "epochs": [first, last], "lr"}]: a triplet run with
    --pretrain_epochs pre-trains with --pretrain_loss first (MassFace's recipe)."""
    phases, first = [], 0
    if args.pretrain_epochs:
        phases.append({"name": "pretrain", "loss": args.pretrain_loss,
                       "epochs": [0, args.pretrain_epochs - 1], "lr": args.pretrain_lr})
        first = args.pretrain_epochs
    phases.append({"name": "train", "loss": args.loss,
                   "epochs": [first, first + args.num_epochs - 1], "lr": args.lr})
    return phases


def train(args, sync_out):
    """The job proper, on local folders; sync_out() publishes train_url after each write."""

    # 1. Data: identities, image size, verification pairs, validation records.
    rec = FaceRec(args.data_url, args.train_file)
    num_classes = args.num_classes or rec.num_classes
    if num_classes < rec.num_classes:
        raise JobError(f"--num_classes={num_classes} but {args.data_url} holds "
                       f"{rec.num_classes} identities; drop --num_classes")
    image_size = args.image_size or rec.image_size
    targets = publish.load_targets(args, image_size)
    val_recs = [(os.path.splitext(n)[0], FaceRec(args.data_url, n)) for n in args.val_recs]
    inference_dir = None
    if args.export_model:  # fail now, not after an hour of training
        inference_dir = model_export.find_inference_dir(args.inference_dir, CODE_DIR)
    os.makedirs(args.train_url, exist_ok=True)

    # 2. Network (embedding only; the classification head belongs to a phase).
    ctxs = pick_context(args.num_gpus, log)
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    try:
        net, description = networks.build(args.network, args.num_layers, args.emb_size,
                                           image_size, args.net_units, args.net_blocks,
                                           args.width_mult, args.dropout)
    except ValueError as e:
        raise JobError(f"--network: {e}") from None
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2), ctx=ctxs)
    emb_size = net(mx.nd.zeros((1, 3) + tuple(image_size), ctx=ctxs[0])).shape[1]  # shapes
    begin_epoch, loaded = resume.begin_epoch(args, log)
    what = f"checkpoint {args.model_prefix}-{begin_epoch:04d}.params (--resume=no starts fresh)"
    if not loaded and args.pretrained:
        loaded, what = publish.load_pretrained(args), "--pretrained weights"
        log.info("Loaded pretrained weights %s", args.pretrained[0])
    elif not loaded and args.loss == "triplet" and not args.pretrain_epochs:
        log.warning("triplet training from scratch converges slowly: pass --pretrained="
                    "prefix,epoch of a softmax-trained checkpoint or --pretrain_epochs=N")
    if loaded:
        try:
            model_export.set_network_params(net, loaded, what)
        except ValueError as e:
            raise JobError(str(e)) from None
    net.hybridize(static_alloc=True)
    # The network to train: `net` itself, or its bf16 (AMP) graph sharing net's float32
    # parameters; heads, losses, verification, checkpoints and the export stay float32.
    train_net, dtype = mixed_precision_block(args.dtype, net, log)
    if args.no_wd:
        optim.exclude_from_decay(net.collect_params())

    phases = plan_phases(args)
    batch_size = args.per_batch_size * len(ctxs)
    epoch_size = args.epoch_size or math.ceil((args.epoch_image_num or rec.num_images) / batch_size)
    total_epochs = phases[-1]["epochs"][1] + 1
    log.info("Start training: num_epochs=%d epoch_size=%d batch_size=%d num_images=%d",
             total_epochs, epoch_size, batch_size, rec.num_images)
    log.info("Network %s emb %d, image %dx%d, %d identities, targets %s, context %s, OMP "
             "threads %s", description, emb_size, image_size[0], image_size[1], num_classes,
             ",".join(t[0] for t in targets) or "none", ctxs, os.environ.get("OMP_NUM_THREADS"))
    if begin_epoch:
        log.info("Resuming from %s-%04d.params: epochs %d..%d", args.model_prefix, begin_epoch,
                 begin_epoch, total_epochs - 1)

    # 3. Bookkeeping: metrics.json, checkpoints, verification with the best kept.
    prefix = os.path.join(args.train_url, args.model_prefix)
    metrics = face_metrics.FaceMetrics(os.path.join(args.train_url, "metrics.json"), {
        "mode": "train", "network": description, "loss": args.loss, "dtype": dtype,
        "mining": args.mining if args.loss == "triplet" else None, "num_classes": num_classes,
        "image_size": list(image_size), "emb_size": emb_size,
        "targets": [t[0] for t in targets]}, after_write=sync_out)
    verifier = evaluation.Verifier(targets, net, ctxs[0], args.verify_batch_size, metrics,
                                   prefix, log, args.select_by)
    metrics.doc["selection"] = verifier.label
    if targets:
        log.info("Validation metric: %s", verifier.label)
    kept = metrics.resume(begin_epoch) if begin_epoch else {}
    metrics.set_phases(phases)
    for slot, best in kept.items():
        verifier.bests[slot] = best
        metrics.set_best(slot, best)

    # 4. Train: phase by phase, epoch by epoch; the lr is a function of the update count.
    started = time.time()
    for number, phase in enumerate(phases, 1):
        first, last = phase["epochs"]
        if begin_epoch > last:
            continue
        triplet_phase, main_phase = phase["loss"] == "triplet", phase is phases[-1]
        verifier.begin_phase(phase["name"], "best" if main_phase or args.best_across_phases
                             else "pretrain-best")
        head, params = None, dict(net.collect_params())
        if not triplet_phase:
            head = losses.MarginHead(num_classes, emb_size, phase["loss"], args.margin_s,
                                     args.margin_m1, args.margin_m2, args.margin_m3,
                                     args.easy_margin)
            head.initialize(ctx=ctxs)
            head.hybridize(static_alloc=True)
            for p in head.collect_params().values():
                p.lr_mult *= args.fc7_lr_mult
                p.wd_mult *= args.fc7_wd_mult
            params.update(head.collect_params())
        schedule = optim.schedule(args, phase["lr"], epoch_size, last - first + 1, main_phase)
        trainer = optim.trainer(params, args, phase["lr"], args.kv_store)
        if "async" in args.kv_store:
            log.warning("--kv_store=%s updates on the servers: the lr stays %g (no schedule)",
                        args.kv_store, phase["lr"])
        if first < begin_epoch:
            resume.restore(prefix, begin_epoch, head, trainer, log)
        log.info("Phase[%d/%d] %s: loss %s%s, epochs %d-%d, %s optimizer, %s", number,
                 len(phases), phase["name"], phase["loss"],
                 f" ({args.mining})" if triplet_phase else "", first, last, args.optimizer,
                 schedule.describe())
        metric = steps.make_metric(phase["loss"])
        speedometer = mx.callback.Speedometer(batch_size, args.frequent)
        for epoch in range(max(first, begin_epoch), last + 1):
            batches = face_iter.FaceBatches(rec, batch_size, "pk" if triplet_phase else "random",
                                            args.images_per_identity, image_size,
                                            args.rand_mirror, seed=args.seed + epoch)
            metric.reset()
            tic, verified = time.time(), None
            for nbatch, (data, label) in enumerate(batches.epoch(epoch_size)):
                global_batch = epoch * epoch_size + nbatch
                trainer.set_learning_rate(schedule(global_batch - first * epoch_size))
                xs = gluon.utils.split_and_load(mx.nd.array(data), ctxs, even_split=False)
                ys = gluon.utils.split_and_load(mx.nd.array(label), ctxs, even_split=False)
                with autograd.record():
                    batch_losses = steps.forward_losses(train_net, head, xs, ys, args, rng, metric)
                autograd.backward(batch_losses)
                trainer.step(len(ctxs) if triplet_phase else batch_size)
                speedometer(mx.model.BatchEndParam(epoch, nbatch, metric, None))
                if args.verbose and (global_batch + 1) % args.verbose == 0 and targets:
                    verified = (global_batch + 1, verifier(global_batch + 1, epoch))
            mx.nd.waitall()  # the last batch's backward and update belong to this epoch
            elapsed, done = time.time() - tic, (epoch + 1) * epoch_size
            train_values = dict(metric.get_global_name_value())
            for name, value in train_values.items():
                log.info("Epoch[%d] Train-%s=%f", epoch, name, value)
            log.info("Epoch[%d] Time cost=%.3f", epoch, elapsed)
            entry = {"epoch": epoch, "stage": phase["name"], "loss": phase["loss"],
                     "train_accuracy": train_values.get("accuracy"),
                     "train_loss": train_values.get("loss"),
                     "triplets_per_batch": train_values.get("triplets"),
                     "time_s": round(elapsed, 3), "lr": trainer.learning_rate,
                     "samples_per_s": round(epoch_size * batch_size / max(elapsed, 1e-6), 2)}
            if targets:
                results = verified[1] if verified and verified[0] == done else verifier(done, epoch)
                log.info("Epoch[%d] Validation-accuracy=%f", epoch, verifier.score(results))
                for name, r in results.items():
                    log.info("Epoch[%d] Validation-%s-accuracy=%f", epoch, name, r["accuracy"])
            for name, val_rec in val_recs if head is not None else ():
                val_batches = face_iter.FaceBatches(val_rec, batch_size, image_size=image_size,
                                                    rand_mirror=False)
                entry[f"{name}_accuracy"] = acc = steps.classify_accuracy(
                    net, head, val_batches, ctxs[0], len(val_batches))
                log.info("Epoch[%d] Validation-%s-accuracy=%f", epoch, name, acc)
                if not targets:
                    log.info("Epoch[%d] Validation-accuracy=%f", epoch, acc)
            metrics.add_epoch(entry)
            # Last: a job killed before this point resumes from the previous epoch.
            symbol, net_params = model_export.network_params(net)
            path = model_export.save_checkpoint(prefix, epoch + 1, symbol, net_params)
            resume.save(prefix, epoch + 1, head, trainer)
            log.info('Saved checkpoint to "%s"', path)
    log.info("Training finished: %d epochs in %.1f s", max(0, total_epochs - begin_epoch),
             time.time() - started)
    warning = verifier.phase_warning()
    if warning:
        log.warning("warning: %s", warning)
        metrics.warn(warning)

    # 5. Final verification of the weights we export (the best ones when verified).
    verifier.restore_best()
    publish.finish(args, net, verifier, metrics, rec, description, emb_size, image_size,
                   inference_dir, log)
    for _, val_rec in val_recs:
        val_rec.close()
    rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
