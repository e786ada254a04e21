"""``metrics.json`` of the face job, rewritten atomically after every change.

Layout::

    {"network": .., "loss": .., "num_classes": .., "image_size": [H, W], "emb_size": ..,
     "targets": ["lfw", ...],
     "epochs": [{"epoch": 0, "stage": "train"|"pretrain", "loss": .., "train_accuracy": ..
                 (null for triplet), "train_loss": .., "triplets_per_batch": .. (triplet),
                 "time_s": .., "samples_per_s": .., "lr": ..}, ...],
     "verification": [{"target": "lfw", "batch": 1000, "epoch": 0, "accuracy": ..,
                       "accuracy_std": .., "val": .., "val_std": .., "far": .., "xnorm": ..,
                       "threshold": .. (squared L2 of normalised embeddings)}, ...],
     "best": {"target": "lfw", "accuracy": .., "batch": .., "epoch": .., "checkpoint": ..},
     "final": {"train_accuracy" (not for triplet), "train_loss", "val_accuracy" (first target),
               "<target>_accuracy", "<target>_accuracy_std", "<target>_val", "<target>_far",
               "<target>_xnorm", "<target>_threshold", "threshold_cosine", ...}}

``batch`` is the global batch count; "final" holds the last epoch's training numbers and
the verification of the exported weights (the best checkpoint when there was one).
"""

import shared

write_json_atomic = shared.load("job_common").write_json_atomic
KEYS = ("accuracy", "accuracy_std", "val", "val_std", "far", "xnorm", "threshold")


class FaceMetrics:
    """Collects epochs and verifications; ``after_write()`` runs after each rewrite."""

    def __init__(self, path, header, after_write=None):
        self.path, self.after_write = path, after_write
        self.doc = dict(header, epochs=[], verification=[], best=None, final={})

    def _write(self):
        write_json_atomic(self.path, self.doc)
        if self.after_write:
            self.after_write()

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

    def set_best(self, best):
        self.doc["best"] = best
        self._write()

    def finish(self, results, threshold_cosine):
        """Final verification results {target: result} of the exported weights."""
        final = self.doc["final"]
        for i, (target, result) in enumerate(results.items()):
            if i == 0:
                final["val_accuracy"] = result["accuracy"]
            final.update({f"{target}_{k}": result[k] for k in KEYS})
        final["threshold_cosine"] = threshold_cosine
        if self.doc["best"]:
            final["best_accuracy"] = self.doc["best"]["accuracy"]
        self._write()
