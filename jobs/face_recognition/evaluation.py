"""Embedding helpers of the face job: verification targets, log lines, gallery.

* ``find_targets(data_dir, names)``: the ``.bin`` pair files to verify on, in order
  (insightface's lfw, cfp_fp, agedb_30 first, then the others alphabetically, unless
  ``names`` pins them); ``--select_by`` (default the first) decides the best checkpoint.
* ``read_labels(data_dir, n)``: identity names (labels.txt, else the ids).
* ``embedder(net, ctx)``: uint8 N x H x W x 3 RGB -> numpy N x emb (inference mode).
* ``log_result(log, name, tag, result)``: insightface's lines, e.g.
  ``[lfw][1000]Accuracy-Flip: 0.99500+-0.00300``.
* ``build_gallery(rec, embed, ...)``: per identity, the L2-normalised mean of up to
  ``per_identity`` flip-summed, normalised embeddings.
* ``Verifier``: verification on every target during and after training, keeping the best.
* ``pair_distances(embed, images, batch_size)``: each pair's distance as ``verify`` measures it;
  the final check writes them to ``verification_pairs.json`` (beside metrics.json) for the
  orchestrator's ROC and distance histograms.
"""
import os

import numpy as np

import model_export
from face_iter import decode
from face_metrics import write_json_atomic
from verification import verify

FIRST = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")


class TargetError(ValueError):
    """A named verification target is missing (one-line message)."""


def find_targets(data_dir, names):
    """[(name, path)] of the .bin files to verify on."""
    found = {f[:-4]: os.path.join(data_dir, f) for f in os.listdir(data_dir) if f.endswith(".bin")}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise TargetError(f"--target {','.join(missing)}: no {missing[0]}.bin in {data_dir} "
                              f"(found: {', '.join(sorted(found)) or 'none'})")
        return [(n, found[n]) for n in names]
    order = [n for n in FIRST if n in found] + sorted(n for n in found if n not in FIRST)
    return [(n, found[n]) for n in order]


def read_labels(data_dir, num_classes):
    """Identity names from data_dir/labels.txt (line i = identity i), else the ids as text."""
    path = os.path.join(data_dir, "labels.txt")
    names = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    return names + [str(i) for i in range(len(names), num_classes)]


def embedder(net, ctx):
    """Function: uint8 NHWC RGB batch -> float32 numpy embeddings (no autograd)."""
    import mxnet as mx

    def embed(images):
        x = mx.nd.array(np.asarray(images).transpose(0, 3, 1, 2), ctx=ctx, dtype="float32")
        return net(x).asnumpy()
    return embed


def normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def flip_embed(embed, images):
    """L2-normalised sum of the embeddings of images and their mirror images."""
    return normalize(embed(images) + embed(images[:, :, ::-1]))


def log_result(log, name, tag, r):
    log.info("[%s][%s]XNorm: %f", name, tag, r["xnorm"])
    log.info("[%s][%s]Accuracy-Flip: %1.5f+-%1.5f", name, tag, r["accuracy"], r["accuracy_std"])
    log.info("[%s][%s]VAL@FAR=%g: %1.5f+-%1.5f (FAR %1.5f)", name, tag, r.get("far_target", 1e-3),
             r["val"], r["val_std"], r["far"])
    log.info("[%s][%s]Threshold: %1.4f (cosine %1.4f)", name, tag, r["threshold"],
             1 - r["threshold"] / 2)


def build_gallery(rec, embed, image_size, per_identity, labels, batch_size=64):
    """(C x D float32 embeddings, [label]) over the identities of rec that have images."""
    rows, names = [], []
    for ident, keys in rec.identities:
        keys = keys[:per_identity]
        if not keys:
            continue
        images = np.stack([decode(rec.read(k)[1], image_size, f"record {k}") for k in keys])
        emb = np.concatenate([flip_embed(embed, images[i:i + batch_size])
                              for i in range(0, len(images), batch_size)])
        rows.append(normalize(emb.mean(axis=0)))
        names.append(labels[ident] if ident < len(labels) else str(ident))
    return np.asarray(rows, np.float32), names


def pair_distances(embed, images, batch_size=64):
    """Squared L2 distance of each pair's flip-summed, normalised embeddings (rows 2i, 2i+1),
    the quantity ``verify`` thresholds."""
    emb = np.concatenate([flip_embed(embed, images[i:i + batch_size])
                          for i in range(0, len(images), batch_size)])
    return ((emb[0::2] - emb[1::2]) ** 2).sum(axis=1)


