"""Gaussian and Poisson noise of Real-ESRGAN's degradation, one draw per image, in JAX.

Follows BasicSR's ``basicsr/data/degradations.py`` (``random_add_gaussian_noise_pt``,
``random_add_poisson_noise_pt``): per image a noise level, and with probability ``gray_prob`` one noise field
shared by the three channels instead of one per channel; the result clipped to [0, 1], not rounded. One
departure: BasicSR draws a single gray Gaussian field for the whole batch (``torch.randn(h, w)``, scaled per
image); here every image has its own field, so images of a batch are independent.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: torchvision's ``rgb_to_grayscale`` weights, which BasicSR's Poisson noise uses for its gray noise.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _per_image(values: jnp.ndarray) -> jnp.ndarray:
    return values[:, None, None, None]


def gaussian_noise(key, images: jnp.ndarray, sigma: jnp.ndarray, gray: jnp.ndarray) -> jnp.ndarray:
    """BasicSR's ``generate_gaussian_noise_pt``: N(0, (sigma / 255)^2) per pixel and channel, or one field for
    all channels where ``gray``. images: (N, H, W, C); sigma: (N,) on the [0, 255] scale; gray: (N,) bool.
    Returns the (N, H, W, C) noise."""
    colour_key, gray_key = jax.random.split(key)
    colour = jax.random.normal(colour_key, images.shape, images.dtype)
    mono = jax.random.normal(gray_key, images.shape[:3] + (1,), images.dtype)
    return jnp.where(_per_image(gray), mono, colour) * _per_image(sigma) / 255.0


#: Poisson counts are drawn by inverting the CDF: every rate the noise meets is an 8-bit level q / 255 times a
#: power of two 2^l (l = 0..8), so the CDFs of all of them fit in one table; counts up to 511 (for the largest
#: rate, 256, the tail beyond is below 1e-20). One uniform and a 9-step binary search per sample, where
#: ``jax.random.poisson``'s loops draw a uniform field per step and cost more than the rest of the pipeline.
_MAX_COUNT = 512
_LEVEL_EXPONENTS = 9


@functools.lru_cache(maxsize=1)
def _poisson_cdf_table() -> np.ndarray:
    """(9 * 256, 512) float32: row l * 256 + q holds P(X <= k) for X ~ Poisson(q / 255 * 2^l), k = 0..511,
    computed in float64 from the log-pmf."""
    rates = (np.arange(256) / 255.0)[None, :] * (2.0 ** np.arange(_LEVEL_EXPONENTS))[:, None]
    k = np.arange(_MAX_COUNT)
    log_factorial = np.cumsum(np.log(np.maximum(k, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = k * np.log(rates[..., None]) - rates[..., None] - log_factorial
    log_pmf[..., 0] = -rates  # 0 * log(0) = 0 for the zero rate
    cdf = np.minimum(np.cumsum(np.exp(log_pmf), axis=-1), 1.0)
    cdf[..., -1] = 1.0
    return cdf.reshape(-1, _MAX_COUNT).astype(np.float32)


def _poisson_counts(key, level: jnp.ndarray, exponent: jnp.ndarray) -> jnp.ndarray:
    """Poisson(level / 255 * 2^exponent) samples as float32; level (int, 0..255) of any shape, exponent
    broadcastable to it (int, 0..8). Every element its own draw."""
    table = jnp.asarray(_poisson_cdf_table()).ravel()
    rows = (exponent * 256 + level) * _MAX_COUNT
    u = jax.random.uniform(key, level.shape)
    low, high = jnp.zeros_like(level), jnp.full_like(level, _MAX_COUNT - 1)
    for _ in range(_MAX_COUNT.bit_length() - 1):  # smallest k with P(X <= k) >= u
        middle = (low + high) // 2
        above = table[rows + middle] >= u
        low, high = jnp.where(above, low, middle + 1), jnp.where(above, middle, high)
    return low.astype(jnp.float32)


def _levels(quantised: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """log2 of 2^ceil(log2(number of distinct 8-bit values)) over the valid pixels of one (H, W, C) image."""
    bins = jnp.round(quantised * 255.0).astype(jnp.int32)
    present = jnp.zeros(256, jnp.int32).at[bins.ravel()].max(jnp.broadcast_to(valid, bins.shape).ravel())
    return jnp.sum(jnp.sum(present) > 2 ** jnp.arange(_LEVEL_EXPONENTS))


def _quantised(images: jnp.ndarray) -> jnp.ndarray:
    return jnp.clip(jnp.round(images * 255.0), 0, 255) / 255.0


def poisson_noise(key, images: jnp.ndarray, scale: jnp.ndarray, gray: jnp.ndarray, valid=None) -> jnp.ndarray:
    """BasicSR's ``generate_poisson_noise_pt``: Poisson(image x levels) / levels - image, the image rounded to
    8 bit and levels = 2^ceil(log2(its number of distinct values)), times ``scale``; where ``gray`` the noise of
    the gray image (torchvision's weights) for all channels.

    images: (N, H, W, 3) in [0, 1]; scale: (N,); gray: (N,) bool; valid: optional (N, H, W, 1) bool, the pixels
    whose values are counted (an image on a canvas). Returns the (N, H, W, 3) noise.
    """
    if valid is None:
        valid = jnp.ones(images.shape[:3] + (1,), bool)
    colour = _quantised(images)
    mono = _quantised(jnp.tensordot(images, jnp.asarray(_GRAY_WEIGHTS, images.dtype), axes=1)[..., None])
    exponent = jnp.where(gray, jax.vmap(_levels)(mono, valid), jax.vmap(_levels)(colour, valid))
    # One draw for both kinds: a gray image uses its first channel's counts for all three.
    quantised = jnp.where(_per_image(gray), jnp.broadcast_to(mono, images.shape), colour)
    level = jnp.round(quantised * 255.0).astype(jnp.int32)
    counts = _poisson_counts(key, level, _per_image(exponent))
    counts = jnp.where(_per_image(gray), counts[..., :1], counts)
    levels = _per_image(2.0 ** exponent.astype(images.dtype))
    return (counts / levels - quantised) * _per_image(scale)


def random_noise(
    key,
    images: jnp.ndarray,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_scale_range: tuple[float, float],
    gray_prob: float,
    valid=None,
) -> jnp.ndarray:
    """One noise stage of Real-ESRGAN's ``feed_data``: per image Gaussian noise with probability
    ``gaussian_prob`` (sigma uniform in ``sigma_range``, [0, 255] scale), otherwise Poisson noise (scale uniform
    in ``poisson_scale_range``); gray with probability ``gray_prob``; added and clipped to [0, 1].
    images: (N, H, W, 3) float32 in [0, 1]; valid as ``poisson_noise``. Returns the same shape."""
    n = images.shape[0]
    keys = jax.random.split(key, 6)
    sigma = jax.random.uniform(keys[0], (n,), minval=sigma_range[0], maxval=sigma_range[1])
    scale = jax.random.uniform(keys[1], (n,), minval=poisson_scale_range[0], maxval=poisson_scale_range[1])
    gray = jax.random.uniform(keys[2], (n,)) < gray_prob
    use_gaussian = jax.random.uniform(keys[3], (n,)) < gaussian_prob
    noise = jnp.where(
        _per_image(use_gaussian),
        gaussian_noise(keys[4], images, sigma, gray),
        poisson_noise(keys[5], images, scale, gray, valid),
    )
    return jnp.clip(images + noise, 0.0, 1.0)
