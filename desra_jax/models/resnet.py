"""ResNet-50/101 backbone (bottleneck blocks, torchvision's v1.5 layout) with atrous last stages, NHWC.

He et al., "Deep Residual Learning for Image Recognition" (2016), as torchvision's ``resnet50``/``resnet101``
build it: the stride of a downsampling block sits on its 3x3 conv (v1.5), and ``replace_stride_with_dilation``
turns the stride of the last stage(s) into dilation, which is how DeepLabV3/V3+ (Chen et al. 2017, 2018) reach
output stride 16 or 8. Parameter names follow torchvision's state_dict (``layer2_0`` is ``layer2.0``).
"""

from __future__ import annotations

import jax
from flax import linen as nn

from desra_jax.models.layers import BatchNorm

#: Blocks per stage: torchvision's resnet50 and resnet101.
RESNET50_LAYERS = (3, 4, 6, 3)
RESNET101_LAYERS = (3, 4, 23, 3)

#: A bottleneck block's output has this many times its inner width (``Bottleneck.expansion`` in torchvision).
EXPANSION = 4

#: torchvision's initialisation of every conv (kaiming_normal_, mode='fan_out', nonlinearity='relu').
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int = 1, dilation: int = 1, name: str | None = None) -> nn.Conv:
    """A bias-free conv padded as torch pads it (``padding = dilation * (kernel // 2)``), so sizes match torch's
    for every input size, odd ones included."""
    pad = dilation * (kernel // 2)
    return nn.Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                   kernel_dilation=dilation, use_bias=False, kernel_init=conv_init, name=name)


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck``: 1x1 (width) -> 3x3 (width, stride, dilation) -> 1x1 (4 width), each with
    BatchNorm, ReLU after the residual sum; a 1x1 conv + BN projects the shortcut when shapes change."""

    width: int
    stride: int = 1
    dilation: int = 1
    project_shortcut: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(BatchNorm(name="bn1")(conv(self.width, 1, name="conv1")(x), train))
        y = conv(self.width, 3, self.stride, self.dilation, name="conv2")(y)
        y = nn.relu(BatchNorm(name="bn2")(y, train))
        y = BatchNorm(name="bn3")(conv(self.width * EXPANSION, 1, name="conv3")(y), train)
        if self.project_shortcut:
            x = conv(self.width * EXPANSION, 1, self.stride, name="downsample_conv")(x)
            x = BatchNorm(name="downsample_bn")(x, train)
        return nn.relu(x + y)


def stage_strides_and_dilations(output_stride: int) -> tuple[tuple[int, int, int], ...]:
    """``(stride, first-block dilation, other-block dilation)`` of layer1..layer4 for an output stride of 32, 16
    or 8, as torchvision's ``_make_layer`` sets them: a dilated stage's first block keeps the previous dilation."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"ResNet: output_stride must be 8, 16 or 32, got {output_stride}")
    stages, stride_so_far, dilation = [], 4, 1  # the stem (7x7 conv, max-pool) has stride 4
    for index in range(4):
        stride = 1 if index == 0 else 2
        if stride_so_far * stride > output_stride:
            stages.append((1, dilation, dilation * stride))
            dilation *= stride
        else:
            stages.append((stride, dilation, dilation))
            stride_so_far *= stride
    return tuple(stages)


class ResNet(nn.Module):
    """ResNet backbone: (N, H, W, 3) ImageNet-normalised -> (layer1 features at stride 4 with 4 ``width``
    channels, layer4 features at ``output_stride`` with 32 ``width`` channels). No pooling head, no ``fc``.

    ``layers`` = (3, 4, 6, 3) is ResNet-50, (3, 4, 23, 3) ResNet-101; ``width`` = 64 is the published width
    (smaller values make tiny test networks).
    """

    layers: tuple[int, ...] = RESNET50_LAYERS
    width: int = 64
    output_stride: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        if len(self.layers) != 4:
            raise ValueError(f"ResNet: expected blocks for 4 stages, got layers={self.layers}")
        x = nn.relu(BatchNorm(name="bn1")(conv(self.width, 7, 2, name="conv1")(x), train))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_channels = self.width
        features = []
        schedule = stage_strides_and_dilations(self.output_stride)
        for stage, (blocks, (stride, first_dilation, dilation)) in enumerate(zip(self.layers, schedule), start=1):
            width = self.width * 2 ** (stage - 1)
            for block in range(blocks):
                first = block == 0
                x = Bottleneck(
                    width,
                    stride=stride if first else 1,
                    dilation=first_dilation if first else dilation,
                    project_shortcut=first and (stride != 1 or in_channels != width * EXPANSION),
                    name=f"layer{stage}_{block}",
                )(x, train)
                in_channels = width * EXPANSION
            features.append(x)
        return features[0], features[-1]
