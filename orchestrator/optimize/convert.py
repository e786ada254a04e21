"""Convert a model package's network once, and measure how far it is from fp32.

    python -m orchestrator.optimize.convert MODEL_DIR --mode {fused,int8,bf16}
        [--calib REC_OR_FOLDER] [--calib-mode naive|entropy] [--calib-count N]
        [--holdout LST --images-root DIR] [--holdout-limit N] [--task classification|face]
        [--min-top1 0.99] [--max-verification-drop 0.5] [--report FILE]

Writes ``optimized/<mode>/`` (the converted ``*-symbol.json`` / ``*.params`` under the
original names) and ``optimize.json`` into MODEL_DIR (see ``mms.optimized``): the package's
own ``customize_service.py`` then serves the converted network unchanged. Both the fp32 and
the converted network run through that service's ``_preprocess`` / ``_inference`` on the
held-out images (and calibration uses ``_preprocess`` of a sample of the training records),
so what is compared is what the service answers:

* classification: top-1 agreement (and each network's accuracy against the labels);
* face: max abs difference of the normalised embeddings and the accuracy of same/different
  decisions at the service's threshold over held-out pairs (``agreement.verification_accuracy``).

Modes: ``fused`` = oneDNN subgraph fusion stored in the symbol (``get_backend_symbol('MKLDNN')``);
``int8`` = oneDNN quantisation (``quantize_model_mkldnn``, smart mode, calibrated ``naive``
(min/max) or ``entropy`` (KL)); ``bf16`` = AMP conversion to bfloat16, only on a CPU with
``avx512_bf16`` or ``amx_bf16`` (else fp32 is kept, with a note; exit 0).

Exit codes: 0 converted (or kept fp32 with a note), 2 bad arguments or a package without a
network, 3 agreement below the thresholds (nothing converted is left behind). The report
(JSON) is printed last on stdout and written to ``--report``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

from orchestrator.files import write_json
from orchestrator.optimize import agreement, cpu_supports_bf16

MODES = ("fused", "int8", "bf16")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class ConvertError(Exception):
    def __init__(self, message: str, code: int = 2, measured: dict | None = None):
        super().__init__(message)
        self.code, self.measured = code, measured or {}


def _request(raw: bytes) -> dict:
    return {"images": {"image.jpg": io.BytesIO(raw)}}


def calibration_images(source: str, count: int) -> list[bytes]:
    """Encoded images: the first ``count`` non-empty records of a ``.rec``, or files of a folder."""
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTS))[:count]
        out = []
        for name in names:
            with open(os.path.join(source, name), "rb") as fh:
                out.append(fh.read())
        return out
    import mxnet as mx

    out, reader = [], mx.recordio.MXRecordIO(source, "r")
    try:
        while len(out) < count:
            record = reader.read()
            if record is None:
                break
            _, raw = mx.recordio.unpack(record)
            if raw:  # insightface .rec files start with an index record without an image
                out.append(raw)
    finally:
        reader.close()
    return out


def holdout_images(lst: str, root: str, limit: int) -> list[tuple[str, str]]:
    """``[(path, label)]`` of an im2rec ``.lst`` (idx, label, relative path)."""
    out = []
    with open(lst, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                out.append((os.path.join(root, parts[-1]), parts[1]))
    return out[:limit]


def _network(model_dir: str):
    import mxnet as mx
    from mms.manifest import find_model_files

    symbol_file, params_file = find_model_files(model_dir)
    if not symbol_file or not params_file:
        raise ConvertError(f"{model_dir} has no <prefix>-symbol.json with <prefix>-NNNN.params to convert")
    symbol = mx.sym.load(os.path.join(model_dir, symbol_file))
    arg, aux = {}, {}
    for key, value in mx.nd.load(os.path.join(model_dir, params_file)).items():
        kind, _, name = key.partition(":")
        (arg if kind == "arg" else aux)[name] = value
    return symbol_file, params_file, symbol, arg, aux


def convert(mode: str, symbol, arg, aux, calib, calib_mode: str):
    """``(symbol, arg, aux)`` converted to ``mode``."""
    import mxnet as mx

    if mode == "fused":
        return symbol.get_backend_symbol("MKLDNN"), arg, aux
    if mode == "bf16":
        from mxnet.contrib.amp import amp

        # MXNet 1.9.1's CPU kernels fail in bf16 on PReLU ("Unknown type enum 12") and grouped
        # (depthwise) convolutions: they stay float32, as in the jobs' bf16 training
        fp32_ops = amp.list_fp32_ops(amp.bfloat16) + ["LeakyReLU"]
        conditional = [c for c in amp.list_conditional_fp32_ops(amp.bfloat16) if c[0] != "LeakyReLU"]
        grouped = [n["name"] for n in json.loads(symbol.tojson())["nodes"]
                   if n["op"] == "Convolution" and int(n.get("attrs", {}).get("num_group", 1)) > 1]
        return amp.convert_model(symbol, arg, aux, target_dtype="bfloat16", fp32_ops=fp32_ops,
                                 conditional_fp32_ops=conditional, excluded_sym_names=grouped)
    from mxnet.contrib.quantization import quantize_model_mkldnn

    free = [a for a in symbol.list_arguments() if a not in arg]
    labels = tuple(a for a in free if a.endswith("label"))
    data = [a for a in free if a not in labels]
    if len(data) != 1:
        raise ConvertError(f"int8 needs a network with one data input, this one has {data}")
    batch = max(1, min(8, len(calib)))
    calib = calib[: len(calib) - len(calib) % batch]
    it = mx.io.NDArrayIter(data={data[0]: mx.nd.array(calib)}, batch_size=batch,  # a loss head needs its label
                           label={name: mx.nd.zeros(len(calib)) for name in labels} or None)
    qsym, qarg, qaux = quantize_model_mkldnn(
        sym=symbol, arg_params=arg, aux_params=aux, data_names=tuple(data), label_names=labels, ctx=mx.cpu(),
        calib_mode=calib_mode, calib_data=it, num_calib_examples=len(calib), quantized_dtype="auto",
        quantize_mode="smart")
    return qsym, qarg, qaux


def _save(model_dir: str, mode: str, symbol_file: str, params_file: str, symbol, arg, aux) -> dict:
    import mxnet as mx

    folder = os.path.join(model_dir, "optimized", mode)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    symbol.save(os.path.join(folder, symbol_file), remove_amp_cast=False)  # else bf16's casts are dropped
    mx.nd.save(os.path.join(folder, params_file),
               {**{"arg:" + k: v for k, v in arg.items()}, **{"aux:" + k: v for k, v in aux.items()}})
    return {symbol_file: f"optimized/{mode}/{symbol_file}", params_file: f"optimized/{mode}/{params_file}"}


def _outputs(service, images: list[bytes]):
    import numpy as np

    rows, seconds = [], 0.0
    for raw in images:
        x = service._preprocess(_request(raw))
        start = time.perf_counter()
        y = service._inference(x)
        seconds += time.perf_counter() - start
        y = y[0] if isinstance(y, (list, tuple)) else y
        y = y.asnumpy() if hasattr(y, "asnumpy") else np.asarray(y)
        rows.append(y.reshape(-1) if y.ndim <= 1 or y.shape[0] == 1 else y[0])
    return np.stack(rows).astype(np.float64), seconds / max(1, len(images))


def measure(fp32, converted, holdout: list[tuple[str, str]], task: str) -> dict:
    import numpy as np

    images = []
    for path, _ in holdout:
        with open(path, "rb") as fh:
            images.append(fh.read())
    a, a_s = _outputs(fp32, images)
    b, b_s = _outputs(converted, images)
    report = {"images": len(images), "forward_ms_fp32": round(a_s * 1000, 2),
              "forward_ms_converted": round(b_s * 1000, 2)}
    labels = [label for _, label in holdout]
    if task == "face":
        report["embedding_max_abs_diff"] = float(np.abs(a - b).max()) if len(a) else None
        threshold = float(getattr(fp32, "threshold", 0.5))
        report["verification_fp32"] = agreement.verification_accuracy(a, labels, threshold)
        report["verification_converted"] = agreement.verification_accuracy(b, labels, threshold)
    else:
        report["top1_agreement"] = agreement.top1_agreement(a, b)
        truth = np.array([float(label) for label in labels])
        report["accuracy_fp32"] = float(np.mean(a.argmax(1) == truth))
        report["accuracy_converted"] = float(np.mean(b.argmax(1) == truth))
    return report


def run(args) -> dict:
    from orchestrator.predictor import loader

    model_dir = os.path.abspath(args.model_dir)
    loader.prepare_path(model_dir)
    from mms import optimized

    shutil.rmtree(os.path.join(model_dir, "optimized"), ignore_errors=True)  # converting again starts afresh
    if os.path.exists(os.path.join(model_dir, optimized.MANIFEST)):
        os.remove(os.path.join(model_dir, optimized.MANIFEST))
    report = {"mode": args.mode, "requested": args.mode}
    if args.mode == "bf16" and not cpu_supports_bf16():
        report.update(mode="fp32", note="this CPU has no bfloat16 instructions (avx512_bf16/amx_bf16 in "
                                        "/proc/cpuinfo): serving fp32")
        write_json(Path(model_dir, optimized.MANIFEST), {**report, "files": {}})
        return report
    symbol_file, params_file, symbol, arg, aux = _network(model_dir)
    fp32, _ = loader.load_service(model_dir, "fp32")
    calib = []
    if args.mode == "int8":
        if not args.calib:
            raise ConvertError("int8 needs calibration images: --calib TRAIN.rec or a folder of images")
        raws = calibration_images(args.calib, args.calib_count)
        if not raws:
            raise ConvertError(f"no calibration images in {args.calib}")
        import numpy as np

        calib = np.concatenate([np.asarray(fp32._preprocess(_request(raw))) for raw in raws])
        report.update(calibration=args.calib_mode, calibration_images=len(raws))
    started = time.perf_counter()
    files = _save(model_dir, args.mode, symbol_file, params_file,
                  *convert(args.mode, symbol, arg, aux, calib, args.calib_mode))
    report["convert_s"] = round(time.perf_counter() - started, 1)
    try:
        optimized.install({os.path.realpath(os.path.join(model_dir, k)): os.path.join(model_dir, v)
                           for k, v in files.items()})
        converted, _ = loader.load_service(model_dir, args.mode)
        optimized.deactivate()
        holdout = holdout_images(args.holdout, args.images_root or os.path.dirname(args.holdout),
                                 args.holdout_limit) if args.holdout else []
        if holdout:
            report.update(measure(fp32, converted, holdout, args.task))
        else:
            report["note"] = "no held-out images given: agreement with fp32 not measured"
        problems = agreement.check(report, args.min_top1, args.max_verification_drop)
        if problems:
            raise ConvertError("; ".join(problems) + f" -> {args.mode} refused, the package stays fp32", code=3,
                               measured=report)
    except BaseException:
        shutil.rmtree(os.path.join(model_dir, "optimized"), ignore_errors=True)
        raise
    write_json(Path(model_dir, optimized.MANIFEST), {**report, "files": files})
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="orchestrator.optimize.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--calib", help="training records (.rec) or a folder of images, for int8")
    p.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive")
    p.add_argument("--calib-count", type=int, default=64)
    p.add_argument("--holdout", help="an im2rec .lst of held-out images (idx, label, path)")
    p.add_argument("--images-root", help="folder the .lst paths are relative to (default: its folder)")
    p.add_argument("--holdout-limit", type=int, default=200)
    p.add_argument("--task", choices=("classification", "face"), default="classification")
    p.add_argument("--min-top1", type=float, default=0.99)
    p.add_argument("--max-verification-drop", type=float, default=0.5, help="points of accuracy")
    p.add_argument("--report", help="also write the report (JSON) here")
    args = p.parse_args(argv)
    try:
        report = run(args)
        code = 0
    except ConvertError as exc:
        report, code = {**exc.measured, "mode": "fp32", "requested": args.mode, "error": str(exc)}, exc.code
        print(f"optimize: {exc}", file=sys.stderr)
    if args.report:
        write_json(Path(args.report), report)
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
