"""model.optimize: converting a package once (fused / int8 naive+entropy / bf16), checking it
against fp32 on held-out images, and serving the converted files through the package's
unchanged customize_service.py. Tiny conv net, tiny generated images."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from orchestrator.optimize import OptimizePlan, agreement, cpu_supports_bf16, summary
from orchestrator.optimize import convert
from orchestrator.predictor.loader import load_service, runtime_dir
from test_predictor import start

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, runtime_dir())
from mms import optimized  # noqa: E402  (the runtime folder, as workers see it)


def tiny_package(dest: Path, classes: int = 4) -> Path:
    """The project's image-classification service over a conv -> BN -> ReLU -> pool -> FC net."""
    import mxnet as mx

    shutil.copytree(ROOT / "inference" / "image_classification", dest,
                    ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    data = mx.sym.Variable("data")
    net = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv0")
    net = mx.sym.Activation(mx.sym.BatchNorm(net, name="bn0"), act_type="relu")
    net = mx.sym.Pooling(net, kernel=(1, 1), global_pool=True, pool_type="avg")
    net = mx.sym.FullyConnected(mx.sym.Flatten(net), num_hidden=classes, name="fc")
    net = mx.sym.SoftmaxOutput(net, name="softmax")
    module = mx.mod.Module(net, data_names=["data"], label_names=["softmax_label"])
    module.bind(data_shapes=[("data", (1, 3, 16, 16))], label_shapes=[("softmax_label", (1,))], for_training=False)
    mx.random.seed(1)
    module.init_params(mx.init.Xavier(magnitude=3))
    args, aux = module.get_params()
    mx.model.save_checkpoint(str(dest / "tiny"), 0, net, args, aux)
    (dest / "labels.txt").write_text("".join(f"c{i}\n" for i in range(classes)))
    (dest / "preprocess.json").write_text(json.dumps({
        "image_shape": [3, 16, 16], "resize": 16, "scale": 1 / 64, "mean": [128, 128, 128],
        "data_name": "data", "prefix": "tiny", "epoch": 0}))
    return dest


def images(folder: Path, n: int = 24) -> Path:
    """``n`` JPEGs of colour gradients and the im2rec-style ``test.lst`` naming them."""
    folder.mkdir()
    rng = np.random.RandomState(3)
    lines = []
    for i in range(n):
        y, x = np.mgrid[0:24, 0:24]
        img = np.stack([(x * rng.uniform(2, 10) + c * rng.uniform(0, 90)) % 256 for c in range(3)], -1)
        cv2.imwrite(str(folder / f"{i}.jpg"), img.astype(np.uint8))
        lines.append(f"{i}\t{i % 4}\t{i}.jpg\n")
    (folder / "test.lst").write_text("".join(lines))
    return folder / "test.lst"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt")
    return tiny_package(base / "model"), images(base / "images")


def run_convert(package: Path, lst: Path, *args: str) -> tuple[int, dict]:
    report = package.parent / "report.json"
    code = convert.main([str(package), "--calib", str(lst.parent), "--holdout", str(lst), "--report", str(report),
                         *args])
    return code, json.loads(report.read_text())


def test_int8_is_converted_once_checked_and_served_by_the_unchanged_service(tiny, tmp_path_factory, tmp_path):
    source, lst = tiny
    package = shutil.copytree(source, tmp_path / "model")
    code, report = run_convert(package, lst, "--mode", "int8", "--calib-mode", "naive", "--min-top1", "0.9")
    assert code == 0, report
    assert report["mode"] == "int8" and report["calibration"] == "naive" and report["images"] == 24
    assert report["top1_agreement"] >= 0.9 and "accuracy_fp32" in report
    manifest = json.loads((package / "optimize.json").read_text())
    assert manifest["files"] == {"tiny-symbol.json": "optimized/int8/tiny-symbol.json",
                                 "tiny-0000.params": "optimized/int8/tiny-0000.params"}
    assert (package / "tiny-symbol.json").read_bytes() == (source / "tiny-symbol.json").read_bytes()  # kept
    assert "top-1 agreement with fp32" in summary(report)

    # the customize_service.py itself is untouched; the runtime hands it the int8 network
    assert optimized.activate(str(package), "auto") == "int8"
    try:
        service, _ = load_service(str(package), "int8")
        assert "quantize" in service.module.symbol.tojson()
    finally:
        optimized.deactivate()
    service, _ = load_service(str(package), "fp32")
    assert "quantize" not in service.module.symbol.tojson()

    p = start(tmp_path_factory, package)  # the predictor serves what optimize.json names
    try:
        answer = requests.post(p.url, files={"images": ("0.jpg", (lst.parent / "0.jpg").read_bytes())}, timeout=30)
        assert answer.status_code == 200 and answer.json()["predicted_label"].startswith("c")
        assert "serving the int8 network" in p.stderr()
    finally:
        p.stop()


def test_entropy_conversion_below_the_threshold_is_refused_and_leaves_fp32(tiny, tmp_path):
    source, lst = tiny
    package = shutil.copytree(source, tmp_path / "model")
    code, report = run_convert(package, lst, "--mode", "int8", "--calib-mode", "entropy", "--min-top1", "1.01")
    assert code == 3
    assert "below the required 101.00%" in report["error"] and report["mode"] == "fp32"
    assert not (package / "optimized").exists() and not (package / "optimize.json").exists()


def test_fused_and_bf16(tiny, tmp_path):
    source, lst = tiny
    package = shutil.copytree(source, tmp_path / "model")
    code, report = run_convert(package, lst, "--mode", "fused")
    assert code == 0 and report["top1_agreement"] == 1.0
    code, report = run_convert(package, lst, "--mode", "bf16", "--min-top1", "0.5")
    assert code == 0, report
    if cpu_supports_bf16():
        assert report["mode"] == "bf16" and not (package / "optimized" / "fused").exists()  # reconverted afresh
        saved = json.loads(next((package / "optimized" / "bf16").glob("*-symbol.json")).read_text())
        assert any(n["op"] == "amp_cast" and n["attrs"]["dtype"] == "bfloat16" for n in saved["nodes"])
    else:
        assert report["mode"] == "fp32" and "no bfloat16" in report["note"]


def test_bf16_detection_reads_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_supports_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_supports_bf16(str(cpuinfo))
    assert not cpu_supports_bf16(str(tmp_path / "missing"))


def test_serving_a_mode_the_package_lacks_is_a_clear_error(tmp_path):
    assert optimized.activate(str(tmp_path), None) == "fp32"
    assert optimized.activate(str(tmp_path), "fp32") == "fp32"
    with pytest.raises(ValueError, match="holds no converted network; convert it with model.optimize: int8"):
        optimized.activate(str(tmp_path), "int8")
    with pytest.raises(ValueError, match="expected one of"):
        optimized.activate(str(tmp_path), "int4")


def test_agreement_measures():
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert agreement.top1_agreement(a, a[:, ::-1]) == 0.0 and agreement.top1_agreement(a, a) == 1.0
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    assert agreement.verification_accuracy(emb, ["a", "a", "b", "b"], 0.5) == 1.0
    assert agreement.verification_accuracy(emb, ["a", "b", "c", "d"], 0.5) is None  # no same-person pair
    problems = agreement.check({"verification_fp32": 0.95, "verification_converted": 0.94, "images": 4}, 0.99, 0.5)
    assert problems == ["verification accuracy fell from 95.00% to 94.00%, more than 0.5 point(s)"]
    assert agreement.check({"top1_agreement": 0.995, "images": 200}, 0.99, 0.5) == []


def test_plan_says_what_the_import_step_converts():
    assert OptimizePlan().describe() == "serve the network as trained (fp32)"
    text = OptimizePlan("int8", "entropy", 32).describe()
    assert "int8" in text and "entropy calibration on 32 training images" in text and "99%" in text


@pytest.mark.parametrize("mode", ["int8", "bf16"])
def test_face_model_conversion_reports_embedding_difference_and_verification(tmp_path, mode):
    """The face service's package (tiny MobileFaceNet: PReLU and depthwise convolutions, which
    MXNet 1.9.1 cannot run in bf16 on a CPU) converted: the check compares normalised
    embeddings and same/different decisions over held-out pairs."""
    if mode == "bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    from test_inference_face import build_face_package, encode, face_image

    (tmp_path / "pkg").mkdir()
    package = build_face_package(tmp_path / "pkg")[0]
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for n, (person, shot) in enumerate((p, s) for p in range(3) for s in range(3)):
        img = np.clip(face_image(person).astype(int) + rng.integers(-12, 13, (112, 112, 3)), 0, 255).astype(np.uint8)
        (folder / f"{n}.jpg").write_bytes(encode(img))
        lines.append(f"{n}\t{person}\t{n}.jpg\n")
    (folder / "test.lst").write_text("".join(lines))
    code, report = run_convert(Path(package), folder / "test.lst", "--mode", mode, "--task", "face",
                               "--max-verification-drop", "100")
    assert code == 0, report
    assert 0 <= report["embedding_max_abs_diff"] < 1 and report["images"] == 9
    assert report["verification_fp32"] is not None and report["verification_converted"] is not None
    assert "top1_agreement" not in report and "embedding max abs diff" in summary(report)
