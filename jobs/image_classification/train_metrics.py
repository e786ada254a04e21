"""``metrics.json`` of a training job, rewritten atomically after every epoch.

Layout::

    {"epochs": [{"epoch": 0, "train_accuracy": .., "val_accuracy": .., "val_cross_entropy": ..,
                 "val_top_k_accuracy_5": .., "time_s": .., "samples_per_s": .., "lr": ..}, ...],
     "final": {...last epoch...}, "num_classes": 6, "image_shape": [3, 64, 64], "top_k": 5}

``epoch`` is 0-based like MXNet's log lines (``Epoch[0]``); the checkpoint written at the
end of epoch e is ``<prefix>-%04d.params`` % (e + 1).  ``val_*`` are null without a
validation set; ``val_top_k_accuracy_5`` is top-k with k = ``top_k`` = min(5, classes).
``time_s`` is the wall time of the training part of the epoch (validation excluded),
``samples_per_s`` = epoch_size * batch_size / time_s for this worker; ``lr`` is the learning
rate of the epoch (``lr_at(epoch)``, null when not given).

Usage with Module.fit: pass ``batch_end`` in batch_end_callback, ``epoch_end`` in
epoch_end_callback and ``eval_end`` as eval_end_callback; ``after_write()`` (optional)
runs after each rewrite, e.g. to copy train_url to OBS.
"""
import json
import time

from jobs.common.package import write_json_atomic

VAL_KEYS = {"accuracy": "val_accuracy", "cross-entropy": "val_cross_entropy"}


def load_epochs(path, before_epoch):
    """Entries of an existing metrics.json for epochs < before_epoch (for resumed jobs)."""
    try:
        with open(path) as f:
            return [e for e in json.load(f).get("epochs", []) if e.get("epoch", 1e9) < before_epoch]
    except (OSError, ValueError, AttributeError):
        return []


class MetricsRecorder:
    def __init__(self, path, num_classes, image_shape, samples_per_epoch, has_val,
                 previous=(), after_write=None, lr_at=None):
        self.path, self.has_val, self.after_write, self.lr_at = path, has_val, after_write, lr_at
        self.samples_per_epoch = samples_per_epoch
        self.header = {"num_classes": num_classes, "image_shape": list(image_shape),
                       "top_k": min(5, num_classes)}
        self.epochs = list(previous)
        self.train_metric = None
        self.pending = None
        self.t0 = time.time()

    def batch_end(self, param):
        self.train_metric = param.eval_metric  # Module.fit's metric object, for epoch_end

    def epoch_end(self, epoch, symbol, arg_params, aux_params):
        elapsed = max(time.time() - self.t0, 1e-6)
        train = dict(self.train_metric.get_global_name_value()) if self.train_metric else {}
        self.pending = {"epoch": epoch, "train_accuracy": train.get("accuracy"),
                        "val_accuracy": None, "val_cross_entropy": None,
                        "val_top_k_accuracy_5": None, "time_s": round(elapsed, 3),
                        "samples_per_s": round(self.samples_per_epoch / elapsed, 2),
                        "lr": round(self.lr_at(epoch), 10) if self.lr_at else None}
        if not self.has_val:
            self._commit()

    def eval_end(self, param):
        for name, value in param.eval_metric.get_global_name_value():
            if name.startswith("top_k_accuracy"):
                self.pending["val_top_k_accuracy_5"] = value
            elif name in VAL_KEYS:
                self.pending[VAL_KEYS[name]] = value
        self._commit()

    def _commit(self):
        self.epochs.append(self.pending)
        self.pending = None
        write_json_atomic(self.path, dict(self.header, epochs=self.epochs, final=self.epochs[-1]))
        if self.after_write:
            self.after_write()
        self.t0 = time.time()  # the next epoch's training starts now
