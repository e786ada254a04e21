"""``metrics.json`` of the face job, rewritten atomically after every change.

Layout::

    {"mode": "train"|"eval_only", "network": .., "loss": .., "dtype": "float32"|"bfloat16" (train),
     "num_classes": ..,
     "image_size": [H, W], "emb_size": .., "targets": ["lfw", ...],
     "selection": "lfw accuracy" (or "mean accuracy of lfw,cfp_fp"),
     "phases": [{"name": "pretrain"|"train", "loss": .., "epochs": [first, last],
                 "best": {...} | null}, ...],
     "epochs": [{"epoch": 0, "stage": phase name, "loss": .., "train_accuracy": ..
                 (null for triplet), "train_loss": .., "triplets_per_batch": .. (triplet),
                 "time_s": .., "samples_per_s": .., "lr": ..,
                 "<val rec>_accuracy": .. (--val_file .rec)}, ...],
     "verification": [{"target": "lfw", "batch": 1000, "epoch": 0, "accuracy": ..,
                       "accuracy_std": .., "val": .., "val_std": .., "far": .., "xnorm": ..,
                       "threshold": .. (squared L2 of normalised embeddings)}, ...],
     "best": {"selection": .., "accuracy": .. (selection score), "batch": .., "epoch": .., "phase": ..,
              "checkpoint": ..}   (the exported one: within the last phase unless
                                   --best_across_phases),
     "warnings": ["the train phase never beat the pre-training: ..."],
     "final": {"train_accuracy" (not for triplet), "train_loss", "val_accuracy" (the
               selection score), "<target>_accuracy", "<target>_accuracy_std",
               "<target>_val", "<target>_far", "<target>_xnorm", "<target>_threshold",
               "threshold_cosine", "best_accuracy", ...}}

``batch`` is the global batch count; "final" holds the last epoch's training numbers and
the verification of the exported weights (the best checkpoint when there was one).
``FaceMetrics.resume(n)`` keeps what epochs 0..n-1 wrote, for a job resumed after n epochs.
"""
import json

from jobs.common.package import write_json_atomic

KEYS = ("accuracy", "accuracy_std", "val", "val_std", "far", "xnorm", "threshold")


class FaceMetrics:
    """Collects epochs and verifications; ``after_write()`` runs after each rewrite."""

    def __init__(self, path, header, after_write=None):
        self.path, self.after_write = path, after_write
        self.doc = dict(header, phases=[], epochs=[], verification=[], best=None, warnings=[],
                        final={})

    def _write(self):
        write_json_atomic(self.path, self.doc)
        if self.after_write:
            self.after_write()

    def resume(self, begin_epoch):
        """Take over epochs < begin_epoch (and their verifications and bests) from the
        metrics.json a killed run left; returns the kept bests {slot: record}."""
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            return {}
        self.doc["epochs"] = [e for e in old.get("epochs", []) if e["epoch"] < begin_epoch]
        self.doc["verification"] = [v for v in old.get("verification", [])
                                    if v["epoch"] < begin_epoch]
        bests = {}
        for phase in old.get("phases", []):
            best = phase.get("best")
            if best and best["epoch"] < begin_epoch:
                bests[best.get("slot", "best")] = best
        return bests

    def set_phases(self, phases):
        self.doc["phases"] = [dict(p, best=None) for p in phases]
        self._write()

    def add_epoch(self, entry):
        self.doc["epochs"].append(entry)
        # "final" holds numbers only (readers format them): no train_accuracy for triplet.
        self.doc["final"] = {k: entry[k] for k in ("epoch", "train_accuracy", "train_loss")
                             if entry.get(k) is not None}
        self._write()

    def add_verification(self, target, batch, epoch, result):
        self.doc["verification"].append(dict({k: result[k] for k in KEYS}, target=target,
                                             batch=batch, epoch=epoch))
        self._write()

    def set_best(self, slot, best):
        for phase in self.doc["phases"]:
            if phase["name"] == best["phase"]:
                phase["best"] = dict(best, slot=slot)
        if slot == "best":
            self.doc["best"] = best
        self._write()

    def warn(self, text):
        self.doc["warnings"].append(text)
        self._write()

    def finish(self, results, score, threshold_cosine):
        """Final verification results {target: result} of the exported weights."""
        final = self.doc["final"]
        if results:
            final["val_accuracy"] = score
        for target, result in results.items():
            final.update({f"{target}_{k}": result[k] for k in KEYS})
        final["threshold_cosine"] = threshold_cosine
        if self.doc["best"]:
            final["best_accuracy"] = self.doc["best"]["accuracy"]
        self._write()
