"""Command-line arguments of train.py (ModelArts Caltech101 tutorial names and defaults).

ModelArts passes ``--data_url=...``, ``--train_url=...``, ``--num_gpus=N`` and every
hyperparameter as ``--name=value``; ``--name value`` and the dashed spelling
(``--num-epochs``) work too.  Unknown arguments are returned so the caller can warn and
ignore them (the platform adds its own).  Booleans accept true/false/1/0/yes/no.
Invalid values raise ``ArgError`` with a one-line message.
"""
import os


from job_common import ArgError, StrictParser, add_arg as _add, str2bool  # noqa: F401 (ArgError: API)


def build_parser():
    p = StrictParser(description="Train a ResNet image classifier on RecordIO data (MXNet Module).",
                allow_abbrev=False)
    _add(p, "data_url", required=True, help="folder with train.rec/.idx [val.rec/.idx, "
         "labels.txt, dataset.json]; *_train.rec / *_val.rec names work too")
    _add(p, "train_url", required=True, help="output folder: checkpoints, metrics.json, model/")
    _add(p, "num_gpus", type=int, default=0, help="0 = CPU; >0 without a GPU falls back to CPU")
    _add(p, "num_epochs", type=int, default=30)
    _add(p, "batch_size", type=int, default=128)
    _add(p, "lr", type=float, default=0.1)
    _add(p, "lr_step", default="16,24,27", help="epochs where lr *= lr_factor, comma list")
    _add(p, "lr_factor", type=float, default=0.1)
    _add(p, "mom", type=float, default=0.9)
    _add(p, "wd", type=float, default=0.0001)
    _add(p, "num_layers", type=int, default=34,
         help="18/34/50/101/152 (ImageNet style) or (n-2)%%6==0 e.g. 20 (CIFAR style)")
    _add(p, "image_shape", default="3,224,224", help="C,H,W fed to the network")
    _add(p, "num_classes", type=int, default=None, help="default: from labels.txt/dataset.json")
    _add(p, "num_examples", type=int, default=None, help="default: from dataset.json/train.idx")
    _add(p, "disp_batches", type=int, default=20, help="Speedometer period (batches)")
    _add(p, "kv_store", default="local", help="local, device, or dist_sync/dist_async in a "
         "parameter-server job (DMLC_ROLE=worker etc. set, e.g. by instance_count > 1)")
    _add(p, "rand_crop", type=str2bool, default=True)
    _add(p, "rand_mirror", type=str2bool, default=True)
    _add(p, "export_model", type=str2bool, default=True, help="write train_url/model/")
    _add(p, "inference_dir", default=None,
         help="folder with customize_service.py + config.json for the export")
    _add(p, "model_prefix", default=None, help="checkpoint prefix (default resnet-<num_layers>)")
    _add(p, "load_epoch", type=int, default=None,
         help="resume from train_url/<prefix>-<load_epoch>.params")
    _add(p, "resume", default="auto", choices=("auto", "no"),
         help="'auto' (default): continue from the newest checkpoint in train_url, if any, as a "
              "restarted ModelArts job does; 'no': always start fresh")
    _add(p, "pretrained", default=None, help="checkpoint prefix to fine-tune from (fc1 dropped)")
    _add(p, "pretrained_epoch", type=int, default=0)
    _add(p, "seed", type=int, default=0)
    _add(p, "data_nthreads", type=int, default=0, help="decode threads (default: all CPUs)")
    return p


def parse(argv):
    """(args, unknown_args); raises ArgError on bad values."""
    args, unknown = build_parser().parse_known_args(argv)
    checks = [
        (args.num_epochs >= 1, f"--num_epochs must be >= 1, got {args.num_epochs}"),
        (args.batch_size >= 1, f"--batch_size must be >= 1, got {args.batch_size}"),
        (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
        (args.disp_batches >= 1, f"--disp_batches must be >= 1, got {args.disp_batches}"),
        (args.num_gpus >= 0, f"--num_gpus must be >= 0, got {args.num_gpus}"),
        (args.resume in (None, "", "auto", "none"), f"--resume must be 'auto', got {args.resume!r}"),
        (args.num_classes is None or args.num_classes >= 2,
         f"--num_classes must be >= 2, got {args.num_classes}"),
        (args.load_epoch is None or args.load_epoch >= 0,
         f"--load_epoch must be >= 0, got {args.load_epoch}"),
        ("dist" not in args.kv_store or os.environ.get("DMLC_ROLE") == "worker",
         f"--kv_store={args.kv_store} needs a parameter-server job (DMLC_ROLE=worker and the other "
         f"DMLC_* variables): train with instance_count > 1, or use --kv_store=local"),
    ]
    for ok, message in checks:
        if not ok:
            raise ArgError(message)
    try:
        shape = tuple(int(v) for v in args.image_shape.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or shape[0] != 3 or min(shape[1:]) < 8:
        raise ArgError(f"--image_shape must be 3,H,W with H,W >= 8 (RGB), got {args.image_shape!r}")
    args.image_shape = shape
    try:
        args.lr_step = sorted(int(v) for v in str(args.lr_step).split(",") if v.strip())
    except ValueError:
        raise ArgError(f"--lr_step must be comma-separated epochs like 16,24,27, "
                       f"got {args.lr_step!r}") from None
    if args.model_prefix is None:
        args.model_prefix = f"resnet-{args.num_layers}"
    return args, unknown
