"""DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation",
ECCV 2018) on a ResNet backbone, NHWC: the artifact localizer of the deraining paper (Zhao 2024, sec. 2.2).

Encoder: ResNet-50/101 with atrous last stage(s) (:mod:`desra_jax.models.resnet`) and ASPP (DeepLabV3, Chen et al.
2017, sec. 3.3: a 1x1 conv, three 3x3 atrous convs and image pooling, concatenated and projected). Decoder (V3+
paper, sec. 3.1 and Fig. 2): a 48-channel 1x1 projection of the stride-4 features, the ASPP output upsampled to
stride 4 and concatenated after it (VainF's order), two 3x3 convs, a 1x1 classifier, bilinear upsampling to the
input size.
ASPP and decoder convs are plain (not the paper's separable ones), as in torchvision's DeepLabV3 and the common
PyTorch DeepLabV3+ (VainF/DeepLabV3Plus-Pytorch, which has one 3x3 decoder conv: ``decoder_convs=1`` takes its
weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from desra_jax.models.layers import BatchNorm, imagenet_normalize, resize_bilinear
from desra_jax.models.resnet import RESNET50_LAYERS, ResNet, conv


class ConvBNReLU(nn.Module):
    """Bias-free conv, BatchNorm, ReLU: the unit of torchvision's ASPP and of the V3+ decoder."""

    features: int
    kernel: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = conv(self.features, self.kernel, dilation=self.dilation, name="conv")(x)
        return nn.relu(BatchNorm(name="bn")(x, train))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3 sec. 3.3, torchvision's ``ASPP``): (N, h, w, C) ->
    (N, h, w, ``channels``). Branches ``convs_0`` (1x1), ``convs_1..3`` (3x3 at ``rates``), ``convs_4`` (global
    average pool, 1x1, upsampled back), concatenated, projected by ``project`` (1x1), then dropout in training."""

    rates: tuple[int, ...] = (6, 12, 18)
    channels: int = 256
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        branches = [ConvBNReLU(self.channels, 1, name="convs_0")(x, train)]
        for index, rate in enumerate(self.rates, start=1):
            branches.append(ConvBNReLU(self.channels, 3, rate, name=f"convs_{index}")(x, train))
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        pooled = ConvBNReLU(self.channels, 1, name=f"convs_{len(self.rates) + 1}")(pooled, train)
        # torchvision upsamples the 1x1 map bilinearly: a broadcast
        branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.channels)))
        x = ConvBNReLU(self.channels, 1, name="project")(jnp.concatenate(branches, axis=-1), train)
        return nn.Dropout(self.dropout, deterministic=not train)(x)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: (N, H, W, 3) RGB in [0, 1] -> logits (N, H, W, ``num_classes``).

    The model standardises its input with the ImageNet mean and std itself (torchvision's backbones were trained
    on standardised images), so callers pass [0, 1] images as everywhere in this library. Any H, W works; sizes
    that are multiples of ``output_stride`` tile every feature map exactly.

    ``backbone_layers`` (3, 4, 6, 3) is ResNet-50, (3, 4, 23, 3) ResNet-101; ``backbone_width`` 64 is the published
    width. ``aspp_rates`` are the rates at output stride 16 (the V3+ paper's 6, 12, 18) and are doubled at output
    stride 8, as in the paper. ``aspp_dropout`` 0.1 follows VainF/DeepLabV3Plus-Pytorch (torchvision's DeepLabV3
    uses 0.5); with ``train=True`` and a non-zero rate, ``apply`` needs ``rngs={'dropout': key}``.
    ``decoder_convs`` 3x3 convs refine the decoder's concatenation: two in the paper (its decoder ablation,
    sec. 4.1), one in VainF's.

    Variables: 'params' and 'batch_stats' (torch-style BatchNorm); ``train=True`` normalises with batch statistics
    and updates 'batch_stats' when it is passed as mutable (``mutable=['batch_stats']``).
    """

    num_classes: int = 1
    backbone_layers: tuple[int, ...] = RESNET50_LAYERS
    backbone_width: int = 64
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_channels: int = 256
    decoder_projection: int = 48
    decoder_channels: int = 256
    output_stride: int = 16
    aspp_dropout: float = 0.1
    decoder_convs: int = 2

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"DeepLabV3Plus: expected (N, H, W, 3) RGB images, got shape {images.shape}")
        if self.output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3Plus: output_stride must be 16 or 8, got {self.output_stride}")
        x = imagenet_normalize(images)
        low_level, high_level = ResNet(self.backbone_layers, self.backbone_width, self.output_stride,
                                       name="backbone")(x, train)
        rates = tuple(rate * 16 // self.output_stride for rate in self.aspp_rates)
        x = ASPP(rates, self.aspp_channels, self.aspp_dropout, name="aspp")(high_level, train)
        low_level = ConvBNReLU(self.decoder_projection, 1, name="low_level_project")(low_level, train)
        x = jnp.concatenate([low_level, resize_bilinear(x, low_level.shape[1:3])], axis=-1)
        for index in range(self.decoder_convs):
            x = ConvBNReLU(self.decoder_channels, 3, name=f"decoder_{index}")(x, train)
        x = nn.Conv(self.num_classes, (1, 1), name="classifier")(x)
        return resize_bilinear(x, images.shape[1:3])
