"""Classification heads of face training (insightface ``fc7``): softmax and margin losses.

Let x be the embedding and W the class centres (num_classes x emb, ``fc7_weight``).

* ``softmax``: logits = x W^T + b (plain fully connected layer, bias lr x2, no wd).
* every other loss: logits = s * cos(theta_j) with x and W rows L2-normalised, and the
  target class y replaced by s * margin(cos(theta_y)):

  - ``nsoftmax`` (s, 1, 0, 0): no margin;
  - ``cosface`` / m1 == 1 and m2 == 0: cos(theta) - m3;
  - ``arcface`` / m1 == 1, m3 == 0, m2 > 0: cos(theta + m2) with insightface's safe path:
    where theta + m2 would pass pi (cos(theta) <= cos(pi - m2)) the target logit becomes
    cos(theta) - sin(pi - m2) * m2, which keeps it decreasing in theta; with
    ``easy_margin`` the margin applies only where cos(theta) > 0;
  - otherwise (``combined``, SphereFace-like m1 > 1): cos(m1 * theta + m2) - m3, as
    insightface's generic path (no guard), with cos clipped to [-1 + 1e-7, 1 - 1e-7] so
    arccos keeps a finite gradient.

Defaults (insightface sample_config): s 64; arcface m2 0.5; cosface m3 0.35; combined
m1 1, m2 0.3, m3 0.2.  Cross-entropy is taken on the returned logits.
"""
import math

import mxnet as mx
from mxnet.gluon import HybridBlock

MARGIN_LOSSES = ("nsoftmax", "arcface", "cosface", "combined")
CLASSIFICATION_LOSSES = ("softmax",) + MARGIN_LOSSES
DEFAULTS = {  # loss: (s, m1, m2, m3)
    "nsoftmax": (64.0, 1.0, 0.0, 0.0), "arcface": (64.0, 1.0, 0.5, 0.0),
    "cosface": (64.0, 1.0, 0.0, 0.35), "combined": (64.0, 1.0, 0.3, 0.2),
}
EPS = 1e-7


def margin_settings(loss, s=None, m1=None, m2=None, m3=None):
    """(s, m1, m2, m3) of a margin loss: the defaults above, overridden where not None."""
    base = DEFAULTS[loss]
    s, m1, m2, m3 = (b if v is None else float(v) for v, b in zip((s, m1, m2, m3), base))
    if s <= 0:
        raise ValueError(f"margin_s must be > 0, got {s}")
    if m1 == 1 and m3 == 0 and not 0 <= m2 < math.pi / 2:
        raise ValueError(f"the ArcFace margin m2 must be in [0, pi/2), got {m2}")
    return s, m1, m2, m3


def target_cosine(F, cos_t, m1, m2, m3, easy_margin=False):
    """Margin applied to the target-class cosine (F: mx.nd or mx.sym)."""
    if m1 == 1 and m2 == 0:  # CosFace (or nothing at all)
        return cos_t - m3
    if m1 == 1 and m3 == 0:  # ArcFace, numerically safe
        sin_t = F.sqrt(F.maximum(1 - cos_t * cos_t, 0))
        phi = cos_t * math.cos(m2) - sin_t * math.sin(m2)
        if easy_margin:
            return F.where(cos_t > 0, phi, cos_t)
        threshold = math.cos(math.pi - m2)
        return F.where(cos_t > threshold, phi, cos_t - math.sin(math.pi - m2) * m2)
    return F.cos(m1 * F.arccos(cos_t) + m2) - m3


class MarginHead(HybridBlock):
    """``forward(embedding, label)`` -> (logits for cross-entropy, logits without margin),
    both N x num_classes; the second one is what the embedding alone predicts (accuracy).

    Parameters are ``fc7_weight`` (and ``fc7_bias`` for plain softmax); ``label`` holds
    class ids as floats.  For the training graph only: the exported model drops it.
    """

    def __init__(self, num_classes, emb_size, loss="arcface", s=None, m1=None, m2=None,
                 m3=None, easy_margin=False, prefix="fc7_", **kwargs):
        super().__init__(prefix=prefix, **kwargs)
        if loss not in CLASSIFICATION_LOSSES:
            raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(CLASSIFICATION_LOSSES)}")
        self.loss, self.num_classes, self.easy_margin = loss, num_classes, easy_margin
        self.margin = None if loss == "softmax" else margin_settings(loss, s, m1, m2, m3)
        self.uses_label = self.margin is not None and self.margin[1:] != (1, 0, 0)
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(num_classes, emb_size),
                                          init=mx.init.Normal(0.01))
            if loss == "softmax":
                self.bias = self.params.get("bias", shape=(num_classes,), init="zeros",
                                            lr_mult=2.0, wd_mult=0.0)

    def forward(self, x, label):
        if not self.uses_label:  # heads without a margin never read it: keep it out of the graph
            logits = super().forward(x)
            return logits, logits
        return tuple(super().forward(x, label))

    def hybrid_forward(self, F, x, label=None, weight=None, bias=None):
        if self.margin is None:
            return F.FullyConnected(x, weight, bias, num_hidden=self.num_classes)
        s, m1, m2, m3 = self.margin
        cos = F.FullyConnected(F.L2Normalization(x, mode="instance"),
                               F.L2Normalization(weight, mode="instance"),
                               no_bias=True, num_hidden=self.num_classes)
        if (m1, m2, m3) == (1, 0, 0):
            return cos * s
        cos = F.clip(cos, -1 + EPS, 1 - EPS)
        target = F.pick(cos, label, axis=1)
        delta = target_cosine(F, target, m1, m2, m3, self.easy_margin) - target
        onehot = F.one_hot(label, self.num_classes)
        return (cos + F.broadcast_mul(onehot, F.expand_dims(delta, axis=1))) * s, cos * s
