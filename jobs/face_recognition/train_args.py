"""Command-line arguments of the face training job (insightface names, ModelArts style).

ModelArts passes ``--data_url``, ``--train_url``, ``--num_gpus`` and hyperparameters as
``--name=value``; ``--name value`` and dashed spellings (``--per-batch-size``) work too,
and so do the aliases of insightface / the ModelArts notebook (``--data_dir``,
``--num_epoch``, ``--end_epoch``, ``--batch_size``, ``--num_embed``, ``--loss_type``,
``--margin_m``, ``--margin_a``, ``--margin_b``, ``--frequent``).  Unknown arguments are
returned so that the caller can warn and go on.  Invalid values raise ``ArgError`` with
a one-line message.  ``parse`` normalises: ``image_size`` -> (H, W) or None (from
``property``), ``lr_steps`` -> sorted global batch counts, ``mining`` -> canonical name,
``loss`` -> a name of losses.py / ``triplet``, margins -> ``margin_m1..3`` (None = the
loss's default), ``pretrained`` -> (prefix, epoch) or None.
"""

import shared
from losses import CLASSIFICATION_LOSSES
from triplet import strategy_name

LOSS_TYPES = {0: "softmax", 1: "nsoftmax", 2: "cosface", 4: "arcface", 5: "combined",
              12: "triplet"}  # insightface src/train_softmax.py --loss-type numbers
LOSSES = CLASSIFICATION_LOSSES + ("triplet",)


_common = shared.load("job_common")
ArgError, StrictParser, _add, str2bool = (_common.ArgError, _common.StrictParser, _common.add_arg,
                                          _common.str2bool)


def build_parser():
    p = StrictParser(description="Train a face recognition network (insightface style, MXNet Gluon).",
                allow_abbrev=False)
    _add(p, "data_url", "data_dir", required=True,
         help="face .rec folder: train.rec/.idx, property [labels.txt, *.bin pair files]")
    _add(p, "train_url", required=True, help="output: checkpoints, metrics.json, model/")
    _add(p, "num_gpus", type=int, default=0, help="0 = CPU; >0 without a GPU falls back to CPU")
    # network
    _add(p, "network", default="iresnet", help="iresnet (depth: num_layers), r18/r34/r50/r100, "
         "mobilefacenet (y1) or y2")
    _add(p, "num_layers", type=int, default=50, help="IResNet depth 18/34/50/100 for "
         "network=iresnet (r<N> names set it)")
    _add(p, "net_units", default=None, help="IResNet units per stage, e.g. 1,1,1,1 (small nets)")
    _add(p, "net_blocks", default=None, help="MobileFaceNet blocks, e.g. 1,4,6,2")
    _add(p, "width_mult", type=float, default=1.0, help="channel multiplier (small nets)")
    _add(p, "dropout", type=float, default=0.4, help="IResNet head dropout")
    _add(p, "emb_size", "num_embed", type=int, default=None,
         help="embedding size (default 512 IResNet, 128 y1, 256 y2)")
    _add(p, "image_size", default=None, help="H,W (default: from property)")
    _add(p, "num_classes", type=int, default=None, help="default: from property")
    # loss
    _add(p, "loss", default="arcface", help="softmax, nsoftmax, arcface, cosface, combined, triplet")
    _add(p, "loss_type", type=int, default=None, help="insightface number (overrides --loss)")
    _add(p, "margin_s", type=float, default=None, help="scale s (default 64)")
    _add(p, "margin_m1", "margin_a", type=float, default=None, help="multiplicative angular m1")
    _add(p, "margin_m2", type=float, default=None, help="additive angular m2 (ArcFace 0.5)")
    _add(p, "margin_m3", "margin_b", type=float, default=None, help="additive cosine m3 (CosFace 0.35)")
    _add(p, "margin_m", type=float, default=None, help="the loss's main margin: m2 for "
         "arcface, m3 for cosface")
    _add(p, "easy_margin", type=str2bool, default=False)
    _add(p, "triplet_alpha", type=float, default=0.3, help="triplet margin alpha")
    _add(p, "mining", "strategy", default="batch_min_max", help="batch_all, batch_random, "
         "batch_min_min, batch_min_max, batch_hardest")
    _add(p, "images_per_identity", type=int, default=5, help="K of P x K triplet batches")
    _add(p, "triplet_max_factor", type=int, default=10,
         help="batch_all keeps at most factor x batch size triplets")
    _add(p, "pretrained", default=None, help="checkpoint 'prefix,epoch' (or prefix with "
         "--pretrained_epoch) to start from; relative prefixes may be inside data_url")
    _add(p, "pretrained_epoch", type=int, default=None)
    _add(p, "pretrain_epochs", type=int, default=0,
         help="triplet only: first train this many epochs with --pretrain_loss")
    _add(p, "pretrain_loss", default="softmax")
    # optimisation
    _add(p, "per_batch_size", "batch_size", type=int, default=128, help="batch per device")
    _add(p, "num_epochs", "num_epoch", "end_epoch", type=int, default=10)
    _add(p, "epoch_size", type=int, default=None,
         help="batches per epoch (default ceil(images / batch))")
    _add(p, "lr", type=float, default=0.1)
    _add(p, "wd", type=float, default=0.0005)
    _add(p, "mom", type=float, default=0.9)
    _add(p, "lr_steps", default="", help="global batch counts where lr *= lr_factor")
    _add(p, "lr_factor", type=float, default=0.1)
    _add(p, "fc7_wd_mult", type=float, default=1.0)
    _add(p, "fc7_lr_mult", type=float, default=1.0)
    _add(p, "kv_store", default="device")
    _add(p, "rand_mirror", type=str2bool, default=True)
    _add(p, "seed", type=int, default=0)
    # logging, verification, output
    _add(p, "frequent", "disp_batches", type=int, default=20, help="Speedometer period")
    _add(p, "verbose", type=int, default=2000,
         help="verify every N batches (0: only at the end of each epoch)")
    _add(p, "target", "val_targets", default="",
         help="comma list of .bin names in data_url (default: all, lfw first)")
    _add(p, "verify_batch_size", type=int, default=64)
    _add(p, "model_prefix", "prefix", default="model", help="checkpoint file prefix")
    _add(p, "export_model", type=str2bool, default=True, help="write train_url/model/")
    _add(p, "inference_dir", default=None,
         help="folder with customize_service.py + config.json for the export")
    _add(p, "gallery_images", type=int, default=20,
         help="images per identity averaged into model/gallery.npz (0: no gallery)")
    return p


