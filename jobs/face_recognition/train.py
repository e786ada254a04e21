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
import shared  # noqa: E402
import train_args  # noqa: E402
import triplet  # noqa: E402

job_common = shared.load("job_common")

log = logging.getLogger("train")
DEFAULT_THRESHOLD = 0.38  # cosine; insightface's usual LFW squared-distance threshold ~1.24
CROSS_ENTROPY = gluon.loss.SoftmaxCrossEntropyLoss()
# One-line errors of the shared modules (FaceRec, load_bin, moxing storage), by class name.
SHARED_ERRORS = ("FaceRecError", "FaceBinError", "StorageError")


class JobError(ValueError):
    """A bad job setup (one-line message, exit code 2)."""


def make_metric(loss_name):
    if loss_name == "triplet":
        return mx.metric.CompositeEvalMetric([mx.metric.Loss("loss"), mx.metric.Loss("triplets")])
    return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.Loss("loss")])


def forward_losses(net, head, xs, ys, args, rng, metric):
    """Per-device losses of one batch (call under autograd.record); updates `metric`."""
    out = []
    for x, y in zip(xs, ys):
        emb = net(x)
        if head is None:  # triplet: mine on this forward's embeddings (MassFace "online")
            found = triplet.select(triplet.pairwise_sq_distances(emb.asnumpy()), y.asnumpy(),
                                   args.mining, args.triplet_alpha, rng,
                                   max_triplets=args.triplet_max_factor * len(y))
            # No triplet: a zero loss keeps every gradient fresh (multi-device step).
            loss = triplet.triplet_loss(mx.nd, emb, found, args.triplet_alpha) if len(found) \
                else (emb * 0).sum()
            metric.metrics[1].update(None, [mx.nd.array([len(found)])])
            metric.metrics[0].update(None, [loss])
        else:
            logits, plain = head(emb, y)
            loss = CROSS_ENTROPY(logits, y)
            metric.metrics[0].update([y], [plain])  # accuracy without the margin
            metric.metrics[1].update(None, [loss])
        out.append(loss)
    return out


def main(argv=None):
    job_common.setup_logging()
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (train_args.ArgError, model_export.ExportError, evaluation.TargetError,
            face_iter.FaceDataError, shared.SharedModuleError, JobError) as e:
        print(f"train.py: error: {e}", file=sys.stderr, flush=True)
        return 2
    except ValueError as e:
        if type(e).__name__ not in SHARED_ERRORS:
            raise
        print(f"train.py: error: {e}", file=sys.stderr, flush=True)
        return 2


def run(argv):
    args, unknown = train_args.parse(argv)
    if unknown:
        log.warning("ignoring unknown arguments: %s", " ".join(unknown))
    storage = shared.load("storage")
    workspace = storage.Workspace(args.data_url, args.train_url)  # obs:// -> local copies
    try:
        args.data_url, args.train_url = workspace.data_dir, workspace.out_dir
        return train(args, workspace.sync_out)
    finally:
        workspace.close()


