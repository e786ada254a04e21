"""Margin heads of jobs/face_recognition/losses.py against a numpy reference."""
import math

import numpy as np
import pytest

from jobmodules import job_modules

losses = job_modules("face_recognition", "losses")

mx = pytest.importorskip("mxnet")

C, D = 5, 8


def reference_logits(x, w, y, s, m1, m2, m3, easy=False):
    """insightface's target logit rule, written out with numpy (float64)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(xn @ wn.T, -1 + 1e-7, 1 - 1e-7)
    out = cos.copy()
    for i, label in enumerate(y):
        c = cos[i, label]
        theta = math.acos(c)
        if m1 == 1 and m2 == 0:
            t = c - m3
        elif m1 == 1 and m3 == 0:
            if easy:
                t = math.cos(theta + m2) if c > 0 else c
            elif theta + m2 < math.pi:  # cos(theta) > cos(pi - m2)
                t = math.cos(theta + m2)
            else:                       # past pi: linear, still decreasing in theta
                t = c - math.sin(math.pi - m2) * m2
        else:
            t = math.cos(m1 * theta + m2) - m3
        out[i, label] = t
    return s * out


def head_logits(loss, x, w, y, easy=False, **margins):
    head = losses.MarginHead(C, D, loss, easy_margin=easy, **margins)
    head.initialize()
    head.weight.set_data(mx.nd.array(w))
    head.hybridize()
    logits, plain = head(mx.nd.array(x), mx.nd.array(y))
    np.testing.assert_allclose(plain.asnumpy(), reference_logits(x, w, y, head.margin[0], 1, 0, 0),
                               rtol=1e-4, atol=2e-3)
    return logits.asnumpy()


def batch(seed, toward=None):
    """Embeddings x, centres w, labels y; `toward` sets the target cosine's region."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(C, D))
    y = np.arange(8) % C
    x = rng.normal(size=(8, D))
    if toward == "opposite":  # cos(theta_y) close to -1: theta + m passes pi
        x = -w[y] + 0.05 * rng.normal(size=(8, D))
    elif toward == "same":    # cos(theta_y) close to +1: arccos' gradient blows up
        x = w[y] + 1e-4 * rng.normal(size=(8, D))
    return x, w, y


@pytest.mark.parametrize("loss,margins", [
    ("arcface", (64, 1, 0.5, 0)), ("cosface", (64, 1, 0, 0.35)),
    ("combined", (64, 1, 0.3, 0.2)), ("nsoftmax", (64, 1, 0, 0))])
@pytest.mark.parametrize("toward", [None, "opposite", "same"])
def test_margin_logits_match_reference(loss, margins, toward):
    x, w, y = batch(1, toward)
    got = head_logits(loss, x, w, y)
    want = reference_logits(x, w, y, *margins)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3)


def test_arcface_safe_path_is_used_past_pi_and_stays_monotonic():
    x, w, y = batch(2, "opposite")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    theta = np.arccos((xn * wn[y]).sum(1))
    assert (theta + 0.5 > math.pi).all()  # the naive cos(theta + m) would rise again here
    got = head_logits("arcface", x, w, y)[np.arange(8), y] / 64
    naive = np.cos(theta + 0.5)
    np.testing.assert_allclose(got, np.cos(theta) - math.sin(math.pi - 0.5) * 0.5, atol=1e-4)
    assert (got < naive).all()
    # The target logit falls as theta grows over the whole range, across the threshold.
    cos = mx.nd.array(np.cos(np.linspace(0.01, math.pi - 0.01, 400)))
    curve = losses.target_cosine(mx.nd, cos, 1, 0.5, 0).asnumpy()
    assert (np.diff(curve) < 0).all()


def test_easy_margin_keeps_negative_cosines():
    x, w, y = batch(3)
    got = head_logits("arcface", x, w, y, easy=True)
    np.testing.assert_allclose(got, reference_logits(x, w, y, 64, 1, 0.5, 0, easy=True),
                               rtol=1e-4, atol=2e-3)


def test_custom_margins_override_defaults():
    x, w, y = batch(4)
    got = head_logits("combined", x, w, y, s=30, m1=1.2, m2=0.1, m3=0.05)
    np.testing.assert_allclose(got, reference_logits(x, w, y, 30, 1.2, 0.1, 0.05), rtol=1e-4,
                               atol=1e-3)


def test_plain_softmax_is_a_biased_fully_connected_layer():
    x, w, y = batch(5)
    head = losses.MarginHead(C, D, "softmax")
    head.initialize()
    head.weight.set_data(mx.nd.array(w))
    head.bias.set_data(mx.nd.arange(C))
    got = head(mx.nd.array(x), mx.nd.array(y))[0].asnumpy()
    np.testing.assert_allclose(got, x @ w.T + np.arange(C), rtol=1e-5, atol=1e-4)
    assert head.bias.lr_mult == 2 and head.bias.wd_mult == 0


@pytest.mark.parametrize("loss", ["arcface", "combined", "cosface"])
def test_gradients_stay_finite_when_cosine_reaches_one(loss):
    x, w, y = batch(6, "same")
    head = losses.MarginHead(C, D, loss)
    head.initialize()
    head.weight.set_data(mx.nd.array(w))
    emb = mx.nd.array(x)
    emb.attach_grad()
    with mx.autograd.record():
        logits, _ = head(emb, mx.nd.array(y))
        loss_value = mx.gluon.loss.SoftmaxCrossEntropyLoss()(logits, mx.nd.array(y)).sum()
    loss_value.backward()
    assert np.isfinite(emb.grad.asnumpy()).all()
    assert np.isfinite(head.weight.grad().asnumpy()).all()


def test_bad_margins_are_refused():
    with pytest.raises(ValueError, match="pi/2"):
        losses.MarginHead(C, D, "arcface", m2=2.0)
    with pytest.raises(ValueError, match="margin_s"):
        losses.margin_settings("cosface", s=0)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.MarginHead(C, D, "triplet")
