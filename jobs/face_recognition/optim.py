"""Optimisers, learning-rate schedules and weight-decay groups of the face job.

Optimisers (``--optimizer``): ``sgd`` (momentum ``--mom``), ``nag`` (Nesterov), ``adam``
(L2 decay added to the gradient, MXNet's Adam) and ``adamw`` (decoupled decay as in
Loshchilov & Hutter / PyTorch: ``w *= 1 - lr * wd`` before the Adam step).

Schedules (``Schedule``) are pure functions of the update index ``i`` (0 for the first
update of a phase) and match MXNet's schedulers at ``num_update = i + 1``:

* ``step``: ``lr * factor ** (number of steps s with i >= s)`` (MultiFactorScheduler:
  the lr changes once ``s`` updates are done);
* ``cosine``: ``final + (lr - final) * (1 + cos(pi * (n - W) / (T - W))) / 2``;
* ``poly``: ``final + (lr - final) * (1 - (n - W) / (T - W)) ** power``;

with ``n = i + 1``, ``T`` the phase's updates and a linear warm-up over the first ``W``
updates (``lr * n / W``, MXNet's warmup from 0).  Steps and warm-up are given in updates
(``--lr_steps``, ``--warmup_steps``) or in epochs (``--lr_epochs``, ``--warmup_epochs``).

Weight decay per parameter group (insightface / GluonCV ``--no-wd``): with ``no_wd``
the BatchNorm gammas and betas and every bias get ``wd_mult = 0``.
"""
import math
import re
from dataclasses import dataclass

import mxnet as mx

OPTIMIZERS = ("sgd", "nag", "adam", "adamw")
SCHEDULES = ("step", "cosine", "poly")
NO_WD = re.compile(r"(gamma|beta|bias)$")


@dataclass(frozen=True)
class Schedule:
    """lr of update i of a phase (see the module docstring)."""
    kind: str
    lr: float
    total: int                 # updates in the phase
    steps: tuple = ()          # "step": update counts where lr *= factor
    factor: float = 0.1
    warmup: int = 0
    power: float = 2.0
    final_lr: float = 0.0

    def __call__(self, i):
        n = i + 1
        if n < self.warmup:
            return self.lr * n / self.warmup
        if self.kind == "step":
            return self.lr * self.factor ** sum(i >= s for s in self.steps)
        span = max(1, self.total - self.warmup)
        t = min(1.0, (n - self.warmup) / span)
        if self.kind == "cosine":
            return self.final_lr + (self.lr - self.final_lr) * (1 + math.cos(math.pi * t)) / 2
        return self.final_lr + (self.lr - self.final_lr) * (1 - t) ** self.power

    def describe(self):
        warm = f", warm-up {self.warmup}" if self.warmup else ""
        if self.kind == "step":
            return (f"step lr {self.lr:g} x{self.factor:g} at update(s) "
                    f"{','.join(map(str, self.steps)) or 'none'}{warm}")
        extra = f" power {self.power:g}" if self.kind == "poly" else ""
        return f"{self.kind} lr {self.lr:g} -> {self.final_lr:g} over {self.total} updates{extra}{warm}"


def schedule(args, lr, epoch_size, num_epochs, main_phase=True):
    """The Schedule of a phase of num_epochs x epoch_size updates.  The pre-training
    phase of a triplet run (``main_phase=False``) keeps a constant lr."""
    total = epoch_size * num_epochs
    if not main_phase:
        return Schedule("step", lr, total)
    steps = args.lr_steps or [e * epoch_size for e in args.lr_epochs]
    warmup = args.warmup_steps or args.warmup_epochs * epoch_size
    return Schedule(args.lr_schedule, lr, total, tuple(sorted(steps)), args.lr_factor,
                    warmup, args.lr_power, args.final_lr)


def exclude_from_decay(params):
    """wd_mult = 0 for BN gammas/betas and biases; returns how many parameters."""
    names = [n for n in params.keys() if NO_WD.search(n)]
    for name in names:
        params[name].wd_mult = 0.0
    return len(names)


class AdamW(mx.optimizer.Adam):
    """Adam with decoupled weight decay: ``w *= 1 - lr * wd`` then the Adam step without
    decay in the gradient (lr from the schedule, wd times the parameter's wd_mult)."""

    def update(self, index, weight, grad, state):
        lr, wd = self._get_lr(index), self._get_wd(index)
        self._update_count(index)
        t = self._index_update_count[index]
        lr_t = lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = mx.nd.clip(grad, -self.clip_gradient, self.clip_gradient)
        mean, var = state
        mean[:] = self.beta1 * mean + (1 - self.beta1) * grad
        var[:] = self.beta2 * var + (1 - self.beta2) * mx.nd.square(grad)
        weight[:] = weight * (1 - lr * wd) - lr_t * mean / (mx.nd.sqrt(var) + self.epsilon)


if "adamw" not in mx.optimizer.Optimizer.opt_registry:
    mx.optimizer.Optimizer.register(AdamW)


def trainer(params, args, lr, kvstore):
    """A gluon.Trainer with --optimizer, --wd, --mom; the caller sets the lr per update.
    Under dist_sync the workers update locally (the servers only sum gradients), so the
    lr they set is the one used; dist_async must update on the servers, whose copy of the
    optimiser keeps the first lr (the schedule is then not applied, and the job says so)."""
    options = {"learning_rate": lr, "wd": args.wd}
    if args.optimizer in ("sgd", "nag"):
        options["momentum"] = args.mom
    local = "dist" in kvstore and "async" not in kvstore
    return mx.gluon.Trainer(params, args.optimizer, options, kvstore=kvstore,
                            update_on_kvstore=False if local else None)
