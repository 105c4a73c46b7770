"""LPIPS, the learned perceptual image patch similarity (Zhang et al., "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", CVPR 2018), as version 0.1 of the authors' ``lpips`` package computes it.

d(x, y) = sum_l mean_hw( w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2 ), where f_l are five ReLU taps of an
ImageNet backbone (AlexNet or VGG16, torchvision's ``features`` layouts), |.| is the L2 norm over channels (plus
eps 1e-10, as the package's ``normalize_tensor``) and w_l >= 0 the trained 1x1 "lin" layers (no bias; their
dropout is inactive at evaluation). The backbone sees the package's ScalingLayer output (x - shift) / scale.

Inputs here are NHWC RGB in [0, 1], this library's convention; the package takes [-1, 1] (its
``normalize=True`` does the same 2x - 1 conversion, once, as done here). Lower is more similar; identical
images give 0 (up to float rounding, about 1e-16). Weights come only from files the user holds
(``desra_jax.convert.lpips.load_lpips``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

#: The package's ScalingLayer constants, for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

#: Normalisation guard of the package's ``normalize_tensor``.
EPS = 1e-10

#: torchvision ``features`` of each backbone, one entry per index: ("conv", out, kernel, stride, padding),
#: ("relu",) or ("pool", window, stride). An entry's position is its index in torchvision (``features.N``).
_ALEXNET_LAYERS = (
    ("conv", 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 384, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",),
)


def _vgg16_layers() -> tuple[tuple, ...]:
    layers = []
    for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if block:
            layers.append(("pool", 2, 2))
        layers += [("conv", width, 3, 1, 1), ("relu",)] * convs
    return tuple(layers)


#: Per net: the layers up to the last tap, and the indices whose outputs are the five taps
#: (AlexNet: relu1..relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), as ``lpips.pretrained_networks``.
NETS = {
    "alex": (_ALEXNET_LAYERS, (1, 4, 7, 9, 11)),
    "vgg": (_vgg16_layers(), (3, 8, 15, 22, 29)),
}


def check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"LPIPS: unknown net {net!r}; choose one of {', '.join(NETS)}")


def tap_widths(net: str) -> tuple[int, ...]:
    """Channels of the five taps, i.e. the input widths of lin0..lin4: alex (64, 192, 384, 256, 256)."""
    check_net(net)
    layers, taps = NETS[net]
    widths, width = [], 3
    for index, layer in enumerate(layers):
        if layer[0] == "conv":
            width = layer[1]
        if index in taps:
            widths.append(width)
    return tuple(widths)


def unit_normalize(features: jax.Array) -> jax.Array:
    """(N, H, W, C) divided by its L2 norm over channels plus ``EPS`` (the package's ``normalize_tensor``)."""
    return features / (jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True)) + EPS)


class LPIPSBackbone(nn.Module):
    """The five taps of AlexNet / VGG16 ``features``: (N, H, W, 3) scaled input -> list of (N, h, w, C_l).

    Convs are named ``features_{torchvision index}``; pools are max-pools without padding, floor-sized as torch's.
    """

    net: str = "alex"

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        check_net(self.net)
        layers, taps = NETS[self.net]
        outputs = []
        for index, layer in enumerate(layers):
            if layer[0] == "conv":
                _, width, kernel, stride, pad = layer
                x = nn.Conv(width, (kernel, kernel), (stride, stride), ((pad, pad), (pad, pad)),
                            name=f"features_{index}")(x)
            elif layer[0] == "relu":
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (layer[1], layer[1]), (layer[2], layer[2]), "VALID")
            if index in taps:
                outputs.append(x)
        return outputs


class LPIPS(nn.Module):
    """LPIPS v0.1 distance of image pairs: x, y (N, H, W, 3) RGB in [0, 1] -> (N,), >= 0 for trained weights.

    Params: ``backbone`` (convs ``features_N``) and ``lin0`` ... ``lin4`` (1x1, one output, no bias).
    """

    net: str = "alex"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"LPIPS: expected two RGB batches (N, H, W, 3) of one shape, got {x.shape}, {y.shape}")
        batch = x.shape[0]
        # one pass over both images: [0, 1] -> the package's [-1, 1] -> its ScalingLayer
        scaled = (jnp.concatenate([x, y]) * 2.0 - 1.0 - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
        total = jnp.zeros((batch,), x.dtype)
        for k, features in enumerate(LPIPSBackbone(self.net, name="backbone")(scaled)):
            features = unit_normalize(features)
            diff = (features[:batch] - features[batch:]) ** 2
            total += jnp.mean(nn.Conv(1, (1, 1), use_bias=False, name=f"lin{k}")(diff), axis=(1, 2, 3))
        return total


@functools.partial(jax.jit, static_argnames="net")
def lpips(x: jax.Array, y: jax.Array, params: dict, net: str = "alex") -> jax.Array:
    """LPIPS distance per image pair, (N,); x, y (N, H, W, 3) in [0, 1]; params from ``load_lpips``."""
    return LPIPS(net).apply({"params": params}, x, y)