def train(args, sync_out):
    """The job proper, on local folders; sync_out() publishes train_url after each write."""

    # 1. Data: identities, image size, verification pairs.
    rec = shared.load("face_rec_reader").FaceRec(args.data_url)
    num_classes = args.num_classes or rec.num_classes
    if num_classes < rec.num_classes:
        raise JobError(f"--num_classes={num_classes} but {args.data_url} holds "
                       f"{rec.num_classes} identities; drop --num_classes")
    image_size = args.image_size or rec.image_size
    labels = evaluation.read_labels(args.data_url, num_classes)
    load_bin = shared.load("face_bin").load_bin
    targets = [(name, *load_bin(path, image_size))
               for name, path in evaluation.find_targets(args.data_url, args.target)]
    inference_dir = None
    if args.export_model:  # fail now, not after an hour of training
        inference_dir = model_export.find_inference_dir(args.inference_dir, CODE_DIR)
    os.makedirs(args.train_url, exist_ok=True)

    # 2. Network (embedding only; the classification head belongs to a stage).
    ctxs = job_common.pick_context(args.num_gpus, log)
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
    if args.pretrained:
        try:
            loaded = model_export.load_params(*args.pretrained, also_in=args.data_url)
            model_export.set_network_params(net, loaded, "--pretrained checkpoint")
        except ValueError as e:
            raise JobError(f"--pretrained: {e}") from None
        log.info("Loaded pretrained weights %s-%04d.params", *args.pretrained)
    elif args.loss == "triplet" and not args.pretrain_epochs:
        log.warning("triplet training from scratch converges slowly: pass --pretrained="
                    "prefix,epoch of a softmax-trained checkpoint or --pretrain_epochs=N")
    net.hybridize(static_alloc=True)

    stages = [("train", args.loss, args.num_epochs)]
    if args.pretrain_epochs:
        stages.insert(0, ("pretrain", args.pretrain_loss, args.pretrain_epochs))
    batch_size = args.per_batch_size * len(ctxs)
    epoch_size = args.epoch_size or math.ceil(rec.num_images / batch_size)
    total_epochs = sum(n for _, _, n in stages)
    log.info("Start training: num_epochs=%d epoch_size=%d batch_size=%d num_images=%d",
             total_epochs, epoch_size, batch_size, rec.num_images)
    log.info("Network %s emb %d, image %dx%d, %d identities, loss %s, targets %s, context %s, "
             "OMP threads %s", description, emb_size, image_size[0], image_size[1], num_classes,
             " -> ".join(f"{s[1]} x{s[2]}" for s in stages),
             ",".join(t[0] for t in targets) or "none", ctxs, os.environ.get("OMP_NUM_THREADS"))

    # 3. Bookkeeping: metrics.json, checkpoints, verification with the best kept.
    prefix = os.path.join(args.train_url, args.model_prefix)
    metrics = face_metrics.FaceMetrics(
        os.path.join(args.train_url, "metrics.json"),
        {"network": description, "loss": args.loss, "mining": args.mining if args.loss ==
         "triplet" else None, "num_classes": num_classes, "image_size": list(image_size),
         "emb_size": emb_size, "targets": [t[0] for t in targets]}, after_write=sync_out)
    verifier = evaluation.Verifier(targets, net, ctxs[0], args.verify_batch_size, metrics,
                                   prefix + "-best", log)

    # 4. Train: stage by stage, epoch by epoch.
    global_batch, epoch, started = 0, 0, time.time()
    for stage, loss_name, num_epochs in stages:
        triplet_stage = loss_name == "triplet"
        head = None
        params = net.collect_params()
        if not triplet_stage:
            head = losses.MarginHead(num_classes, emb_size, loss_name, args.margin_s,
                                     args.margin_m1, args.margin_m2, args.margin_m3,
                                     args.easy_margin)
            head.initialize(ctx=ctxs)
            head.hybridize(static_alloc=True)
            for p in head.collect_params().values():
                p.lr_mult *= args.fc7_lr_mult
                p.wd_mult *= args.fc7_wd_mult
            params.update(head.collect_params())
        opt = {"learning_rate": args.lr, "wd": args.wd, "momentum": args.mom}
        steps = [s - global_batch for s in args.lr_steps if s > global_batch]
        if stage == "train" and steps:
            opt["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(steps, args.lr_factor,
                                                                      base_lr=args.lr)
        trainer = gluon.Trainer(params, "sgd", opt, kvstore=args.kv_store)
        batches = face_iter.FaceBatches(rec, batch_size, "pk" if triplet_stage else "random",
                                        args.images_per_identity, image_size, args.rand_mirror,
                                        seed=args.seed + epoch)
        metric = make_metric(loss_name)
        speedometer = mx.callback.Speedometer(batch_size, args.frequent)
        for _ in range(num_epochs):
            metric.reset()
            tic = time.time()
            verified_at = None
            for nbatch, (data, label) in enumerate(batches.epoch(epoch_size)):
                xs = gluon.utils.split_and_load(mx.nd.array(data), ctxs, even_split=False)
                ys = gluon.utils.split_and_load(mx.nd.array(label), ctxs, even_split=False)
                with autograd.record():
                    batch_losses = forward_losses(net, head, xs, ys, args, rng, metric)
                autograd.backward(batch_losses)
                trainer.step(len(ctxs) if triplet_stage else batch_size)
                speedometer(mx.model.BatchEndParam(epoch, nbatch, metric, None))
                global_batch += 1
                if args.verbose and global_batch % args.verbose == 0 and targets:
                    verifier(global_batch, epoch)
                    verified_at = global_batch
            mx.nd.waitall()  # the last batch's backward and update belong to this epoch
            elapsed = time.time() - tic
            train_values = dict(metric.get_global_name_value())
            for name, value in train_values.items():
                log.info("Epoch[%d] Train-%s=%f", epoch, name, value)
            log.info("Epoch[%d] Time cost=%.3f", epoch, elapsed)
            symbol, net_params = model_export.network_params(net)
            path = model_export.save_checkpoint(prefix, epoch + 1, symbol, net_params)
            log.info('Saved checkpoint to "%s"', path)
            if targets:
                results = verifier(global_batch, epoch, record=verified_at != global_batch)
                first = results[targets[0][0]]["accuracy"]
                log.info("Epoch[%d] Validation-accuracy=%f", epoch, first)
                for name, r in results.items():
                    log.info("Epoch[%d] Validation-%s-accuracy=%f", epoch, name, r["accuracy"])
            metrics.add_epoch({
                "epoch": epoch, "stage": stage, "loss": loss_name,
                "train_accuracy": train_values.get("accuracy"),
                "train_loss": train_values.get("loss"),
                "triplets_per_batch": train_values.get("triplets"),
                "time_s": round(elapsed, 3), "lr": trainer.learning_rate,
                "samples_per_s": round(epoch_size * batch_size / max(elapsed, 1e-6), 2)})
            epoch += 1
    log.info("Training finished: %d epochs in %.1f s", total_epochs, time.time() - started)

    # 5. Final verification of the weights we export (the best ones when verified).
    verifier.restore_best()
    final = verifier("final", epoch - 1, record=False)
    threshold = DEFAULT_THRESHOLD
    if final:
        threshold = 1 - final[targets[0][0]]["threshold"] / 2
    if args.export_model:
        gallery = None
        if args.gallery_images:
            gallery = evaluation.build_gallery(rec, verifier.embed, image_size,
                                               args.gallery_images, labels)
        symbol, net_params = model_export.network_params(net)
        info = {"image_size": list(image_size), "emb_size": emb_size, "threshold": threshold,
                "threshold_source": f"{targets[0][0]} best accuracy threshold" if final else
                "default", "network": description, "loss": args.loss,
                "verification": {n: {k: r[k] for k in face_metrics.KEYS} for n, r in final.items()}}
        path = model_export.export_package(args.train_url, symbol, net_params, info, gallery,
                                           inference_dir)
        log.info("Exported model package to %s (threshold cosine %.4f, gallery %s)", path,
                 threshold, f"{len(gallery[1])} identities" if gallery else "none")
    metrics.finish(final, threshold)
    rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
