"""What the project's training jobs share: strict argument parsing, logging for the
orchestrator, the compute context, bfloat16 mixed precision, atomic JSON files and the model
package's folder swap.

It lives in this job's folder so that this job stays uploadable on its own; the face job
loads it through its ``shared.py`` (and the orchestrator ships it next to that job's
train.py). Imports nothing heavy: mxnet only inside ``pick_context`` and ``mixed_precision``.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

INFERENCE_FILES = ("customize_service.py", "config.json")


class ArgError(ValueError):
    """A bad command-line value (one-line message)."""


class ExportError(ValueError):
    """The inference files cannot be found (one-line message)."""


class StrictParser(argparse.ArgumentParser):
    def error(self, message):  # no usage dump + exit inside library code
        raise ArgError(message)


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


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def find_inference_dir(explicit, code_dir, task):
    """Folder holding customize_service.py and config.json (``explicit``, else next to
    train.py, else the repository's inference/<task>), or ExportError."""
    candidates = [explicit] if explicit else [
        code_dir, os.path.join(code_dir, "..", "..", "inference", task)]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in INFERENCE_FILES):
            return os.path.abspath(folder)
    where = explicit or " or ".join(os.path.abspath(c) for c in candidates)
    raise ExportError(f"customize_service.py and config.json not found in {where}; copy "
                      f"them next to train.py, pass --inference_dir, or --export_model=False")


def write_package(train_url, inference_dir, fill):
    """Build train_url/model/ in a temporary folder (``fill(folder)`` writes the model's
    own files, the inference files are added) and rename it into place, replacing an older
    package whole; returns its path."""
    final = os.path.join(train_url, "model")
    tmp = tempfile.mkdtemp(prefix=".model-tmp-", dir=train_url)
    try:
        fill(tmp)
        for name in INFERENCE_FILES:
            shutil.copyfile(os.path.join(inference_dir, name), os.path.join(tmp, name))
        old = None
        if os.path.exists(final):  # keep the old package until the new one is in place
            old = final + f".old-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


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
    doc = json.loads(build_symbol().tojson())
    for node in doc["nodes"]:  # weights reach the graph only through amp_cast: say they are float32
        if node["op"] == "null" and node["name"] not in inputs:
            node.setdefault("attrs", {})["__dtype__"] = "0"
    log.info("training in bfloat16 (MXNet AMP, float32 master weights)")
    return mx.sym.load_json(json.dumps(doc)), "bfloat16"
