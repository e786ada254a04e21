"""The face job's ends: verification targets and pretrained weights in, the final
verification, metrics.json "final" and the model package out; and ``--eval_only``.

``evaluate_only(args, sync_out)`` (``--eval_only --pretrained=prefix,epoch|package``):
loads the saved embedding network from its own -symbol.json (no --network arguments
needed), verifies it unchanged on every target (or ``--target``), writes metrics.json
(``"mode": "eval_only"``, one verification per target, "final") and, with
``--export_model``, the model package with the measured same-person threshold (a gallery
when the data folder holds a training .rec).
"""
import logging
import os

import evaluation
import face_metrics
import model_export
from jobs.common.runtime import pick_context
from jobs.data.face_bin import load_bin
from jobs.data.face_rec_reader import FaceRec

log = logging.getLogger("train")
DEFAULT_THRESHOLD = 0.38  # cosine; insightface's usual LFW squared-distance threshold ~1.24


class PretrainedError(ValueError):
    """--pretrained cannot be loaded (one-line message)."""


def load_targets(args, image_size):
    return [(name, *load_bin(path, image_size))
            for name, path in evaluation.find_targets(args.data_url, args.target)]


def load_pretrained(args):
    try:
        return model_export.load_params(*args.pretrained, also_in=args.data_url)
    except ValueError as e:
        raise PretrainedError(f"--pretrained: {e}") from None


def finish(args, net, verifier, metrics, rec, description, emb_size, image_size,
           inference_dir, log, final=None):
    """Verify the network as it will be exported (unless `final` holds that already),
    write "final" and the package."""
    if final is None:
        epochs = metrics.doc["epochs"]
        final = verifier("final", epochs[-1]["epoch"] if epochs else 0, record=False)
    score, first, threshold = None, None, DEFAULT_THRESHOLD
    if final:  # the threshold of the selection target (the first one for a mean)
        score = verifier.score(final)
        first = verifier.select if verifier.select in final else next(iter(final))
        threshold = 1 - final[first]["threshold"] / 2
    if args.export_model:
        gallery = None
        if args.gallery_images and rec is not None:
            labels = evaluation.read_labels(args.data_url, rec.num_classes)
            gallery = evaluation.build_gallery(rec, verifier.embed, image_size,
                                               args.gallery_images, labels)
        symbol, net_params = model_export.network_params(net)
        info = {"image_size": list(image_size), "emb_size": emb_size, "threshold": threshold,
                "threshold_source": f"{first} best accuracy threshold" if final else "default",
                "network": description, "loss": args.loss,
                "verification": {n: {k: r[k] for k in face_metrics.KEYS} for n, r in final.items()}}
        path = model_export.export_package(args.train_url, symbol, net_params, info, gallery,
                                           inference_dir)
        log.info("Exported model package to %s (threshold cosine %.4f, gallery %s)", path,
                 threshold, f"{len(gallery[1])} identities" if gallery else "none")
    metrics.finish(final, score, threshold)


def evaluate_only(args, sync_out):
    import mxnet as mx
    ctx = pick_context(args.num_gpus, log)[0]
    try:
        net, info = model_export.load_block(*args.pretrained, also_in=args.data_url, ctx=ctx)
    except ValueError as e:
        raise PretrainedError(f"--pretrained: {e}") from None
    rec = None
    if os.path.isfile(os.path.join(args.data_url, args.train_file)):
        rec = FaceRec(args.data_url, args.train_file)
    image_size = args.image_size or tuple(info.get("image_size") or ()) or (
        rec.image_size if rec else None)
    if not image_size:
        raise PretrainedError("--eval_only: image size unknown (no face.json in the package, no "
                              "property in data_url): pass --image_size=H,W")
    targets = load_targets(args, image_size)
    if not targets:
        raise evaluation.TargetError(f"--eval_only: no .bin pair files in {args.data_url}")
    inference_dir = None
    if args.export_model:
        inference_dir = model_export.find_inference_dir(args.inference_dir, os.path.dirname(
            os.path.abspath(__file__)))
    os.makedirs(args.train_url, exist_ok=True)
    emb_size = net(mx.nd.zeros((1, 3) + tuple(image_size), ctx=ctx)).shape[1]
    source = ",".join(str(p) for p in args.pretrained if p is not None)
    log.info("Evaluating %s (emb %d, image %dx%d) on %s", source, emb_size, *image_size,
             ",".join(t[0] for t in targets))
    metrics = face_metrics.FaceMetrics(os.path.join(args.train_url, "metrics.json"), {
        "mode": "eval_only", "pretrained": source, "network": info.get("network", source),
        "loss": info.get("loss"), "image_size": list(image_size), "emb_size": emb_size,
        "targets": [t[0] for t in targets]}, after_write=sync_out)
    verifier = evaluation.Verifier(targets, net, ctx, args.verify_batch_size, metrics,
                                   os.path.join(args.train_url, args.model_prefix), log,
                                   args.select_by)
    metrics.doc["selection"] = verifier.label
    args.loss = info.get("loss") or "unknown"  # what the package says, not this job's default
    results = verifier("eval", 0, record=False)
    for name, result in results.items():
        metrics.add_verification(name, "eval", 0, result)
    finish(args, net, verifier, metrics, rec, info.get("network", source), emb_size,
           image_size, inference_dir, log, final=results)
    if rec is not None:
        rec.close()
    return 0
