"""IResNet (insightface ``fresnet``, "LResNet-E-IR") as a Gluon HybridBlock.

Input: N x 3 x H x W float RGB pixels 0..255 (H, W multiples of 16; 112 x 112 for faces).
The network normalises them itself, ``(x - 127.5) / 128``, then:

* stem: conv 3x3/1 (64) -> BN -> PReLU (no max pool, the size is kept);
* 4 stages, each starting with stride 2 (112 -> 56 -> 28 -> 14 -> 7: 16x down-sampling),
  filters 64/128/256/512, basic "IR" units (BN -> conv3x3 -> BN -> PReLU -> conv3x3/s ->
  BN, plus identity or conv1x1/s + BN shortcut, no activation after the sum);
* head "E": BN -> Dropout -> FullyConnected(emb) -> BN without scale (``fc1``).

Units per stage follow insightface: 18 [2,2,2,2], 34 [3,4,6,3], 50 [3,4,14,3],
100 [3,13,30,3].  ``units`` and ``width`` build smaller variants (tests, benchmarks):
``IResNet(units=(1, 1, 1, 1), width=0.125)`` has filters 8/8/16/32/64.

Parameter names are deterministic and insightface-like (``conv0_weight``,
``stage1_unit1_conv1_weight``, ``pre_fc1_weight``, ``fc1_gamma``...), so checkpoints load
by name across processes.  ``features`` is the convolutional body (N x C x H/16 x W/16).
"""
from mxnet import init
from mxnet.gluon import HybridBlock, nn

UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
FILTERS = (64, 64, 128, 256, 512)
BN_EPS = 2e-5


def scaled(channels, width):
    """Channel count times a width multiplier (at least 4)."""
    return max(4, int(round(channels * width)))


def conv(channels, kernel, stride, prefix, groups=1):
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2, groups=groups,
                     use_bias=False, prefix=prefix)


def bn(prefix, momentum=0.9, scale=True):
    return nn.BatchNorm(momentum=momentum, epsilon=BN_EPS, scale=scale, prefix=prefix)


def prelu(channels, prefix):
    return nn.PReLU(alpha_initializer=init.Constant(0.25), in_channels=channels, prefix=prefix)


class FlatBatchNorm(HybridBlock):
    """BatchNorm of N x C features, run as N x C x 1 x 1.

    MXNet 1.9's MKLDNN BatchNorm on 2-D input segfaults once a 4-D BatchNorm with as many
    channels ran in the process (e.g. MobileFaceNet's GDC before a 512-d fc1); the 4-D
    path is safe.  Parameters keep the plain names (``fc1_gamma``...).
    """

    def __init__(self, momentum=0.9, scale=True, prefix="fc1_"):
        super().__init__(prefix=prefix)
        with self.name_scope():
            self.bn = nn.BatchNorm(momentum=momentum, epsilon=BN_EPS, scale=scale, prefix="")

    def hybrid_forward(self, F, x):
        return F.flatten(self.bn(F.reshape(x, (0, -1, 1, 1))))


class Normalize(HybridBlock):
    """(x - 127.5) / 128 inside the graph, so callers feed raw pixels."""

    def hybrid_forward(self, F, x):
        return (x - 127.5) * 0.0078125


class EmbeddingHead(HybridBlock):
    """insightface head "E": BN -> Dropout -> FC(emb) -> BN(fix_gamma) named fc1."""

    def __init__(self, emb_size, dropout=0.4, bn_mom=0.9, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(bn("bn1_", bn_mom))
            if dropout > 0:
                self.body.add(nn.Dropout(dropout, prefix="dropout0_"))
            # Explicit Flatten: see mobilefacenet.py (MKLDNN FullyConnected on 4-D input).
            self.body.add(nn.Flatten(prefix="flatten0_"), nn.Dense(emb_size, prefix="pre_fc1_"),
                          FlatBatchNorm(bn_mom, scale=False, prefix="fc1_"))

    def hybrid_forward(self, F, x):
        return self.body(x)


class IRUnit(HybridBlock):
    """Basic IR unit (insightface residual_unit_v3)."""

    def __init__(self, channels, stride, dim_match, bn_mom=0.9, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(bn("bn1_", bn_mom), conv(channels, 3, 1, "conv1_"), bn("bn2_", bn_mom),
                          prelu(channels, "relu1_"), conv(channels, 3, stride, "conv2_"),
                          bn("bn3_", bn_mom))
            self.shortcut = None
            if not dim_match:
                self.shortcut = nn.HybridSequential(prefix="")
                self.shortcut.add(conv(channels, 1, stride, "conv1sc_"), bn("sc_", bn_mom))

    def hybrid_forward(self, F, x):
        short = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + short


class IResNet(HybridBlock):
    """Face embedding network; ``forward(x)`` -> N x emb_size (not normalised)."""

    def __init__(self, num_layers=50, emb_size=512, units=None, width=1.0, dropout=0.4,
                 bn_mom=0.9, prefix="", **kwargs):
        super().__init__(prefix=prefix, **kwargs)
        if units is None:
            if num_layers not in UNITS:
                raise ValueError(f"IResNet depth {num_layers} is not one of {sorted(UNITS)}; "
                                 f"pass units=(a, b, c, d) for another shape")
            units = UNITS[num_layers]
        if len(units) != 4 or min(units) < 1:
            raise ValueError(f"IResNet needs 4 stages of >= 1 unit, got {tuple(units)}")
        filters = [scaled(f, width) for f in FILTERS]
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(Normalize(prefix="norm_"), conv(filters[0], 3, 1, "conv0_"),
                              bn("bn0_", bn_mom), prelu(filters[0], "relu0_"))
            for stage, count in enumerate(units, 1):
                for unit in range(1, count + 1):
                    self.features.add(IRUnit(filters[stage], 2 if unit == 1 else 1,
                                             dim_match=unit > 1, bn_mom=bn_mom,
                                             prefix=f"stage{stage}_unit{unit}_"))
            self.head = EmbeddingHead(emb_size, dropout, bn_mom, prefix="")

    def hybrid_forward(self, F, x):
        return self.head(self.features(x))
