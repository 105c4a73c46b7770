"""RRDBNet, the ESRGAN / Real-ESRGAN generator (BasicSR ``rrdbnet_arch.py``), as a flax.linen module.

Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks" (ECCVW 2018), Fig. 4:
a trunk of Residual-in-Residual Dense Blocks (RRDB) at LR resolution, then nearest x2 upsampling twice.
Real-ESRGAN (Wang et al., ICCVW 2021) reuses the x4 network for x2 and x1 by pixel-unshuffling the input
first. Submodule names mirror BasicSR's state_dict keys (``conv_first``, ``body.N.rdbK.convM``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``) with ``body_N`` for ``body.N``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from desra_jax.models.layers import TORCH_CONV_INIT, leaky_relu, pixel_unshuffle, upsample_nearest

#: Residual scaling inside each dense block and around each RRDB (ESRGAN Sec. 3.2, beta = 0.2).
RESIDUAL_SCALE = 0.2

# BasicSR initialises the dense-block convolutions with Kaiming-normal weights scaled by 0.1 and zero biases
# (``default_init_weights(..., 0.1)``): a small initial residual keeps the deep trunk close to identity.
_dense_kernel_init = nn.initializers.variance_scaling(2.0 * 0.1**2, "fan_in", "normal")




def _conv3x3(features: int, name: str, dtype: Any, kernel_init=TORCH_CONV_INIT) -> nn.Conv:
    return nn.Conv(
        features,
        (3, 3),
        padding=1,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        name=name,
    )


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions; ``x + 0.2 * conv5(...)`` (ESRGAN Fig. 4, BasicSR
    ``ResidualDenseBlock``). (N, H, W, num_feat) -> same shape."""

    num_feat: int = 64
    num_grow_ch: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv3x3, dtype=self.dtype, kernel_init=_dense_kernel_init)
        x1 = leaky_relu(conv(self.num_grow_ch, "conv1")(x))
        x2 = leaky_relu(conv(self.num_grow_ch, "conv2")(jnp.concatenate([x, x1], axis=-1)))
        x3 = leaky_relu(conv(self.num_grow_ch, "conv3")(jnp.concatenate([x, x1, x2], axis=-1)))
        x4 = leaky_relu(conv(self.num_grow_ch, "conv4")(jnp.concatenate([x, x1, x2, x3], axis=-1)))
        x5 = conv(self.num_feat, "conv5")(jnp.concatenate([x, x1, x2, x3, x4], axis=-1))
        return x + RESIDUAL_SCALE * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, ``x + 0.2 * rdb3(rdb2(rdb1(x)))``.
    (N, H, W, num_feat) -> same shape."""

    num_feat: int = 64
    num_grow_ch: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        for k in (1, 2, 3):
            out = ResidualDenseBlock(self.num_feat, self.num_grow_ch, self.dtype, name=f"rdb{k}")(out)
        return x + RESIDUAL_SCALE * out


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN generator: (N, H, W, num_in_ch) in [0, 1] -> (N, scale H, scale W, num_out_ch).

    The trunk always upsamples x4; scale 2 and 1 pixel-unshuffle the input by 2 or 4 first (Real-ESRGAN), so
    H and W must be multiples of 2 or 4 there. The output is not clamped (BasicSR clamps when saving images).
    Parameters are float32; ``dtype`` is the computation dtype (e.g. ``jnp.bfloat16`` for mixed precision)
    and the output's dtype. Defaults are ESRGAN's: 23 blocks, 64 features, growth 32.
    """

    scale: int = 4
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    num_in_ch: int = 3
    num_out_ch: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
            raise ValueError(f"RRDBNet: expected (N, H, W, {self.num_in_ch}) input, got shape {x.shape}")
        unshuffle = {4: 1, 2: 2, 1: 4}.get(self.scale)
        if unshuffle is None:
            raise ValueError(f"RRDBNet: scale must be 1, 2 or 4, got {self.scale}")
        conv = functools.partial(_conv3x3, dtype=self.dtype)

        x = x.astype(self.dtype)
        if unshuffle > 1:
            x = pixel_unshuffle(x, unshuffle)
        feat = conv(self.num_feat, "conv_first")(x)
        body = feat
        for i in range(self.num_block):
            body = RRDB(self.num_feat, self.num_grow_ch, self.dtype, name=f"body_{i}")(body)
        feat = feat + conv(self.num_feat, "conv_body")(body)
        feat = leaky_relu(conv(self.num_feat, "conv_up1")(upsample_nearest(feat, 2)))
        feat = leaky_relu(conv(self.num_feat, "conv_up2")(upsample_nearest(feat, 2)))
        return conv(self.num_out_ch, "conv_last")(leaky_relu(conv(self.num_feat, "conv_hr")(feat)))
