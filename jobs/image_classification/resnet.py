"""Pre-activation ResNet (v2) symbols for MXNet, after MXNet's example symbols/resnet.py.

``get_symbol(num_classes, num_layers, image_shape)`` returns a symbol with input ``data``
(raw 0-255 RGB pixels, NCHW), a first ``bn_data`` BatchNorm(fix_gamma=True) that learns
the input normalisation (so no mean subtraction is needed anywhere), a final
FullyConnected ``fc1`` and ``SoftmaxOutput`` ``softmax`` (label ``softmax_label``).

Depths:

* ImageNet style, 4 stages: 18, 34 (basic blocks), 50, 101, 152 (bottleneck blocks).
* CIFAR style, 3 stages of basic blocks with 16/32/64 filters: any depth with
  ``(num_layers - 2) % 6 == 0`` that is not in the ImageNet table (20, 26, 32, 44, 56, 110).

Stem: for inputs of height <= 32 a 3x3/1 convolution; otherwise 7x7/2 + 3x3/2 max-pool.
"""
import mxnet as mx

IMAGENET_UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3],
                  101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
BN_MOM = 0.9
EPS = 2e-5


def supported(num_layers):
    """True if get_symbol knows this depth."""
    return num_layers in IMAGENET_UNITS or (num_layers >= 8 and (num_layers - 2) % 6 == 0)


def _bn_relu(data, name):
    bn = mx.sym.BatchNorm(data, fix_gamma=False, eps=EPS, momentum=BN_MOM, name=name + "_bn")
    return mx.sym.Activation(bn, act_type="relu", name=name + "_relu")


def _conv(data, num_filter, kernel, stride, name):
    pad = (kernel // 2, kernel // 2)
    return mx.sym.Convolution(data, num_filter=num_filter, kernel=(kernel, kernel),
                              stride=(stride, stride), pad=pad, no_bias=True,
                              workspace=256, name=name)


def residual_unit(data, num_filter, stride, dim_match, name, bottle_neck):
    """BN-ReLU-conv unit; the shortcut is projected (1x1) when shape changes."""
    act1 = _bn_relu(data, name + "_1")
    if bottle_neck:
        mid = num_filter // 4
        conv1 = _conv(act1, mid, 1, 1, name + "_conv1")
        conv2 = _conv(_bn_relu(conv1, name + "_2"), mid, 3, stride, name + "_conv2")
        out = _conv(_bn_relu(conv2, name + "_3"), num_filter, 1, 1, name + "_conv3")
    else:
        conv1 = _conv(act1, num_filter, 3, stride, name + "_conv1")
        out = _conv(_bn_relu(conv1, name + "_2"), num_filter, 3, 1, name + "_conv2")
    shortcut = data if dim_match else _conv(act1, num_filter, 1, stride, name + "_sc")
    return out + shortcut


def get_symbol(num_classes, num_layers, image_shape):
    """Symbol for `num_classes` outputs; image_shape is (C, H, W) or "C,H,W"."""
    if isinstance(image_shape, str):
        image_shape = [int(v) for v in image_shape.split(",")]
    height = image_shape[1]
    if num_layers in IMAGENET_UNITS:
        units = IMAGENET_UNITS[num_layers]
        bottle_neck = num_layers >= 50
        filters = [64, 256, 512, 1024, 2048] if bottle_neck else [64, 64, 128, 256, 512]
    elif supported(num_layers):
        units = [(num_layers - 2) // 6] * 3
        bottle_neck = False
        filters = [16, 16, 32, 64]
    else:
        raise ValueError(f"unsupported num_layers {num_layers}: use 18, 34, 50, 101, 152 or a "
                         f"CIFAR-style depth with (n-2)%6==0 such as 20, 32, 44, 56")

    data = mx.sym.Variable("data")
    # Learns per-channel input statistics: raw pixels in, no mean subtraction needed.
    body = mx.sym.BatchNorm(data, fix_gamma=True, eps=EPS, momentum=BN_MOM, name="bn_data")
    if height <= 32:
        body = _conv(body, filters[0], 3, 1, "conv0")
    else:
        body = _conv(body, filters[0], 7, 2, "conv0")
        body = _bn_relu(body, "stem")
        body = mx.sym.Pooling(body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max",
                              name="pool0")
    for i, count in enumerate(units):
        stride = 1 if i == 0 else 2
        body = residual_unit(body, filters[i + 1], stride, False, f"stage{i + 1}_unit1",
                             bottle_neck)
        for j in range(2, count + 1):
            body = residual_unit(body, filters[i + 1], 1, True, f"stage{i + 1}_unit{j}",
                                 bottle_neck)
    body = _bn_relu(body, "final")
    pool = mx.sym.Pooling(body, kernel=(7, 7), global_pool=True, pool_type="avg", name="pool1")
    fc1 = mx.sym.FullyConnected(mx.sym.Flatten(pool), num_hidden=num_classes, name="fc1")
    return mx.sym.SoftmaxOutput(fc1, name="softmax")