def _ints(text, name, example):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ArgError(f"--{name} must be comma-separated integers like {example}, "
                       f"got {text!r}") from None
    if any(v < 1 for v in values):
        raise ArgError(f"--{name} values must be >= 1, got {text!r}")
    return values


def _checks(args):
    return [
        (args.num_epochs >= 1, f"--num_epochs must be >= 1, got {args.num_epochs}"),
        (args.per_batch_size >= 2, f"--per_batch_size must be >= 2, got {args.per_batch_size}"),
        (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
        (args.frequent >= 1, f"--frequent must be >= 1, got {args.frequent}"),
        (args.verbose >= 0, f"--verbose must be >= 0, got {args.verbose}"),
        (args.num_gpus >= 0, f"--num_gpus must be >= 0, got {args.num_gpus}"),
        (args.width_mult > 0, f"--width_mult must be > 0, got {args.width_mult}"),
        (0 <= args.dropout < 1, f"--dropout must be in [0, 1), got {args.dropout}"),
        (args.emb_size is None or args.emb_size >= 2, f"--emb_size must be >= 2, got {args.emb_size}"),
        (args.num_classes is None or args.num_classes >= 2,
         f"--num_classes must be >= 2, got {args.num_classes}"),
        (args.images_per_identity >= 2,
         f"--images_per_identity must be >= 2, got {args.images_per_identity}"),
        (args.triplet_alpha > 0, f"--triplet_alpha must be > 0, got {args.triplet_alpha}"),
        (args.epoch_size is None or args.epoch_size >= 1,
         f"--epoch_size must be >= 1, got {args.epoch_size}"),
        (args.verify_batch_size >= 1,
         f"--verify_batch_size must be >= 1, got {args.verify_batch_size}"),
        (args.gallery_images >= 0, f"--gallery_images must be >= 0, got {args.gallery_images}"),
        (args.pretrain_epochs >= 0, f"--pretrain_epochs must be >= 0, got {args.pretrain_epochs}"),
    ]


def parse(argv):
    """(args, unknown_args); raises ArgError on bad values."""
    args, unknown = build_parser().parse_known_args(argv)
    for ok, message in _checks(args):
        if not ok:
            raise ArgError(message)
    if args.loss_type is not None:
        if args.loss_type not in LOSS_TYPES:
            raise ArgError(f"--loss_type {args.loss_type} is not supported: use one of "
                           + ", ".join(f"{k} ({v})" for k, v in LOSS_TYPES.items()))
        args.loss = LOSS_TYPES[args.loss_type]
    args.loss = args.loss.lower()
    if args.loss not in LOSSES:
        raise ArgError(f"--loss {args.loss!r} is not supported: use one of {', '.join(LOSSES)}")
    if args.pretrain_loss not in CLASSIFICATION_LOSSES:
        raise ArgError(f"--pretrain_loss must be one of {', '.join(CLASSIFICATION_LOSSES)}")
    if args.pretrain_epochs and args.loss != "triplet":
        raise ArgError("--pretrain_epochs is for --loss triplet only")
    if args.margin_m is not None:
        if args.loss == "cosface" and args.margin_m3 is None:
            args.margin_m3 = args.margin_m
        elif args.margin_m2 is None:
            args.margin_m2 = args.margin_m
    try:
        args.mining = strategy_name(args.mining)
    except ValueError as e:
        raise ArgError(f"--mining: {e}") from None
    if args.loss == "triplet" and args.per_batch_size < 2 * args.images_per_identity:
        raise ArgError(f"--per_batch_size {args.per_batch_size} must hold at least two "
                       f"identities of --images_per_identity {args.images_per_identity}")
    if args.image_size:
        size = _ints(args.image_size, "image_size", "112,112")
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or size[0] % 16 or size[1] % 16:
            raise ArgError(f"--image_size must be H,W with multiples of 16 such as 112,112, "
                           f"got {args.image_size!r}")
        args.image_size = tuple(size)
    args.net_units = tuple(_ints(args.net_units, "net_units", "2,2,2,2")) if args.net_units else None
    args.net_blocks = tuple(_ints(args.net_blocks, "net_blocks", "1,4,6,2")) if args.net_blocks else None
    args.lr_steps = sorted(set(_ints(args.lr_steps, "lr_steps", "100000,160000")))
    if args.pretrained:
        prefix, _, epoch = args.pretrained.partition(",")
        if epoch:
            try:
                args.pretrained_epoch = int(epoch)
            except ValueError:
                raise ArgError(f"--pretrained must be 'prefix,epoch', got {args.pretrained!r}") from None
        if args.pretrained_epoch is None:
            raise ArgError("--pretrained needs an epoch: 'prefix,epoch' or --pretrained_epoch")
        args.pretrained = (prefix, args.pretrained_epoch)
    args.target = [t.strip() for t in args.target.split(",") if t.strip()]
    return args, unknown
