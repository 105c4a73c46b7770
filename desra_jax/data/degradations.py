"""Degradations that make LR training images from HR ones: the entry point of ``desra_jax.data``.

- Real-ESRGAN's second-order degradation, jitted and batched on the device: ``realesrgan_degrade(key, hr,
  settings)`` with a frozen ``RealESRGANSettings`` (``realesrgan_settings()``: the released ones), the GT
  sharpening ``usm_sharp``, and the training-pair pool (``pair_pool_init``, ``pair_pool_update``). The pieces
  live in ``kernels`` (blur and sinc kernels, ``filter2d``, USM), ``interpolate`` (torch's resize modes),
  ``noise``, ``jpeg`` (DiffJPEG) and ``realesrgan_degradation`` (the pipeline and the settings, the pool).
- The bicubic degradation that made DIV2K's LR images: MATLAB's ``imresize``, numpy, on the host (below).

The bicubic follows BasicSR's ``basicsr/utils/matlab_functions.py`` (``imresize``, ``calculate_weights_indices``), which
reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` with antialiasing:

- Keys' cubic kernel with a = -0.5, support 4 pixels; when downsampling (scale < 1) the kernel is stretched by
  1 / scale (antialiasing), so every output pixel averages 4 / scale input pixels;
- output pixel x (1-based) samples the input at u = x / scale + 0.5 (1 - 1 / scale) (pixel centres aligned);
- the weights of each output pixel are normalised to sum 1;
- outside the image the input is mirrored with the edge pixel repeated (``numpy.pad(mode='symmetric')``).

The two axes are resized separately (height first, as BasicSR). Nothing is rounded or clipped: MATLAB rounded
because DIV2K's files are 8-bit; here images stay float, so bicubic overshoot can leave [0, 1] slightly.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from desra_jax.data.kernels import filter2d, usm_sharp
from desra_jax.data.realesrgan_degradation import (
    PairPool,
    RealESRGANSettings,
    pair_pool_init,
    pair_pool_update,
    realesrgan_degrade,
    realesrgan_settings,
)

__all__ = [
    "PairPool",
    "RealESRGANSettings",
    "bicubic_downsample",
    "bicubic_upsample",
    "filter2d",
    "imresize",
    "pair_pool_init",
    "pair_pool_update",
    "realesrgan_degrade",
    "realesrgan_settings",
    "usm_sharp",
]

#: Keys' cubic convolution parameter used by MATLAB's and BasicSR's bicubic.
_CUBIC_A = -0.5
#: Support of the cubic kernel in input pixels, before antialiasing stretches it.
_KERNEL_WIDTH = 4.0


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB-style antialiased bicubic resize by ``scale`` (BasicSR's ``matlab_functions.imresize``).

    image: (..., H, W, C) float. Returns float32 (..., ceil(H * scale), ceil(W * scale), C), the output size
    MATLAB chooses for a scale factor.
    """
    image = np.asarray(image)
    if image.ndim < 3:
        raise ValueError(f"imresize: expected an image (..., H, W, C), got shape {image.shape}")
    if not scale > 0:
        raise ValueError(f"imresize: expected a positive scale, got {scale}")
    in_h, in_w = image.shape[-3:-1]
    out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    rows = _resize_matrix(in_h, out_h, float(scale))
    cols = _resize_matrix(in_w, out_w, float(scale))
    resized = np.einsum("oh,...hwc->...owc", rows, image.astype(np.float64), optimize=True)
    resized = np.einsum("pw,...owc->...opc", cols, resized, optimize=True)
    return resized.astype(np.float32)


def bicubic_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image of an HR image as in DIV2K: ``imresize(hr, 1 / scale)``.

    hr: (..., H, W, C) float with H and W divisible by the integer ``scale``. Returns float32
    (..., H / scale, W / scale, C).
    """
    hr = np.asarray(hr)
    _check_integer_scale(scale)
    if hr.ndim < 3 or hr.shape[-3] % scale or hr.shape[-2] % scale:
        raise ValueError(
            f"bicubic_downsample: expected (..., H, W, C) with H and W divisible by {scale}, got shape {hr.shape}"
        )
    return imresize(hr, 1.0 / scale)


def bicubic_upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: ``imresize(lr, scale)``, (..., h, w, C) -> float32 (..., h * scale, w * scale, C)."""
    _check_integer_scale(scale)
    return imresize(lr, float(scale))


def _check_integer_scale(scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"expected a positive integer scale, got {scale!r}")


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), zero outside |x| < 2."""
    a = _CUBIC_A
    absx = np.abs(x)
    near = ((a + 2) * absx - (a + 3)) * absx**2 + 1
    far = ((a * absx - 5 * a) * absx + 8 * a) * absx - 4 * a
    return np.where(absx <= 1, near, np.where(absx < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def _resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """The (out_length, in_length) float64 matrix that resizes one axis (BasicSR's calculate_weights_indices).

    Taps that fall outside [0, in_length) are folded back onto the pixels that symmetric padding would copy
    there, so the matrix applies the mirrored border without padding the image.
    """
    antialias = scale < 1
    kernel_width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH
    # 0-based form of MATLAB's u = x / scale + 0.5 (1 - 1 / scale) for 1-based x.
    centres = (np.arange(out_length) + 0.5) / scale - 0.5
    taps = math.ceil(kernel_width) + 2
    first = np.floor(centres - kernel_width / 2)
    indices = first[:, None] + np.arange(taps)[None, :]
    distance = centres[:, None] - indices
    weights = scale * _cubic(distance * scale) if antialias else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((out_length, in_length))
    rows = np.repeat(np.arange(out_length), taps)
    np.add.at(matrix, (rows, _mirror(indices.astype(np.int64), in_length).ravel()), weights.ravel())
    matrix.flags.writeable = False
    return matrix


def _mirror(indices: np.ndarray, length: int) -> np.ndarray:
    """Maps any integer index into [0, length) as ``numpy.pad(mode='symmetric')`` would (edge repeated)."""
    period = np.mod(indices, 2 * length)
    return np.where(period < length, period, 2 * length - 1 - period)
