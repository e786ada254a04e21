"""The frame of every training job: log for the orchestrator (INFO lines on stdout, which
it parses), arguments, remote data_url/train_url through a workspace, one-line errors with
exit code 2, the compute context and bfloat16 mixed precision. mxnet is imported only inside
the functions that use it."""
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


def bf16_usable(dtype, log, cpuinfo="/proc/cpuinfo"):
    """True for ``--dtype=bfloat16`` on a CPU with bf16 instructions; False for float32, and
    for bfloat16 without them (with a warning: the job trains in float32)."""
    if dtype != "bfloat16":
        return False
    if not cpu_has_bf16(cpuinfo):
        log.warning("--dtype=bfloat16: this CPU has no bfloat16 instructions (%s in /proc/cpuinfo); "
                    "training in float32", "/".join(BF16_FLAGS))
        return False
    return True


def amp_bf16(symbol, data_names):
    """A float32 ``symbol`` converted by MXNet AMP (``amp.convert_symbol``): bfloat16 compute
    where AMP's lists say it is safe (convolutions, fully connected layers), float32 elsewhere
    (losses, normalisation, reshapes), parameters kept float32 (master weights, cast on the way
    in), outputs cast back to float32. Two kinds of operators stay float32 because MXNet
    1.9.1's CPU kernels fail in bf16: PReLU ("Unknown type enum 12") and grouped (depthwise)
    convolutions (oneDNN cannot create their reorder)."""
    from mxnet.contrib.amp import amp

    fp32_ops = amp.list_fp32_ops(amp.bfloat16) + ["LeakyReLU"]
    conditional = [c for c in amp.list_conditional_fp32_ops(amp.bfloat16) if c[0] != "LeakyReLU"]
    grouped = [n["name"] for n in json.loads(symbol.tojson())["nodes"]
               if n["op"] == "Convolution" and int(n.get("attrs", {}).get("num_group", 1)) > 1]
    return amp.convert_symbol(symbol, target_dtype="bfloat16", fp32_ops=fp32_ops, conditional_fp32_ops=conditional,
                              excluded_sym_names=grouped, data_names=list(data_names))


def mixed_precision(dtype, build_symbol, inputs, log):
    """``(symbol to train, dtype used)``: ``build_symbol()``, converted by ``amp_bf16`` for
    ``bfloat16`` on a CPU with bf16 instructions (no loss scaling needed for bf16). Checkpoints
    should still save the float32 symbol, which takes the same parameters. Note that
    ``Symbol.tojson()`` and ``save()`` drop AMP's casts unless told ``remove_amp_cast=False``."""
    symbol = build_symbol()
    if not bf16_usable(dtype, log):
        return symbol, "float32"
    converted = amp_bf16(symbol, inputs)
    if not _bf16_casts(converted, log, "float32 master weights"):
        return symbol, "float32"
    return converted, "bfloat16"


def _bf16_casts(converted, log, what):
    """How many casts to bfloat16 the converted graph holds, logged; 0 (a graph with nothing
    AMP runs in bf16) is a warning: the job then trains the float32 one."""
    nodes = json.loads(converted.tojson(remove_amp_cast=False))["nodes"]   # tojson() drops the casts by default
    casts = sum(1 for n in nodes if n["op"] == "amp_cast" and n["attrs"]["dtype"] == "bfloat16")
    if casts:
        log.info("training in bfloat16 (MXNet AMP, %s, %d casts to bfloat16)", what, casts)
    else:
        log.warning("--dtype=bfloat16: MXNet AMP found no layer to run in bfloat16; training in float32")
    return casts


def mixed_precision_block(dtype, net, log, cpuinfo="/proc/cpuinfo"):
    """``(block to train, dtype used)`` for a Gluon HybridBlock ``net`` with one input
    ``data``: ``net`` itself, or for ``bfloat16`` (on a CPU with bf16 instructions) a hybridized
    SymbolBlock of ``net``'s graph converted by ``amp_bf16`` that shares ``net``'s float32
    parameters: the trainer updates them, ``net`` verifies, checkpoints and exports float32,
    and the block's float32 output keeps whatever loss follows it in float32."""
    if not bf16_usable(dtype, log, cpuinfo):
        return net, "float32"
    import warnings

    import mxnet as mx
    data = mx.sym.var("data")
    converted = amp_bf16(net(data), ["data"])
    if not _bf16_casts(converted, log, "float32 master weights and loss"):
        return net, "float32"
    with warnings.catch_warnings():  # "Cannot decide type for the following arguments": data, given later
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(converted, data, params=net.collect_params())
    block.hybridize(static_alloc=True)
    return block, "bfloat16"
