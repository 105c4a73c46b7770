"""Gaussian and Poisson noise of Real-ESRGAN's degradation, one draw per image, in JAX.

Follows BasicSR's ``basicsr/data/degradations.py`` (``random_add_gaussian_noise_pt``,
``random_add_poisson_noise_pt``): per image a noise level, and with probability ``gray_prob`` one noise field
shared by the three channels instead of one per channel; the result clipped to [0, 1], not rounded. One
departure: BasicSR draws a single gray Gaussian field for the whole batch (``torch.randn(h, w)``, scaled per
image); here every image has its own field, so images of a batch are independent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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


#: Below this rate Poisson counts are drawn by inverting the CDF (``_SMALL_RATE_TERMS`` terms leave a tail below
#: 1e-12), above it by ``jax.random.poisson``'s transformed rejection; its Knuth loop for small rates draws a
#: uniform field per count and is most of the noise's time on a CPU.
_SMALL_RATE = 10.0
_SMALL_RATE_TERMS = 40


def _poisson_counts(key, rate: jnp.ndarray) -> jnp.ndarray:
    """Poisson(rate) samples, float32 of rate's shape, every element its own draw."""
    small = rate < _SMALL_RATE
    uniform_key, large_key = jax.random.split(key)
    large = jax.random.poisson(large_key, jnp.where(small, 0.0, rate), rate.shape).astype(rate.dtype)
    u = jax.random.uniform(uniform_key, rate.shape, rate.dtype)
    small_rate = jnp.where(small, rate, 0.0)

    def add_term(j, carry):
        probability, cdf, count = carry
        probability = probability * small_rate / j
        cdf = cdf + probability
        return probability, cdf, count + (u > cdf)

    probability = jnp.exp(-small_rate)
    start = (probability, probability, (u > probability).astype(rate.dtype))
    count = jax.lax.fori_loop(1, _SMALL_RATE_TERMS, add_term, start)[2]
    return jnp.where(small, count, large)


def _levels(quantised: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """2^ceil(log2(number of distinct 8-bit values)) over the valid pixels of one (H, W, C) image."""
    bins = jnp.round(quantised * 255.0).astype(jnp.int32)
    present = jnp.zeros(256, jnp.int32).at[bins.ravel()].max(jnp.broadcast_to(valid, bins.shape).ravel())
    distinct = jnp.sum(present)
    return (2.0 ** jnp.sum(distinct > 2 ** jnp.arange(9))).astype(jnp.float32)


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
    levels = jnp.where(gray, jax.vmap(_levels)(mono, valid), jax.vmap(_levels)(colour, valid))
    # One draw for both kinds: a gray image uses its first channel's counts for all three.
    quantised = jnp.where(_per_image(gray), jnp.broadcast_to(mono, images.shape), colour)
    counts = _poisson_counts(key, quantised * _per_image(levels))
    counts = jnp.where(_per_image(gray), counts[..., :1], counts)
    return (counts / _per_image(levels) - quantised) * _per_image(scale)


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
