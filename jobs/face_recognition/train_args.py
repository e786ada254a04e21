"""Command-line arguments of the face training job (insightface names, ModelArts style).

Every argument is declared in ``arguments.json`` beside this file (names, the aliases of
insightface / the ModelArts notebook such as ``--data_dir``, ``--num_epoch``,
``--batch_size``, ``--num_embed``, ``--margin_a``; types, defaults, bounds, help); the parser
is built from it, and the orchestrator checks a pipeline's hyperparameters against the same
file. ModelArts passes ``--data_url``, ``--train_url``, ``--num_gpus`` and hyperparameters as
``--name=value``; ``--name value`` and dashed spellings (``--per-batch-size``) work too.
Unknown arguments are returned so that the caller can warn and go on. Invalid values raise
``ArgError`` with a one-line message. ``parse`` normalises: ``image_size`` -> (H, W) or None
(from ``property``), ``lr_steps`` -> sorted global batch counts, ``mining`` -> canonical
name, ``loss`` -> a name of losses.py / ``triplet``, margins -> ``margin_m1..3`` (None = the
loss's default), ``pretrained`` -> (prefix, epoch or None for a package folder) or None, ``val_file``
-> .bin names added to ``target`` and ``val_recs`` (.rec names); a bare ``--eval_only`` /
``--resume`` means true / auto.
"""
import argparse
import os

from jobs.common import arguments as job_args
from jobs.common.arguments import ArgError, StrictParser
from triplet import strategy_name

LOSS_TYPES = {0: "softmax", 1: "nsoftmax", 2: "cosface", 4: "arcface", 5: "combined",
              12: "triplet"}  # insightface src/train_softmax.py --loss-type numbers

DECLARATION = job_args.load(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    return job_args.build_parser(DECLARATION, StrictParser, allow_abbrev=False)


def _ints(text, name, example):
    values = [int(v) for v in str(text).split(",") if v.strip()]   # the declared pattern holds
    if any(v < 1 for v in values):
        raise ArgError(f"--{name} values must be >= 1, got {text!r}")
    return values


BARE = {"--eval_only": "--eval_only=true", "--eval-only": "--eval_only=true",
        "--resume": "--resume=auto"}  # flags users type without a value


def parse(argv):
    """(args, unknown_args); raises ArgError on bad values."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg in BARE and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            argv[i] = BARE[arg]
    args, unknown = build_parser().parse_known_args(argv)
    checked = args
    if args.eval_only:  # nothing is trained: PaddleClas-style --num_epochs 0 --lr 0 are fine
        checked = argparse.Namespace(**dict(vars(args), num_epochs=max(1, args.num_epochs),
                                            lr=args.lr or 0.1))
    problem = job_args.check(DECLARATION, checked)
    if problem:
        raise ArgError(problem)
    if args.eval_only and not args.pretrained:
        raise ArgError("--eval_only needs --pretrained: a checkpoint 'prefix,epoch' or a model "
                       "package folder")
    if args.warmup_steps and args.warmup_epochs:
        raise ArgError("pass --warmup_steps or --warmup_epochs, not both")
    if args.loss_type is not None:
        args.loss = LOSS_TYPES[args.loss_type]
    if args.pretrain_epochs and args.loss != "triplet":
        raise ArgError("--pretrain_epochs is for --loss triplet only")
    if args.margin_m is not None:
        if args.loss == "cosface" and args.margin_m3 is None:
            args.margin_m3 = args.margin_m
        elif args.margin_m2 is None:
            args.margin_m2 = args.margin_m
    args.mining = strategy_name(args.mining)
    if args.loss == "triplet" and args.per_batch_size < 2 * args.images_per_identity:
        raise ArgError(f"--per_batch_size {args.per_batch_size} must hold at least two "
                       f"identities of --images_per_identity {args.images_per_identity}")
    if args.image_size:
        size = _ints(args.image_size, "image_size", "112,112")
        if len(size) == 1:
            size = size * 2
        if size[0] % 16 or size[1] % 16:
            raise ArgError(f"--image_size must be H,W with multiples of 16 such as 112,112, "
                           f"got {args.image_size!r}")
        args.image_size = tuple(size)
    args.net_units = tuple(_ints(args.net_units, "net_units", "2,2,2,2")) if args.net_units else None
    args.net_blocks = tuple(_ints(args.net_blocks, "net_blocks", "1,4,6,2")) if args.net_blocks else None
    args.lr_steps = sorted(set(_ints(args.lr_steps, "lr_steps", "100000,160000")))
    args.lr_epochs = sorted(set(_ints(args.lr_epochs, "lr_epochs", "8,11")))
    if args.lr_steps and args.lr_epochs:
        raise ArgError("pass --lr_steps (updates) or --lr_epochs, not both")
    if args.pretrained:
        prefix, _, epoch = args.pretrained.partition(",")
        if epoch:
            try:
                args.pretrained_epoch = int(epoch)
            except ValueError:
                raise ArgError(f"--pretrained must be 'prefix,epoch' or a model package folder, "
                               f"got {args.pretrained!r}") from None
        # No epoch: a model package folder, checked when it is loaded (model_export.resolve).
        args.pretrained = (prefix, args.pretrained_epoch)
    args.target = _names(args.target) + [n[:-4] for n in _names(args.val_file) if n.endswith(".bin")]
    args.val_recs = [n for n in _names(args.val_file) if not n.endswith(".bin")]
    if any(not n.endswith(".rec") for n in args.val_recs):
        raise ArgError(f"--val_file {args.val_file!r}: give .bin pair files and/or a .rec")
    if args.pretrain_lr is None:
        args.pretrain_lr = args.lr
    return args, unknown


def _names(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]
