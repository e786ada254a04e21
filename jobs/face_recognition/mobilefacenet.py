"""MobileFaceNet (insightface ``fmobilefacenet``) with the GDC head, as a Gluon HybridBlock.

Input: N x 3 x H x W float RGB 0..255 (112 x 112 for faces; multiples of 16); normalised
in-graph like IResNet.  Body (channels at width 1; ``Conv`` = conv + BN + PReLU,
``Linear`` = conv + BN, ``DResidual(out, G)`` = 1x1 Conv G -> depthwise 3x3 Conv G ->
1x1 Linear out, ``Residual`` = n x DResidual(stride 1) with identity shortcuts):

    conv_1 3x3/2 64 -> conv_2_dw dw 3x3 64 (Residual when blocks[0] > 1) ->
    dconv_23 (64, G128, /2) -> res_3 blocks[1] x (64, G128) ->
    dconv_34 (128, G256, /2) -> res_4 blocks[2] x (128, G256) ->
    dconv_45 (128, G512, /2) -> res_5 blocks[3] x (128, G256) -> conv_6sep 1x1 512

16x down-sampling (112 -> 7).  Head GDC: Linear depthwise conv over the whole 7 x 7 map
(groups 512, no padding) -> FullyConnected(emb) -> BN without scale (``fc1``).
Defaults: blocks (1, 4, 6, 2), emb 128 (insightface ``y1``); ``y2`` is blocks (2, 8, 16, 4),
emb 256.  ``width`` scales every channel count (tiny test variants).
"""
from mxnet.gluon import HybridBlock, nn

from iresnet import FlatBatchNorm, Normalize, bn, conv, prelu, scaled


def conv_block(channels, kernel, stride, prefix, groups=1, act=True, bn_mom=0.9):
    """Conv (+BN, +PReLU when act) as one HybridSequential with insightface-like names."""
    seq = nn.HybridSequential(prefix="")
    seq.add(conv(channels, kernel, stride, prefix + "_conv2d_", groups=groups),
            bn(prefix + "_batchnorm_", bn_mom))
    if act:
        seq.add(prelu(channels, prefix + "_relu_"))
    return seq


class DResidual(HybridBlock):
    """1x1 expand -> depthwise 3x3 (stride) -> 1x1 linear projection; optional shortcut."""

    def __init__(self, out, groups, stride, shortcut, bn_mom=0.9, **kwargs):
        super().__init__(**kwargs)
        self.shortcut = shortcut
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(conv_block(groups, 1, 1, "conv_sep", bn_mom=bn_mom),
                          conv_block(groups, 3, stride, "conv_dw", groups=groups, bn_mom=bn_mom),
                          conv_block(out, 1, 1, "conv_proj", act=False, bn_mom=bn_mom))

    def hybrid_forward(self, F, x):
        y = self.body(x)
        return y + x if self.shortcut else y


class MobileFaceNet(HybridBlock):
    """Face embedding network; ``forward(x)`` -> N x emb_size (not normalised)."""

    def __init__(self, emb_size=128, blocks=(1, 4, 6, 2), width=1.0, image_size=(112, 112),
                 bn_mom=0.9, prefix="", **kwargs):
        super().__init__(prefix=prefix, **kwargs)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"MobileFaceNet needs 4 block counts >= 1, got {tuple(blocks)}")
        if image_size[0] % 16 or image_size[1] % 16:
            raise ValueError(f"MobileFaceNet needs an image size divisible by 16, got {image_size}")
        c = {n: scaled(n, width) for n in (64, 128, 256, 512)}
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(Normalize(prefix="norm_"),
                              conv_block(c[64], 3, 2, "conv_1", bn_mom=bn_mom))
            if blocks[0] == 1:
                self.features.add(conv_block(c[64], 3, 1, "conv_2_dw", groups=c[64], bn_mom=bn_mom))
            else:
                self._residual(blocks[0], c[64], c[64], "res_2", bn_mom)
            stages = [("dconv_23", "res_3", c[64], c[128], blocks[1]),
                      ("dconv_34", "res_4", c[128], c[256], blocks[2]),
                      ("dconv_45", "res_5", c[128], c[512], blocks[3])]
            for down, res, out, groups, count in stages:
                self.features.add(DResidual(out, groups, 2, False, bn_mom, prefix=down + "_"))
                # res_5 expands to 256 like insightface, although dconv_45 expands to 512.
                self._residual(count, out, c[256] if res == "res_5" else groups, res, bn_mom)
            self.features.add(conv_block(c[512], 1, 1, "conv_6sep", bn_mom=bn_mom))
            kernel = (image_size[0] // 16, image_size[1] // 16)
            self.head = nn.HybridSequential(prefix="")
            self.head.add(nn.Conv2D(c[512], kernel, groups=c[512], use_bias=False,
                                    prefix="conv_6dw7_7_conv2d_"),
                          bn("conv_6dw7_7_batchnorm_", bn_mom),
                          # An explicit Flatten: MXNet 1.9's MKLDNN FullyConnected fails on
                          # the second inference forward when it flattens a 4-D input itself.
                          nn.Flatten(prefix="flatten0_"),
                          nn.Dense(emb_size, prefix="pre_fc1_"),
                          FlatBatchNorm(bn_mom, scale=False, prefix="fc1_"))

    def _residual(self, count, out, groups, name, bn_mom):
        for i in range(count):
            self.features.add(DResidual(out, groups, 1, True, bn_mom, prefix=f"{name}_block{i}_"))

    def hybrid_forward(self, F, x):
        return self.head(self.features(x))
