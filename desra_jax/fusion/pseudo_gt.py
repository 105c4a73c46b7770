"""Pseudo ground truth for DeSRA fine-tuning (eq. 10): the GAN-SR result with its detected artifact regions
replaced by the MSE-SR result, y~ = M * y_MSE + (1 - M) * y_GAN."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from desra_jax.metrics.image_quality import gaussian_window


def feather_mask(mask: jax.Array, sigma: float) -> jax.Array:
    """Softens the outer edge of binary masks (N, H, W): max(mask, Gaussian blur of mask) in [0, 1].

    Pixels inside the mask stay 1 (a detected artifact is always fully replaced); outside, the weight falls off
    with the Gaussian of standard deviation `sigma` pixels (window 2 * ceil(3 sigma) + 1, zero beyond the
    image border). sigma = 0 returns the mask as float32.
    """
    mask = jnp.asarray(mask, jnp.float32)
    if mask.ndim != 3:
        raise ValueError(f"mask: expected (N, H, W), got shape {mask.shape}")
    if sigma < 0:
        raise ValueError(f"sigma: expected >= 0, got {sigma}")
    if sigma == 0:
        return mask
    radius = math.ceil(3 * sigma)
    kernel = jnp.asarray(gaussian_window(2 * radius + 1, sigma), jnp.float32)
    blurred = mask[..., None]
    for window_shape in ((2 * radius + 1, 1), (1, 2 * radius + 1)):
        blurred = jax.lax.conv_general_dilated(
            blurred, kernel.reshape(window_shape + (1, 1)), (1, 1), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    return jnp.maximum(mask, blurred[..., 0])


def pseudo_gt(gan: jax.Array, mse: jax.Array, mask: jax.Array, feather: float = 0.0) -> jax.Array:
    """Eq. 10: M * mse + (1 - M) * gan for (N, H, W, C) images and (N, H, W) artifact masks (1 = artifact).

    feather: Gaussian sigma in pixels by which the blend extends outward from each artifact region (see
    `feather_mask`); 0, the default, is the paper's hard mask.
    """
    gan, mse = jnp.asarray(gan), jnp.asarray(mse)
    if gan.shape != mse.shape or gan.ndim != 4 or jnp.shape(mask) != gan.shape[:3]:
        raise ValueError(
            f"expected GAN-SR and MSE-SR (N, H, W, C) of one shape and a mask (N, H, W), got {gan.shape}, "
            f"{mse.shape} and {jnp.shape(mask)}"
        )
    weight = feather_mask(mask, feather)[..., None]
    return weight * mse + (1.0 - weight) * gan
