"""ModelArts-style MXNet training job: a ResNet image classifier on RecordIO data.

Run (ModelArts passes the same arguments)::

    python train.py --data_url=DATA_DIR --train_url=OUT_DIR --num_gpus=0 \
        --num_epochs=12 --batch_size=32 --lr=0.1 --lr_step=8,11 --num_layers=20 \
        --image_shape=3,64,64 --disp_batches=5

Inputs: see rec_data.py (``train.rec/.idx``, optional ``val.rec/.idx``, ``labels.txt``,
``dataset.json``).  All arguments: ``train_args.py`` (``--help``).  data_url and train_url
are local folders or ``obs://`` / ``s3://`` URLs (copied through moxing, jobs/common/workspace.py).

Outputs in ``train_url`` (only the kvstore rank-0 worker writes them):

* ``<prefix>-symbol.json`` and ``<prefix>-%04d.params`` after every epoch (prefix defaults
  to ``resnet-<num_layers>``; file N holds the weights after N completed epochs);
* ``metrics.json`` after every epoch (train_metrics.py);
* ``model/`` with ``--export_model`` (model_export.py): the ModelArts model package.

Log (stdout, via logging, one message per line, no prefix)::

    Start training: num_epochs=12 epoch_size=14 batch_size=32 num_examples=420   <- first line
    Epoch[0] Batch [0-5]\tSpeed: 512.30 samples/sec\taccuracy=0.431250
    Epoch[0] Train-accuracy=...   Epoch[0] Time cost=...   Saved checkpoint to "..."
    Epoch[0] Validation-accuracy=...  -cross-entropy=...  -top_k_accuracy_5=...

epoch_size = ceil(num_examples / workers / batch_size); with ``--kv_store=dist_sync`` it
comes from the smallest worker's shard (rec_data.sync_epoch_size) and every worker runs
exactly that many batches per epoch.  Warnings go to stderr.

A restarted job continues from the newest readable checkpoint in train_url (``--resume=auto``,
the default; ``--resume=no`` starts fresh), or from ``--load_epoch=N`` (N = completed
epochs, i.e. ``<prefix>-000N.params``).  Epoch numbering, the lr schedule and metrics.json
continue; momentum restarts at zero.  ``--pretrained=PREFIX --pretrained_epoch=N``
fine-tunes from another checkpoint (every parameter except ``fc1``).

Exit codes: 0 done; 2 bad arguments or data (one line on stderr, no traceback).
"""
import logging
import math
import os
import re
import sys
import time

CODE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, CODE_DIR)  # sibling modules, also when started from another folder
try:
    import jobs.common  # noqa: F401,E402  (inside this folder on ModelArts, see jobs/README.md)
except ImportError:
    sys.exit(print("train.py: error: package jobs.common not found: copy jobs/__init__.py and jobs/common/ into "
                   "this folder, or install the project (pip install -e .)", file=sys.stderr) or 2)
# MXNet's default OpenMP pool is half the cores (a hyper-threading guess): use them all.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import model_export  # noqa: E402
import rec_data  # noqa: E402
import resnet  # noqa: E402
import train_args  # noqa: E402
import train_metrics  # noqa: E402
from jobs.common.runtime import JobError, mixed_precision, pick_context, run_job  # noqa: E402

log = logging.getLogger("train")


def checkpoints(train_url, prefix):
    """Epochs N with <prefix>-000N.params (and <prefix>-symbol.json) in train_url, newest first."""
    if not os.path.isfile(os.path.join(train_url, prefix + "-symbol.json")):
        return []
    pattern = re.compile(re.escape(prefix) + r"-(\d{4})\.params$")
    matches = [pattern.match(f) for f in os.listdir(train_url)]
    return sorted((int(m.group(1)) for m in matches if m and int(m.group(1)) > 0), reverse=True)


def load_params(prefix, epoch, what):
    """(arg_params, aux_params) of checkpoint prefix/epoch, or JobError."""
    path = "%s-%04d.params" % (prefix, epoch)
    if not os.path.isfile(path):
        raise JobError(f"{what}: checkpoint {path} not found; pass an epoch that exists")
    try:
        _, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
    except mx.base.MXNetError as e:
        raise JobError(f"{what}: cannot read {path} ({str(e).splitlines()[0]})") from None
    return arg_params, aux_params


