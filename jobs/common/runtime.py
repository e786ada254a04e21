"""The frame of every training job: log for the orchestrator (INFO lines on stdout, which
it parses), arguments, remote data_url/train_url through a workspace, one-line errors with
exit code 2, the compute context and bfloat16 mixed precision. mxnet is imported only inside
``pick_context`` and ``mixed_precision``."""
import json
import logging
import sys

from jobs.common.workspace import StorageError, Workspace

log = logging.getLogger("train")


class JobError(ValueError):
    """A bad job setup (one-line message, exit code 2)."""


def run_job(argv, parse, train, errors):
    """A job's ``main``: ``parse(argv)`` -> (args, unknown arguments), then ``train(args,
    sync_out)`` on local copies of ``args.data_url`` / ``args.train_url`` (``sync_out()``
    publishes train_url). ``errors`` (and JobError, StorageError) are the user's mistakes: one
    line on stderr, exit code 2, no traceback. Returns the exit code."""
    setup_logging()
    try:
        args, unknown = parse(argv)
        if unknown:
            log.warning("ignoring unknown arguments: %s", " ".join(unknown))
        workspace = Workspace(args.data_url, args.train_url)  # obs:// -> local copies
        try:
            args.data_url, args.train_url = workspace.data_dir, workspace.out_dir
            return train(args, workspace.sync_out)
        finally:
            workspace.close()
    except (*errors, JobError, StorageError) as e:
        print(f"train.py: error: {e}", file=sys.stderr, flush=True)
        return 2


def setup_logging():
    """INFO to stdout (the orchestrator parses it), WARNING and above to stderr."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)


def pick_context(num_gpus, log):
    """GPU contexts when asked for and present, else the CPU (with a warning)."""
    import mxnet as mx
    if num_gpus <= 0:
        return [mx.cpu()]
    try:
        available = mx.context.num_gpus()
    except mx.base.MXNetError:
        available = 0
    if available == 0:
        log.warning("num_gpus=%d requested but no GPU is available: training on the CPU", num_gpus)
        return [mx.cpu()]
    return [mx.gpu(i) for i in range(min(num_gpus, available))]


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """True when the CPU lists bfloat16 instructions oneDNN uses (Linux ``flags``)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            flags = {f for line in fh if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def mixed_precision(dtype, build_symbol, inputs, log):
    """``(symbol to train, dtype used)``. ``float32``: ``build_symbol()``. ``bfloat16`` on a
    CPU with bf16 instructions: the symbol rebuilt under MXNet AMP (``amp.init``: casts to
    bf16 around the ops AMP lists as safe, float32 master weights, no loss scaling needed
    for bf16); checkpoints should still save the float32 symbol, which takes the same
    parameters. Without bf16 instructions: float32, with a warning."""
    if dtype != "bfloat16":
        return build_symbol(), "float32"
    if not cpu_has_bf16():
        log.warning("--dtype=bfloat16: this CPU has no bfloat16 instructions (%s in /proc/cpuinfo); "
                    "training in float32", "/".join(BF16_FLAGS))
        return build_symbol(), "float32"
    import mxnet as mx
    from mxnet.contrib import amp

    amp.init(target_dtype="bfloat16")
    doc = json.loads(build_symbol().tojson(remove_amp_cast=False))  # by default tojson drops AMP's casts
    for node in doc["nodes"]:  # weights reach the graph only through amp_cast: say they are float32
        if node["op"] == "null" and node["name"] not in inputs:
            node.setdefault("attrs", {})["__dtype__"] = "0"
    casts = sum(1 for node in doc["nodes"] if node["op"] == "amp_cast" and node["attrs"]["dtype"] == "bfloat16")
    if not casts:
        log.warning("--dtype=bfloat16: MXNet AMP found no layer to run in bfloat16; training in float32")
        return build_symbol(), "float32"
    log.info("training in bfloat16 (MXNet AMP, float32 master weights, %d casts to bfloat16)", casts)
    return mx.sym.load_json(json.dumps(doc)), "bfloat16"