def write_pairs(path, targets, embed, batch_size, results):
    """``verification_pairs.json``: per target its pair distances, same/different flags, the
    chosen threshold, folds and FAR target (written atomically)."""
    doc = {name: {"distances": [round(float(d), 5) for d in pair_distances(embed, images, batch_size)],
                  "issame": [bool(s) for s in issame], "threshold": results[name]["threshold"],
                  "folds": len(results[name].get("fold_accuracy") or ()) or 10,
                  "far_target": results[name].get("far_target", 1e-3)}
           for name, images, issame in targets}
    write_json_atomic(path, doc)


class Verifier:
    """``verifier(batch, epoch)`` verifies the network on every target (blocking), logs the
    lines, records them in metrics.json and keeps the best weights by the selection score
    (``select_by``: a target's accuracy, or ``mean`` over the targets; ties: the later one).

    Bests are kept per slot: ``begin_phase(name, slot)`` says where the current phase's
    bests go; slot ``best`` is what gets exported (``<best_prefix>-0000.params``), another
    slot (``pretrain-best``: a pre-training not eligible for export) is written to
    ``<prefix>-<slot>-0000.params`` and only compared.  ``record=False`` only logs (final check)
    and writes the pair distances to ``verification_pairs.json`` beside metrics.json.
    Returns {target: verify() result}.
    """

    def __init__(self, targets, net, ctx, batch_size, metrics, prefix, log, select_by=""):
        self.targets, self.net, self.batch_size = targets, net, batch_size
        self.embed = embedder(net, ctx)
        self.metrics, self.prefix, self.log = metrics, prefix, log
        names = [t[0] for t in targets]
        if select_by and select_by != "mean" and select_by not in names:
            raise TargetError(f"--select_by {select_by}: not a verification target "
                              f"(targets: {', '.join(names) or 'none'}; or 'mean')")
        self.select = select_by or (names[0] if names else None)
        self.label = ("mean accuracy of " + ",".join(names) if self.select == "mean"
                      else f"{self.select} accuracy")
        self.phase, self.slot = None, "best"
        self.bests = {}      # slot -> {"accuracy", "batch", "epoch", "phase", "checkpoint"}
        self.best_params = None

    def score(self, results):
        if self.select == "mean":
            return float(np.mean([r["accuracy"] for r in results.values()]))
        return results[self.select]["accuracy"]

    def begin_phase(self, name, slot):
        self.phase, self.slot = name, slot

    def __call__(self, batch, epoch, record=True):
        results = {}
        for name, images, issame in self.targets:
            results[name] = r = verify(self.embed, images, issame, self.batch_size)
            log_result(self.log, name, batch, r)
            if record:
                self.metrics.add_verification(name, batch, epoch, r)
        if not record and results:
            write_pairs(os.path.join(os.path.dirname(self.metrics.path), "verification_pairs.json"),
                        self.targets, self.embed, self.batch_size, results)
        if not record or not results:
            return results
        score, best = self.score(results), self.bests.get(self.slot)
        if best is None or score >= best["accuracy"]:
            symbol, params = model_export.network_params(self.net)
            path = model_export.save_checkpoint(f"{self.prefix}-{self.slot}", 0, symbol, params)
            if self.slot == "best":
                self.best_params = params
            self.bests[self.slot] = best = {
                "selection": self.label, "accuracy": score, "batch": batch, "epoch": epoch,
                "phase": self.phase, "checkpoint": os.path.basename(path)}
            self.metrics.set_best(self.slot, best)
            self.log.info("[%s][%s]Accuracy-Highest: %1.5f (%s, saved %s)", self.select, batch,
                          score, self.phase or "train", os.path.basename(path))
        return results

    def restore_best(self):
        """Put the exported slot's best weights back into the network (from memory, else
        from its checkpoint file after a resume); False when there are none."""
        params = self.best_params
        if params is None and "best" in self.bests:
            params = model_export.load_params(f"{self.prefix}-best", 0)
        if params is None:
            return False
        model_export.set_network_params(
            self.net, {k.partition(":")[2] or k: v for k, v in params.items()}, "best checkpoint")
        return True

    def phase_warning(self):
        """A warning text when the exported phase never beat the pre-training, else None."""
        final, pre = self.bests.get("best"), self.bests.get("pretrain-best")
        if not final or not pre or final["accuracy"] > pre["accuracy"]:
            return None
        return (f"the {final['phase']} phase never beat the pre-training: best {self.label} "
                f"{final['accuracy']:.4f} (epoch {final['epoch']}) vs {pre['accuracy']:.4f} after "
                f"pre-training epoch {pre['epoch']}; the export keeps the {final['phase']} "
                f"phase's best (--best_across_phases=true exports the pre-trained weights)")
