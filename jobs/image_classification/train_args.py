"""Command-line arguments of train.py (ModelArts Caltech101 tutorial names and defaults).

Every argument is declared in ``arguments.json`` beside this file (names, types, defaults,
bounds, help); the parser is built from it, and the orchestrator checks a pipeline's
hyperparameters against the same file. ModelArts passes ``--data_url=...``,
``--train_url=...``, ``--num_gpus=N`` and every hyperparameter as ``--name=value``;
``--name value`` and the dashed spelling (``--num-epochs``) work too. Unknown arguments are
returned so the caller can warn and ignore them (the platform adds its own). Invalid values
raise ``ArgError`` with a one-line message.
"""
import os

from jobs.common import arguments as job_args
from jobs.common.arguments import ArgError, StrictParser

DECLARATION = job_args.load(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    return job_args.build_parser(DECLARATION, StrictParser, allow_abbrev=False)


def parse(argv):
    """(args, unknown_args); raises ArgError on bad values."""
    args, unknown = build_parser().parse_known_args(argv)
    problem = job_args.check(DECLARATION, args)
    if problem:
        raise ArgError(problem)
    if "dist" in args.kv_store and os.environ.get("DMLC_ROLE") != "worker":
        raise ArgError(f"--kv_store={args.kv_store} needs a parameter-server job (DMLC_ROLE=worker and the other "
                       f"DMLC_* variables): train with instance_count > 1, or use --kv_store=local")
    shape = tuple(int(v) for v in args.image_shape.split(","))
    if min(shape[1:]) < 8:
        raise ArgError(f"--image_shape must be 3,H,W with H,W >= 8 (RGB), got {args.image_shape!r}")
    args.image_shape = shape
    args.lr_step = sorted(int(v) for v in str(args.lr_step).split(",") if v.strip())
    if args.model_prefix is None:
        args.model_prefix = f"resnet-{args.num_layers}"
    return args, unknown
