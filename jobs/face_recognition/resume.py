"""Continuing a killed face job from its last epoch checkpoint (``--resume``, default auto).

After epoch N (N = completed epochs) the job writes ``<prefix>-%04d.params`` (the
embedding network, model_export.py), and beside it ``<prefix>-fc7-%04d.params`` (the
margin head, classification phases only) and ``<prefix>-%04d.states`` (the optimiser's
momentum / Adam moments, ``Trainer.save_states``), each atomically.

``begin_epoch(args, log)``: ``--load_epoch=N``, else with ``--resume=auto`` the newest N
whose network file loads (a kill while saving leaves a truncated newest file; the one
before is taken), else 0.  ``restore(...)`` puts head and optimiser state back when they
belong to the same phase as epoch N; otherwise they start fresh (a new phase starts a
new head and optimiser anyway).  Epoch numbering, the lr schedule (a function of the
global update count), metrics.json and the best checkpoints continue.
"""
import os
import re

import model_export


class ResumeError(ValueError):
    """--load_epoch names a checkpoint that is missing or unreadable (one-line message)."""


def saved_epochs(train_url, prefix):
    """Epochs N with <prefix>-000N.params in train_url, newest first."""
    pattern = re.compile(re.escape(prefix) + r"-(\d{4})\.params$")
    found = [pattern.match(f) for f in os.listdir(train_url)]
    return sorted((int(m.group(1)) for m in found if m and int(m.group(1)) > 0), reverse=True)


def begin_epoch(args, log):
    """(N, network params {name: NDArray} or None)."""
    prefix = os.path.join(args.train_url, args.model_prefix)
    if args.load_epoch:
        try:
            return args.load_epoch, model_export.load_params(prefix, args.load_epoch)
        except ValueError as e:
            raise ResumeError(f"--load_epoch: {e}") from None
    if args.resume == "auto" and os.path.isdir(args.train_url):
        for epoch in saved_epochs(args.train_url, args.model_prefix):
            try:
                return epoch, model_export.load_params(prefix, epoch)
            except ValueError as e:
                log.warning("--resume: %s; trying the previous checkpoint", e)
    return 0, None


def save(prefix, epoch, head, trainer):
    """Head and optimiser state after `epoch` completed epochs (atomic files)."""
    import mxnet as mx
    if head is not None:
        params = {"arg:" + n: p.data(p.list_ctx()[0]).copyto(mx.cpu())
                  for n, p in head.collect_params().items()}
        _atomic("%s-fc7-%04d.params" % (prefix, epoch), lambda tmp: mx.nd.save(tmp, params))
    _atomic("%s-%04d.states" % (prefix, epoch), trainer.save_states)


def restore(prefix, epoch, head, trainer, log):
    """Load what save() wrote for `epoch` into head and trainer, where present."""
    if head is not None:
        try:
            loaded = model_export.load_params(prefix + "-fc7", epoch)
            for name, p in head.collect_params().items():
                p.set_data(loaded[name])
        except (ValueError, KeyError):
            log.warning("--resume: no usable %s-fc7-%04d.params: the margin head starts fresh",
                        os.path.basename(prefix), epoch)
    states = "%s-%04d.states" % (prefix, epoch)
    if os.path.isfile(states):
        try:
            trainer.load_states(states)
            return
        except Exception as e:  # a truncated file: MXNetError, pickle/EOF errors
            log.warning("--resume: %s unreadable (%s)", states, type(e).__name__)
    log.warning("--resume: optimiser state starts fresh (momentum / moments at zero)")


def _atomic(path, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)