def initial_params(args):
    """(begin_epoch, arg_params, aux_params) from --load_epoch/--resume/--pretrained."""
    prefix = os.path.join(args.train_url, args.model_prefix)
    if args.load_epoch:
        return (args.load_epoch,) + load_params(prefix, args.load_epoch, "--load_epoch")
    if args.load_epoch is None and args.resume == "auto":
        # A job killed while saving leaves a truncated newest file: fall back to the one before.
        for epoch in checkpoints(args.train_url, args.model_prefix):
            try:
                return (epoch,) + load_params(prefix, epoch, "--resume=auto")
            except JobError as e:
                log.warning("%s; trying the previous checkpoint", e)
    if args.pretrained:
        arg_params, aux_params = load_params(args.pretrained, args.pretrained_epoch,
                                             "--pretrained")
        # Fine-tuning: the classifier of the other task does not fit this one.
        arg_params = {k: v for k, v in arg_params.items() if not k.startswith("fc1")}
        return 0, arg_params, aux_params
    return 0, None, None


def check_params(symbol, image_shape, arg_params, aux_params, exact, what):
    """JobError unless the loaded parameters fit `symbol` (all of them when `exact`)."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1,) + tuple(image_shape))
    wanted = dict(zip(symbol.list_arguments(), arg_shapes))
    wanted.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    loaded = dict(arg_params, **aux_params)
    missing = [k for k in wanted if k not in loaded and k not in ("data", "softmax_label")]
    extra = [k for k in loaded if k not in wanted]
    wrong = [k for k in loaded if k in wanted and tuple(loaded[k].shape) != tuple(wanted[k])]
    if wrong or (exact and (missing or extra)):
        example = (wrong or missing or extra)[0]
        raise JobError(f"{what} does not fit this network ({len(wrong)} shape mismatches, "
                       f"{len(missing)} missing, {len(extra)} unknown parameters, e.g. "
                       f"{example}): use the same --num_layers, --image_shape and classes")
    if missing or extra:
        log.info("%s: %d parameters initialised fresh, %d ignored", what, len(missing),
                 len(extra))


def optimizer_params(args, epoch_size, begin_epoch):
    """SGD settings; lr already reduced for steps passed before begin_epoch."""
    passed = [s for s in args.lr_step if s <= begin_epoch]
    lr = args.lr * args.lr_factor ** len(passed)
    params = {"learning_rate": lr, "momentum": args.mom, "wd": args.wd}
    steps = sorted({epoch_size * (s - begin_epoch) for s in args.lr_step if s > begin_epoch})
    if steps:
        params["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
            step=steps, factor=args.lr_factor, base_lr=lr)
    return params


def main(argv=None):
    return run_job(sys.argv[1:] if argv is None else argv, parse, train,
                   errors=(train_args.ArgError, rec_data.DataError, model_export.ExportError))


def parse(argv):
    """The arguments (train_args.py), with a network depth resnet.py can build."""
    args, unknown = train_args.parse(argv)
    if not resnet.supported(args.num_layers):
        raise JobError(f"--num_layers {args.num_layers} is not supported: use 18, 34, 50, 101, "
                       f"152 or a CIFAR-style depth with (n-2)%6==0 such as 20")
    return args, unknown


def train(args, sync_out):
    """The job proper, on local folders; sync_out() publishes train_url after each epoch."""

    # 1. Data: classes and sizes from the data folder unless given.
    data = rec_data.describe(args.data_url, args.train_file, args.val_file)
    num_classes = args.num_classes or data["num_classes"]
    if not num_classes:
        raise JobError(f"number of classes unknown: no labels.txt/dataset.json in "
                       f"{args.data_url}; pass --num_classes")
    if data["labels"] and len(data["labels"]) != num_classes:
        raise JobError(f"--num_classes={num_classes} but labels.txt in {args.data_url} lists "
                       f"{len(data['labels'])} classes; drop --num_classes or fix labels.txt")
    labels = data["labels"] or [str(i) for i in range(num_classes)]
    num_examples = args.num_examples or data["num_train"]
    inference_dir = None
    if args.export_model:  # fail now, not after an hour of training
        inference_dir = model_export.find_inference_dir(args.inference_dir, CODE_DIR)
    os.makedirs(args.train_url, exist_ok=True)

    # 2. Network, where training starts, how long an epoch is.
    kv = mx.kvstore.create(args.kv_store)
    begin_epoch, arg_params, aux_params = initial_params(args)
    symbol = resnet.get_symbol(num_classes, args.num_layers, args.image_shape)
    if arg_params is not None:
        check_params(symbol, args.image_shape, arg_params, aux_params, exact=begin_epoch > 0,
                     what="--load_epoch checkpoint" if begin_epoch else "--pretrained model")
    dist_sync = "dist" in kv.type and "_sync" in kv.type
    if dist_sync:
        epoch_size, shards = rec_data.sync_epoch_size(data, args.batch_size, kv.num_workers)
    else:
        epoch_size = max(1, math.ceil(num_examples / kv.num_workers / args.batch_size))
    log.info("Start training: num_epochs=%d epoch_size=%d batch_size=%d num_examples=%d",
             args.num_epochs, epoch_size, args.batch_size, num_examples)
    if dist_sync:
        log.info("kvstore %s: worker rank %d of %d; training shards of %s records, %d batches "
                 "per worker and epoch", kv.type, kv.rank, kv.num_workers, shards, epoch_size)
    if begin_epoch:
        log.info("Resuming from %s-%04d.params: epochs %d..%d", args.model_prefix,
                 begin_epoch, begin_epoch, args.num_epochs - 1)
    log.info("Network resnet-%d, image_shape %s, %d classes, kvstore %s, OMP threads %s",
             args.num_layers, ",".join(map(str, args.image_shape)), num_classes, kv.type,
             os.environ.get("OMP_NUM_THREADS"))

    # 3. Iterators, module, callbacks.
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    train_iter, val_iter = rec_data.make_iters(data, args, kv)
    if dist_sync:
        # Every worker must run the same number of batches or dist_sync hangs at epoch end.
        train_iter = mx.io.ResizeIter(train_iter, epoch_size)
    train_symbol, _ = mixed_precision(
        args.dtype, lambda: resnet.get_symbol(num_classes, args.num_layers, args.image_shape), ("data", "softmax_label"), log)
    mod = mx.mod.Module(train_symbol, context=pick_context(args.num_gpus, log))
    writer = kv.rank == 0
    prefix_path = os.path.join(args.train_url, args.model_prefix)
    metrics_path = os.path.join(args.train_url, "metrics.json")
    recorder = train_metrics.MetricsRecorder(
        metrics_path, num_classes, args.image_shape, epoch_size * args.batch_size,
        has_val=val_iter is not None,
        lr_at=lambda e: args.lr * args.lr_factor ** sum(1 for s in args.lr_step if s <= e),
        previous=train_metrics.load_epochs(metrics_path, begin_epoch) if begin_epoch else (),
        after_write=sync_out)
    batch_cbs = [mx.callback.Speedometer(args.batch_size, args.disp_batches)]
    epoch_cbs = []
    if writer:
        batch_cbs.append(recorder.batch_end)
        save = mx.callback.do_checkpoint(prefix_path, period=args.save_frequency)
        epoch_cbs = [lambda epoch, _trained, arg, aux: save(epoch, symbol, arg, aux),  # the float32 symbol
                     recorder.epoch_end]
    val_metric = mx.metric.CompositeEvalMetric([
        mx.metric.Accuracy(), mx.metric.CrossEntropy(),
        mx.metric.TopKAccuracy(top_k=min(5, num_classes))])

    # 4. Train.
    started = time.time()
    if begin_epoch < args.num_epochs:
        mod.fit(train_iter, eval_data=val_iter, eval_metric="acc",
                validation_metric=val_metric, optimizer="sgd",
                # A KVStore object makes Module.fit update through it even on one device
                # (~17% slower here); by name, a single-device 'local' store updates in place.
                kvstore=kv if "dist" in kv.type else kv.type,
                optimizer_params=optimizer_params(args, epoch_size, begin_epoch),
                initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
                arg_params=arg_params, aux_params=aux_params, allow_missing=True,
                begin_epoch=begin_epoch, num_epoch=args.num_epochs,
                batch_end_callback=batch_cbs, epoch_end_callback=epoch_cbs,
                eval_end_callback=recorder.eval_end if writer else None)
        arg_params, aux_params = mod.get_params()
        # The last batch's kvstore push/pull run asynchronously. Python's exit shuts MXNet's
        # engine down before the kvstore is freed, so a dist worker leaving now could drop
        # its last gradients and leave the other workers waiting for them forever.
        mx.nd.waitall()
    else:
        log.info("Checkpoint epoch %d >= num_epochs %d: nothing to train", begin_epoch,
                 args.num_epochs)
    log.info("Training finished: %d epochs in %.1f s", max(0, args.num_epochs - begin_epoch),
             time.time() - started)

    # 5. Model package for ModelArts model import.
    if args.export_model and writer:
        resize, interpolation, _ = rec_data.preprocessing(data, args.image_shape)
        preprocess = {"image_shape": list(args.image_shape), "resize": resize,
                      "resize_interpolation": interpolation, "crop": "center",
                      "color": "RGB", "layout": "NCHW", "scale": 1.0, "mean": [0, 0, 0],
                      "data_name": "data"}
        path = model_export.export(args.train_url, args.model_prefix, symbol, arg_params,
                                   aux_params, labels, preprocess, inference_dir)
        log.info("Exported model package to %s", path)
    if writer:
        sync_out()
    return 0


if __name__ == "__main__":
    sys.exit(main())
