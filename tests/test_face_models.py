"""Face backbones (IResNet, MobileFaceNet): shapes, 16x down-sampling, names, export."""

import numpy as np
import pytest

from jobmodules import job_modules

mx = pytest.importorskip("mxnet")
iresnet, model_export, networks = job_modules("face_recognition", "iresnet", "model_export", "networks")

TINY = {"iresnet": dict(units=(1, 1, 1, 1), width=0.125),
        "mobilefacenet": dict(blocks=(1, 1, 1, 1), width=0.25)}


def built(name, emb=16, size=(112, 112), seed=0):
    mx.random.seed(seed)
    net, _ = networks.build(name, emb_size=emb, image_size=size, **TINY[name])
    net.initialize(mx.init.Xavier())
    return net


@pytest.mark.parametrize("name", ["iresnet", "mobilefacenet"])
@pytest.mark.parametrize("size", [(112, 112), (64, 48)])
def test_shapes_and_16x_downsampling(name, size):
    net = built(name, emb=24, size=size)
    x = mx.nd.random.uniform(0, 255, (3, 3) + size)
    features = net.features(x)
    assert features.shape[2:] == (size[0] // 16, size[1] // 16)
    assert net(x).shape == (3, 24)


def test_iresnet_unit_counts_follow_insightface():
    for depth, units in {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3),
                         100: (3, 13, 30, 3)}.items():
        net = iresnet.IResNet(depth, emb_size=8)
        blocks = [b for b in net.features._children.values() if isinstance(b, iresnet.IRUnit)]
        counts = [sum(b.prefix.startswith(f"stage{s}_") for b in blocks) for s in (1, 2, 3, 4)]
        assert tuple(counts) == units, depth
        assert sum(b.shortcut is not None for b in blocks) == 4  # one projection per stage
    assert networks.build("r34", emb_size=8)[1] == "iresnet-34 width=1.0"
    with pytest.raises(ValueError, match="not supported"):
        networks.build("iresnet", num_layers=42)
    with pytest.raises(ValueError, match="unknown network"):
        networks.build("vgg16")


def test_full_size_shapes_and_mobilefacenet_is_small():
    mfn, _ = networks.build("mobilefacenet")
    mfn.initialize()
    x = mx.nd.zeros((1, 3, 112, 112))
    assert mfn.features(x).shape == (1, 512, 7, 7) and mfn(x).shape == (1, 128)
    params = sum(int(np.prod(p.shape)) for p in mfn.collect_params().values())
    assert 0.9e6 < params < 1.1e6  # "fewer than 1M" weights, plus BN statistics
    r18, _ = networks.build("r18")
    r18.initialize()
    assert r18.features(x).shape == (1, 512, 7, 7) and r18(x).shape == (1, 512)
    y2, _ = networks.build("y2")
    y2.initialize()
    assert y2(x).shape == (1, 256)


def test_pixels_are_normalised_in_graph():
    norm = iresnet.Normalize()
    out = norm(mx.nd.array([[0.0, 127.5, 255.0]])).asnumpy()
    np.testing.assert_allclose(out, [[-127.5 / 128, 0.0, 127.5 / 128]])


@pytest.mark.parametrize("name", ["iresnet", "mobilefacenet"])
def test_checkpoint_round_trip_by_name_and_symbol_export(name, tmp_path):
    net = built(name, seed=1)
    x = mx.nd.random.uniform(0, 255, (2, 3, 112, 112))
    net.hybridize()
    want = net(x).asnumpy()
    symbol, params = model_export.network_params(net)
    model_export.save_checkpoint(str(tmp_path / "m"), 3, symbol, params)
    # A fresh network in another "process" (new random weights) gets the same names.
    other = built(name, seed=2)
    other(x)
    assert sorted(other.collect_params()) == sorted(net.collect_params())
    model_export.set_network_params(other, model_export.load_params(str(tmp_path / "m"), 3), "ckpt")
    np.testing.assert_allclose(other(x).asnumpy(), want, rtol=1e-4, atol=1e-4)
    # The saved symbol + params run in a Module (what the inference service does), also
    # after a rebind to another batch size.
    sym, arg, aux = mx.model.load_checkpoint(str(tmp_path / "m"), 3)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind(data_shapes=[("data", (2, 3, 112, 112))], for_training=False)
    mod.set_params(arg, aux)
    for batch in (x, x, mx.nd.concat(x, x, dim=0)):
        mod.forward(mx.io.DataBatch([batch]), is_train=False)
        np.testing.assert_allclose(mod.get_outputs()[0].asnumpy()[:2], want, rtol=1e-4, atol=1e-4)


def test_mismatched_checkpoint_is_refused(tmp_path):
    net = built("iresnet")
    net(mx.nd.zeros((1, 3, 112, 112)))
    symbol, params = model_export.network_params(net)
    model_export.save_checkpoint(str(tmp_path / "m"), 1, symbol, params)
    wider = built("mobilefacenet")
    wider(mx.nd.zeros((1, 3, 112, 112)))
    with pytest.raises(ValueError, match="does not fit this network"):
        model_export.set_network_params(wider, model_export.load_params(str(tmp_path / "m"), 1),
                                        "ckpt")
