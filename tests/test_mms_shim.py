"""The `mms` compatibility shim and the service loader, in-process (imports mxnet)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import shutil
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from orchestrator.predictor import loader

FIXTURES = Path(__file__).parent / "fixtures" / "predictor"
loader.prepare_path(str(FIXTURES / "echo"))  # puts orchestrator/runtime on sys.path

import mxnet as mx  # noqa: E402
from mms.manifest import build_manifest, build_signature, find_model_files, parse_shape  # noqa: E402
from mms.model_service.mxnet_model_service import MXNetBaseService  # noqa: E402
from mms.utils.mxnet import image, ndarray  # noqa: E402

SERVICE_ENV = ("input_data_name", "input_data_shape", "output_data_name", "output_data_shape")


@pytest.fixture(autouse=True)
def clean_service_env(monkeypatch):
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_package():
    spec = importlib.util.spec_from_file_location("tiny_model", FIXTURES / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_package


def jpeg(h: int, w: int, color=(0, 0, 255)) -> bytes:  # BGR red
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), color, np.uint8))
    return buf.tobytes()


def write_service(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customize_service.py").write_text(textwrap.dedent(source))
    return folder


# -- manifest and signature ----------------------------------------------------------------

def test_default_signature_and_env_override(tmp_path, monkeypatch):
    assert build_signature(str(tmp_path)) == {
        "inputs": [{"data_name": "images", "data_shape": [0, 3, 224, 224]}],
        "outputs": [{"data_name": "softmax", "data_shape": []}]}
    monkeypatch.setenv("input_data_name", "data")
    monkeypatch.setenv("input_data_shape", "0,1,28,28")
    monkeypatch.setenv("output_data_shape", "[0, 10]")
    sig = build_signature(str(tmp_path))
    assert sig["inputs"] == [{"data_name": "data", "data_shape": [0, 1, 28, 28]}]
    assert sig["outputs"] == [{"data_name": "softmax", "data_shape": [0, 10]}]


def test_signature_json_is_used_below_env(tmp_path, monkeypatch):
    (tmp_path / "signature.json").write_text(json.dumps(
        {"inputs": [{"data_name": "data", "data_shape": [1, 3, 8, 8]}], "input_type": "image/jpeg"}))
    assert build_signature(str(tmp_path))["inputs"] == [{"data_name": "data", "data_shape": [1, 3, 8, 8]}]
    monkeypatch.setenv("input_data_shape", "0,3,4,4")
    assert build_signature(str(tmp_path))["inputs"] == [{"data_name": "data", "data_shape": [0, 3, 4, 4]}]


def test_parse_shape_rejects_garbage():
    assert parse_shape("") == [] and parse_shape("(1, 2)") == [1, 2]
    with pytest.raises(ValueError, match="bad data shape"):
        parse_shape("1,x")


def test_model_files_pick_symbol_with_params_and_newest_epoch(tmp_path):
    for name in ("a-symbol.json", "net-symbol.json", "net-0002.params", "net-0010.params",
                 "other-0099.params", "net-best.params"):
        (tmp_path / name).write_text("")
    assert find_model_files(str(tmp_path)) == ("net-symbol.json", "net-0010.params")
    manifest = build_manifest(str(tmp_path), "m")
    assert manifest["Model"]["Symbol"] == "net-symbol.json"
    assert manifest["Model"]["Parameters"] == "net-0010.params"
    assert manifest["Engine"]["MXNet"] == mx.__version__


# -- loader: class discovery and constructor styles ----------------------------------------

def test_new_style_service_through_loader(monkeypatch):
    monkeypatch.setenv("input_data_shape", "0,3,64,64")
    service, style = loader.load_service(str(FIXTURES / "echo"), "echo")
    assert style == "new" and type(service).__name__ == "EchoService"
    assert service.model_name == "echo" and service.model_path == str(FIXTURES / "echo")
    assert service.model_dir == service.model_path and service.ctx == mx.cpu()
    assert service.signature["inputs"][0] == {"data_name": "images", "data_shape": [0, 3, 64, 64]}
    out = service.inference({"images": {"r.jpg": io.BytesIO(jpeg(10, 12))}})
    assert out["shapes"] == {"r.jpg": [10, 12, 3]}
    assert service.ping() == mx.__version__


def test_legacy_service_through_loader(tmp_path, make_package, monkeypatch):
    monkeypatch.setenv("input_data_shape", "0,3,16,16")
    model_dir, labels = make_package(FIXTURES / "legacy", tmp_path / "model")
    service, style = loader.load_service(str(model_dir), "legacy")
    assert style == "legacy"
    assert service.signature["inputs"] == [{"data_name": "images", "data_shape": [0, 3, 16, 16]}]
    # legacy services get a list of raw bytes, one per input
    assert service.inference([jpeg(30, 20)]) == {"predicted_label": "class_4", "batch": 1}


@pytest.mark.parametrize("source, expected", [
    ("class S(MXNetBaseService):\n    def __init__(self, model_name, model_dir, manifest, gpu=None): pass", "legacy"),
    ("class S(MXNetBaseService):\n    def __init__(self, a, b, c): pass", "legacy"),
    ("class S(MXNetBaseService):\n    def __init__(self, model_name, model_path):\n"
     "        super().__init__(model_name, model_path)", "new"),
    ("class S(MXNetBaseService):\n    pass", "new"),
])
def test_service_style_from_init_signature(tmp_path, source, expected):
    folder = write_service(tmp_path / "pkg", "from mms.model_service.mxnet_model_service import MXNetBaseService\n"
                           + source + "\n")
    cls = loader.find_service_class(loader.import_service_module(str(folder)))
    assert loader.service_style(cls) == expected


def test_class_discovery_rules(tmp_path):
    leaf = write_service(tmp_path / "leaf", """
        from mms.model_service.mxnet_model_service import MXNetBaseService
        class Base(MXNetBaseService): pass
        class Leaf(Base): pass
    """)
    assert loader.find_service_class(loader.import_service_module(str(leaf))).__name__ == "Leaf"
    duck = write_service(tmp_path / "duck", """
        class Helper: pass
        class Duck:
            def __init__(self, model_name, model_path): self.model_name = model_name
            def _preprocess(self, data): return data
    """)
    assert loader.find_service_class(loader.import_service_module(str(duck))).__name__ == "Duck"
    with pytest.raises(loader.PackageError, match="FirstService, SecondService"):
        loader.find_service_class(loader.import_service_module(str(FIXTURES / "two_services")))
    with pytest.raises(loader.PackageError, match="customize_service.py not found"):
        loader.import_service_module(str(tmp_path))
    empty = write_service(tmp_path / "empty", "import os\n")
    with pytest.raises(loader.PackageError, match="found: none"):
        loader.find_service_class(loader.import_service_module(str(empty)))


def test_exception_in_init_propagates():
    with pytest.raises(RuntimeError, match="broken on purpose"):
        loader.load_service(str(FIXTURES / "broken_init"), "broken")


def test_py2_compat_hook_supplies_builtins(tmp_path):
    folder = write_service(tmp_path / "py2", """
        from mms.model_service.mxnet_model_service import MXNetBaseService
        SQUARES = [i * i for i in xrange(3)]
        class S(MXNetBaseService):
            def _inference(self, data): return SQUARES
    """)
    with pytest.raises(NameError):   # the model import's runtime wins over the default
        loader.load_service(str(folder), "py2", runtime="python3.7")
    service, _ = loader.load_service(str(folder), "py2", py2_compat=True)
    assert service.inference({}) == [0, 1, 4]


def test_a_package_without_runtime_is_python27_as_on_modelarts(tmp_path):
    folder = write_service(tmp_path / "py2", """
        from mms.model_service.mxnet_model_service import MXNetBaseService
        class S(MXNetBaseService):
            def _inference(self, data):
                return [map(lambda x: x * 2, [1, 2])[0]]
    """)
    (folder / "config.json").write_text('{"model_type": "MXNet", "model_algorithm": "x"}')
    service, _ = loader.load_service(str(folder), "py2")
    assert service.inference({}) == [2]
    (folder / "config.json").write_text('{"model_type": "MXNet", "model_algorithm": "x", "runtime": "python3.6"}')
    with pytest.raises(TypeError, match="not subscriptable"):
        loader.load_service(str(folder), "py2")[0].inference({})
    service, _ = loader.load_service(str(folder), "py2", runtime="python2.7")   # model.runtime wins
    assert service.inference({}) == [2]


# -- the base chain and the default _inference ---------------------------------------------

def test_stages_run_in_order_and_failures_name_their_stage(tmp_path):
    class Svc(MXNetBaseService):
        def _preprocess(self, data):
            if data == "bad":
                raise ValueError("nope")
            return data + ["pre"]

        def _inference(self, data):
            return data + ["inf"]

        def _postprocess(self, data):
            return data + ["post"]

    svc = Svc("s", str(tmp_path))
    assert svc.inference([]) == ["pre", "inf", "post"]
    with pytest.raises(ValueError) as info:
        svc.inference("bad")
    assert info.value.mms_stage == "preprocess"


def test_both_constructor_styles_on_the_base(tmp_path):
    manifest = build_manifest(str(tmp_path), "x")
    manifest["Model"]["Signature"]["inputs"][0]["data_shape"] = [0, 7]
    legacy = MXNetBaseService("x", str(tmp_path), manifest, None)
    assert legacy.signature["inputs"][0]["data_shape"] == [0, 7] and legacy.manifest is manifest
    new = MXNetBaseService("x", str(tmp_path))
    assert new.signature["inputs"][0]["data_shape"] == [0, 3, 224, 224]
    assert MXNetBaseService("x", model_dir=str(tmp_path)).model_path == str(tmp_path)


def test_default_inference_forwards_through_the_checkpoint(tmp_path, make_package, monkeypatch):
    monkeypatch.setenv("input_data_shape", "0,3,16,16")
    model_dir, _ = make_package(FIXTURES / "classifier", tmp_path / "model")
    svc = MXNetBaseService("tiny", str(model_dir))
    assert svc._mx_model is None  # lazily loaded
    out = svc._inference([mx.nd.ones((1, 3, 16, 16))])
    assert len(out) == 1 and out[0].shape == (1, 5)
    assert int(out[0].asnumpy().argmax()) == 4  # epoch 3 weights, not the zeroed epoch 1
    assert svc.mx_model.data_names == ["data"]  # signature says `images`; the net says `data`
    assert svc._inference([mx.nd.ones((2, 3, 16, 16))])[0].shape == (2, 5)  # rebinds
    default_chain = svc.inference([np.ones((1, 3, 16, 16), dtype="float32")])
    assert np.allclose(np.sum(default_chain[0], axis=1), 1.0, atol=1e-5)


def test_default_inference_without_model_files_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="symbol"):
        MXNetBaseService("none", str(tmp_path))._inference([mx.nd.ones((1, 3, 224, 224))])


def test_new_style_classifier_package_end_to_end(tmp_path, make_package, monkeypatch):
    monkeypatch.setenv("input_data_shape", "0,3,16,16")
    model_dir, labels = make_package(FIXTURES / "classifier", tmp_path / "model")
    service, style = loader.load_service(str(model_dir), "clf")
    result = service.inference({"images": {"a.jpg": io.BytesIO(jpeg(40, 30))}})
    assert style == "new" and result["predicted_label"] == "class_4"
    assert [s[0] for s in result["scores"]][0] == "class_4" and len(result["scores"]) == 5


# -- image and ndarray helpers -------------------------------------------------------------

def test_image_read_resize_transform_shape():
    img = image.read(jpeg(20, 30))
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    r, g, b = img.asnumpy()[10, 10]
    assert r > 200 and g < 50 and b < 50  # RGB order, not BGR
    assert image.read(io.BytesIO(jpeg(5, 6))).shape == (5, 6, 3)
    assert image.read(jpeg(5, 6), flag=0).shape == (5, 6, 1)
    small = image.resize(img, 8, 4)
    assert small.shape == (4, 8, 3)
    assert image.transform_shape(small).shape == (1, 3, 4, 8)
    assert image.transform_shape(small, dim_order="NHWC").shape == (1, 4, 8, 3)
    assert image.fix_crop(img, 2, 3, 10, 5).shape == (5, 10, 3)
    norm = image.color_normalize(img, mx.nd.array([255.0, 0, 0]), mx.nd.array([1.0, 1.0, 2.0]))
    assert norm.dtype == np.float32 and abs(float(norm[10, 10, 0].asscalar())) < 60
    encoded = image.write(mx.nd.transpose(img, (2, 0, 1)))  # CHW in, base64 text out
    assert image.read(base64.b64decode(encoded)).shape == img.shape


def test_image_read_rejects_non_images_with_value_error():
    for junk in (b"", b"not an image", io.BytesIO(b"\x89PNG broken")):
        with pytest.raises(ValueError, match="cannot decode image"):
            image.read(junk)


def test_top_probability():
    scores = mx.nd.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0]])
    labels = list("abcdef")
    top = ndarray.top_probability(scores, labels, top=3)
    assert [t["class"] for t in top] == ["b", "c", "d"]
    assert top[0]["probability"] == pytest.approx(0.5)
    assert ndarray.top_probability(scores.reshape((1, 6, 1, 1)), labels, top=1)[0]["class"] == "b"
    with pytest.raises(ValueError):
        ndarray.top_probability(scores, labels[:2])


def test_copying_fixture_keeps_it_clean(tmp_path, make_package):
    make_package(FIXTURES / "classifier", tmp_path / "m")
    assert not any(p.suffix == ".params" for p in (FIXTURES / "classifier").iterdir())
    shutil.rmtree(tmp_path / "m")
