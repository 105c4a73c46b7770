"""SRVGGNetCompact, Real-ESRGAN's compact VGG-style generator (``srvgg_arch.py``), as a flax.linen module.

A plain stack at LR resolution, ``conv -> act -> (conv -> act) x num_conv -> conv`` to
``num_out_ch * upscale**2`` channels, pixel shuffle, plus the nearest-upsampled input, so the network learns a
residual over nearest upsampling. Real-ESRGAN ships it as realesr-animevideov3 (num_feat 64, num_conv 16) and
realesr-general-x4v3 (num_feat 64, num_conv 32), both with PReLU. Submodule names mirror the PyTorch
``body`` list: ``body_0`` is ``body.0`` (the first conv), ``body_1`` its activation, ..., ``body_{2 num_conv + 2}``
the last conv; only PReLU activations hold parameters.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.models.layers import TORCH_CONV_INIT, pixel_shuffle, upsample_nearest

#: Negative slope of srvgg_arch's ``leakyrelu`` activation.
LEAKY_SLOPE = 0.1
ACTIVATIONS = ("prelu", "relu", "leakyrelu")
# Keys' cubic convolution parameter of ncnn's Interp and torch's bicubic F.interpolate (OpenCV's too).
_CUBIC_A = -0.75




def cubic_resize_matrix(size: int, out_size: int) -> np.ndarray:
    """(out_size, size) weights of 1-D bicubic resampling as ncnn's Interp (resize_type 3, align_corner 0).

    Keys' cubic with a = -0.75 at half-pixel centres, ``src = (dst + 0.5) * size / out_size - 0.5``, taps that
    fall outside the row clamped to the edge pixel, no antialiasing: the same as torch's
    ``F.interpolate(mode='bicubic', align_corners=False)``.
    """
    a = _CUBIC_A
    scale = size / out_size
    src = np.float32((np.arange(out_size) + 0.5) * scale - 0.5)
    left = np.floor(src).astype(np.int64)
    t = (src - left).astype(np.float32)
    taps = np.stack(
        [
            a * (t + 1) ** 3 - 5 * a * (t + 1) ** 2 + 8 * a * (t + 1) - 4 * a,
            (a + 2) * t**3 - (a + 3) * t**2 + 1,
            (a + 2) * (1 - t) ** 3 - (a + 3) * (1 - t) ** 2 + 1,
        ],
        axis=1,
    )
    taps = np.concatenate([taps, 1 - taps.sum(axis=1, keepdims=True)], axis=1)
    matrix = np.zeros((out_size, size), np.float32)
    columns = np.clip(left[:, None] + np.arange(-1, 3)[None], 0, size - 1)
    np.add.at(matrix, (np.repeat(np.arange(out_size), 4), columns.ravel()), taps.ravel())
    return matrix


def resize_bicubic(x: jax.Array, scale: float) -> jax.Array:
    """(N, H, W, C) -> (N, int(H scale), int(W scale), C) by :func:`cubic_resize_matrix` along each axis."""
    _, h, w, _ = x.shape
    rows = jnp.asarray(cubic_resize_matrix(h, int(h * scale)), x.dtype)
    cols = jnp.asarray(cubic_resize_matrix(w, int(w * scale)), x.dtype)
    precision = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=precision)
    return jnp.einsum("pw,nowc->nopc", cols, x, precision=precision)


class PReLU(nn.Module):
    """Per-channel PReLU, ``max(x, 0) + negative_slope * min(x, 0)``, as torch's ``nn.PReLU(num_parameters)``
    (slopes initialised to 0.25). (..., features) -> same shape."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param("negative_slope", nn.initializers.constant(0.25), (self.features,), jnp.float32)
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact generator: (N, H, W, num_in_ch) in [0, 1] -> (N, s H, s W, num_out_ch).

    ``s = upscale * out_resize``. ``out_resize`` (1 by default: none) resizes the output bicubically as ncnn's
    Interp does: Real-ESRGAN ships realesr-animevideov3 x2 and x3 for ncnn as the x4 network followed by a
    bicubic x0.5 / x0.75. Parameters are float32; ``dtype`` is the computation and output dtype. The output
    is not clamped.
    """

    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_conv: int = 16
    upscale: int = 4
    act_type: str = "prelu"
    out_resize: float = 1.0
    dtype: Any = jnp.float32

    def _activation(self, name: str):
        if self.act_type == "prelu":
            return PReLU(self.num_feat, name=name)
        if self.act_type == "relu":
            return nn.relu
        if self.act_type == "leakyrelu":
            return functools.partial(nn.leaky_relu, negative_slope=LEAKY_SLOPE)
        raise ValueError(f"SRVGGNetCompact: act_type must be one of {ACTIVATIONS}, got {self.act_type!r}")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
            raise ValueError(f"SRVGGNetCompact: expected (N, H, W, {self.num_in_ch}) input, got shape {x.shape}")
        conv = functools.partial(
            nn.Conv, kernel_size=(3, 3), padding=1, dtype=self.dtype, param_dtype=jnp.float32,
            kernel_init=TORCH_CONV_INIT,
        )
        x = x.astype(self.dtype)
        out = x
        for i in range(self.num_conv + 1):
            out = conv(self.num_feat, name=f"body_{2 * i}")(out)
            out = self._activation(f"body_{2 * i + 1}")(out)
        out = conv(self.num_out_ch * self.upscale**2, name=f"body_{2 * self.num_conv + 2}")(out)
        out = pixel_shuffle(out, self.upscale) + upsample_nearest(x, self.upscale)
        if self.out_resize != 1:
            out = resize_bicubic(out, self.out_resize)
        return out
