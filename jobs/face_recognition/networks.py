"""Backbone names of train.py (insightface's and the notebook's) -> Gluon networks.

``build(name, ...)`` -> ``(net, description)``; ValueError with the accepted names when
the name or shape is unknown.  Names:

* ``r18`` ``r34`` ``r50`` ``r100`` (insightface), or ``iresnet`` / ``resnet`` / ``fresnet``
  with ``num_layers``: IResNet, default embedding 512;
* ``mobilefacenet`` / ``y1`` (blocks 1,4,6,2, embedding 128), ``y2`` (2,8,16,4, 256).

``units`` (IResNet) / ``blocks`` (MobileFaceNet) and ``width`` override the shape for
small variants.
"""
from iresnet import UNITS, IResNet
from mobilefacenet import MobileFaceNet

IRESNET_NAMES = ("iresnet", "resnet", "fresnet")
MOBILE = {"mobilefacenet": ((1, 4, 6, 2), 128), "y1": ((1, 4, 6, 2), 128),
          "y2": ((2, 8, 16, 4), 256)}
NAMES = tuple(f"r{d}" for d in UNITS) + IRESNET_NAMES + tuple(MOBILE)


def build(name, num_layers=50, emb_size=None, image_size=(112, 112), units=None,
          blocks=None, width=1.0, dropout=0.4):
    name = name.lower()
    if name in MOBILE:
        default_blocks, default_emb = MOBILE[name]
        blocks = tuple(blocks or default_blocks)
        net = MobileFaceNet(emb_size or default_emb, blocks, width, image_size)
        return net, f"mobilefacenet blocks={','.join(map(str, blocks))} width={width}"
    if name.startswith("r") and name[1:].isdigit():
        num_layers, name = int(name[1:]), "iresnet"
    if name not in IRESNET_NAMES:
        raise ValueError(f"unknown network {name!r}: use one of {', '.join(NAMES)}")
    if units is None and num_layers not in UNITS:
        raise ValueError(f"IResNet depth {num_layers} is not supported: use "
                         f"{', '.join(map(str, UNITS))} (or --net_units for a custom shape)")
    if image_size[0] % 16 or image_size[1] % 16:
        raise ValueError(f"IResNet needs an image size divisible by 16, got {image_size}")
    net = IResNet(num_layers, emb_size or 512, units, width, dropout)
    shape = ",".join(map(str, units)) if units else str(num_layers)
    return net, f"iresnet-{shape} width={width}"
