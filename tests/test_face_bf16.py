"""--dtype=bfloat16 of the face job (jobs.common.runtime.mixed_precision_block): the
network's graph under MXNet AMP shares the float32 parameters, its embeddings stay close
to float32, every loss after it (softmax, margins, triplet) is computed in float32 with
finite gradients, and a CPU without bf16 instructions trains in float32 with a warning."""
import logging

import numpy as np
import pytest

from jobmodules import job_modules
from jobs.common.runtime import cpu_has_bf16, mixed_precision_block

mx = pytest.importorskip("mxnet")
from mxnet import autograd, gluon  # noqa: E402

losses, networks, triplet = job_modules("face_recognition", "losses", "networks", "triplet")

SHAPE = (8, 3, 32, 32)
NETS = {"iresnet": dict(units=(1, 1, 1, 1), width=0.25), "mobilefacenet": dict(blocks=(1, 1, 1, 1), width=0.25)}


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelno, record.getMessage()))


def tiny_net(name):
    mx.random.seed(0)
    net, _ = networks.build(name, emb_size=16, image_size=SHAPE[2:], dropout=0, **NETS[name])
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    net(mx.nd.zeros((1,) + SHAPE[1:]))
    net.hybridize(static_alloc=True)
    return net


def loss_of(kind, emb, y):
    if kind == "triplet":
        found = triplet.select(triplet.pairwise_sq_distances(emb.asnumpy()), y.asnumpy(), "batch_all", 0.3)
        return triplet.triplet_loss(mx.nd, emb, found, 0.3)
    mx.random.seed(1)
    head = losses.MarginHead(4, emb.shape[1], kind, s=16)
    head.initialize()
    return gluon.loss.SoftmaxCrossEntropyLoss()(head(emb, y)[0], y).mean()


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")
@pytest.mark.parametrize("name", sorted(NETS))
def test_bf16_network_is_close_to_float32_and_losses_stay_float32(name):
    net = tiny_net(name)
    block, dtype = mixed_precision_block("bfloat16", net, logging.getLogger("test"))
    assert dtype == "bfloat16" and block is not net
    graph = block(mx.sym.var("data")).tojson(remove_amp_cast=False)   # tojson() drops AMP's casts
    assert '"dtype": "bfloat16"' in graph, "the graph computes in bfloat16"
    assert set(block.collect_params().values()) <= set(net.collect_params().values()), "shared float32 weights"

    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.uniform(0, 255, SHAPE))
    y = mx.nd.array(np.repeat(np.arange(4), 2))          # P x K batches for the triplet loss
    with autograd.predict_mode():
        e32, e16 = net(x), block(x)
    assert e16.dtype == np.float32
    a, b = (e / np.linalg.norm(e, axis=1, keepdims=True) for e in (e32.asnumpy(), e16.asnumpy()))
    assert (a * b).sum(axis=1).min() > 0.99 and np.abs(a - b).max() > 0, "close, but really bf16"

    for kind in ("softmax", "arcface", "cosface", "combined", "triplet"):
        values = {}
        for which, model in (("float32", net), ("bfloat16", block)):
            with autograd.record():
                loss = loss_of(kind, model(x), y)
            loss.backward()
            grads = [p.grad().asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
            assert loss.dtype == np.float32 and all(np.isfinite(g).all() for g in grads), (kind, which)
            values[which] = float(loss.asscalar())
        assert values["bfloat16"] == pytest.approx(values["float32"], rel=0.05, abs=0.02), kind


def test_without_bf16_instructions_the_network_trains_in_float32_with_a_warning(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    log, records = logging.getLogger("test-bf16-fallback"), Records()
    log.addHandler(records)
    net = tiny_net("iresnet")
    assert mixed_precision_block("bfloat16", net, log, cpuinfo=str(cpuinfo)) == (net, "float32")
    assert mixed_precision_block("float32", net, log) == (net, "float32")
    assert records.messages == [(logging.WARNING, "--dtype=bfloat16: this CPU has no bfloat16 instructions "
                                                  "(avx512_bf16/amx_bf16 in /proc/cpuinfo); training in float32")]
