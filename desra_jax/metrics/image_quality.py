"""Full-reference image quality: PSNR and SSIM as BasicSR computes them (``basicsr/metrics/psnr_ssim.py``).

Inputs are batches (N, H, W, C) of float images in [0, 1]; the values are computed on the [0, 255] scale (peak
255) exactly as BasicSR's ``calculate_psnr`` / ``calculate_ssim`` do, so numbers compare with published tables:
``crop_border`` pixels are dropped on every side, ``test_y_channel`` evaluates the BT.601 luma of BasicSR's
``rgb2ycbcr(y_only=True)``, and SSIM uses the 11x11 Gaussian window (sigma 1.5) with 'valid' filtering, averaged
over the map and then over the channels. One value per image, shape (N,).

Nothing is rounded: BasicSR quantises only because its images come from 8-bit files (``tensor2img`` rounds to
uint8); these functions take the float images as they are. To reproduce numbers computed on saved 8-bit
images, quantise first (``jnp.round(x * 255) / 255``). Nor is anything clipped: clip model outputs to [0, 1]
before measuring, as BasicSR's ``tensor2img`` does.

All functions are jit-able; ``crop_border`` and ``test_y_channel`` are static (Python) arguments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: ITU-R BT.601 luma weights for R, G, B and offset, on [0, 1] inputs giving [16, 235] (BasicSR's rgb2ycbcr).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

#: SSIM's window (Wang et al. 2004; BasicSR: ``cv2.getGaussianKernel(11, 1.5)``) and constants on [0, 255].
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def rgb_to_y(images: jax.Array) -> jax.Array:
    """BT.601 luma Y of RGB images, as BasicSR's ``rgb2ycbcr(img, y_only=True)`` for float inputs.

    (..., 3) RGB in [0, 1] -> (..., 1) Y in [16 / 255, 235 / 255]:
    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255.
    """
    images = jnp.asarray(images)
    if images.shape[-1] != 3:
        raise ValueError(f"rgb_to_y: expected RGB images (..., 3), got shape {images.shape}")
    weights = jnp.asarray(_Y_WEIGHTS, dtype=_float_dtype(images))
    luma = jnp.tensordot(images, weights, axes=([-1], [0]), precision=jax.lax.Precision.HIGHEST) + _Y_OFFSET
    return (luma / 255.0)[..., None]


@functools.partial(jax.jit, static_argnames=("crop_border", "test_y_channel"))
def psnr(pred: jax.Array, target: jax.Array, crop_border: int = 0, test_y_channel: bool = False) -> jax.Array:
    """Peak signal-to-noise ratio in dB per image, BasicSR's ``calculate_psnr``.

    pred, target: (N, H, W, C) in [0, 1]. Returns (N,): 10 log10(255^2 / MSE) with the MSE over all pixels and
    channels on the [0, 255] scale; ``inf`` for identical images.
    """
    pred, target = _prepare("psnr", pred, target, crop_border, test_y_channel)
    mse = jnp.mean((pred - target) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(255.0**2 / mse)


@functools.partial(jax.jit, static_argnames=("crop_border", "test_y_channel"))
def ssim(pred: jax.Array, target: jax.Array, crop_border: int = 0, test_y_channel: bool = False) -> jax.Array:
    """Structural similarity per image, BasicSR's ``calculate_ssim`` (Wang et al. 2004, eq. 13).

    pred, target: (N, H, W, C) in [0, 1], at least 11x11 after cropping. Returns (N,): the mean of the SSIM map
    over the 'valid' region (5 pixels lost per side to the 11x11 window) of each channel, averaged over the
    channels; 1 for identical images.
    """
    pred, target = _prepare("ssim", pred, target, crop_border, test_y_channel)
    height, width = pred.shape[1:3]
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim: expected images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after cropping, got {height}x{width}"
        )
    # Second moments as E[x^2] - E[x]^2 cancel badly in float32 on the [0, 255] scale; shifting both images by
    # the same per-channel constant leaves variances and covariance unchanged and keeps the terms small.
    shift = jnp.mean(target, axis=(1, 2), keepdims=True)
    x, y = pred - shift, target - shift
    moments = _gaussian_filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1))
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = jnp.split(moments, 5, axis=-1)
    var_x = mean_xx - mean_x**2
    var_y = mean_yy - mean_y**2
    cov_xy = mean_xy - mean_x * mean_y
    mu_x, mu_y = mean_x + shift, mean_y + shift
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov_xy + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return jnp.mean(ssim_map, axis=(1, 2, 3))


def _float_dtype(x: jax.Array) -> jnp.dtype:
    return jnp.promote_types(x.dtype, jnp.float32)


def _prepare(
    name: str, pred: jax.Array, target: jax.Array, crop_border: int, test_y_channel: bool
) -> tuple[jax.Array, jax.Array]:
    """Checks shapes, crops the border, optionally takes luma, and scales to [0, 255] as BasicSR does."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            f"{name}: expected pred and target of the same (N, H, W, C) shape, got {pred.shape} and {target.shape}"
        )
    height, width = pred.shape[1:3]
    if crop_border < 0 or 2 * crop_border >= min(height, width):
        raise ValueError(f"{name}: crop_border={crop_border} leaves nothing of images of shape {pred.shape}")
    if crop_border:
        pred = pred[:, crop_border:-crop_border, crop_border:-crop_border]
        target = target[:, crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    dtype = _float_dtype(pred)
    return pred.astype(dtype) * 255.0, target.astype(dtype) * 255.0


def gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """The 1-D factor of SSIM's window (size, ) float64, as ``cv2.getGaussianKernel(11, 1.5)``: sampled
    Gaussian, sum 1. DeSRA's indicator uses the same window (detection.indicator)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _gaussian_filter_valid(images: jax.Array) -> jax.Array:
    """Each channel of (N, H, W, C) filtered by the 11x11 Gaussian window -> (N, H - 10, W - 10, C).

    The 2-D window is the outer product of the 1-D one (as in BasicSR), applied as two 1-D depthwise passes.
    """
    channels = images.shape[-1]
    kernel = jnp.asarray(gaussian_window(), dtype=images.dtype)
    for window_shape in ((_SSIM_WINDOW, 1), (1, _SSIM_WINDOW)):
        depthwise = jnp.broadcast_to(kernel.reshape(window_shape + (1, 1)), window_shape + (1, channels))
        images = jax.lax.conv_general_dilated(
            images,
            depthwise,
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
            precision=jax.lax.Precision.HIGHEST,
        )
    return images
