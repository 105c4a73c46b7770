"""Pixel losses between a super-resolved batch and its ground truth (BasicSR's L1Loss, MSELoss, CharbonnierLoss).

Inputs are NHWC float arrays of the same shape (usually (N, H, W, 3) in [0, 1]); each loss returns a scalar, the
mean over every element. An optional ``weight`` that broadcasts against the inputs (e.g. a per-pixel mask of shape
(N, H, W, 1)) turns the mean into a weighted mean, sum(weight * loss) / sum(weight), as BasicSR's ``weighted_loss``
does; an all-zero weight gives 0.
"""

from __future__ import annotations

import jax.numpy as jnp


def _check_same_shape(pred: jnp.ndarray, target: jnp.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")


def _mean(per_element: jnp.ndarray, weight: jnp.ndarray | None) -> jnp.ndarray:
    """Mean of ``per_element``, or its ``weight``-weighted mean (weight broadcast to its shape)."""
    if weight is None:
        return jnp.mean(per_element)
    weight = jnp.broadcast_to(weight, per_element.shape).astype(per_element.dtype)
    total = jnp.sum(weight)
    # An all-zero mask means no pixel counts: a zero loss, not 0 / 0.
    return jnp.where(total > 0, jnp.sum(weight * per_element) / jnp.where(total > 0, total, 1.0), 0.0)


def safe_sqrt(x: jnp.ndarray) -> jnp.ndarray:
    """sqrt(x) for x >= 0 whose gradient at x = 0 is 0, not the NaN of jnp.sqrt; norms of differences use it so
    that identical inputs (a zero difference) still give finite gradients."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def l1_loss(pred: jnp.ndarray, target: jnp.ndarray, weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean absolute error, mean |pred - target| (BasicSR ``L1Loss``; ESRGAN's eta * L_1 term)."""
    _check_same_shape(pred, target)
    return _mean(jnp.abs(pred - target), weight)


def l2_loss(pred: jnp.ndarray, target: jnp.ndarray, weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean squared error, mean (pred - target)^2 (BasicSR ``MSELoss``)."""
    _check_same_shape(pred, target)
    return _mean(jnp.square(pred - target), weight)


def charbonnier_loss(
    pred: jnp.ndarray, target: jnp.ndarray, eps: float = 1e-12, weight: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Charbonnier loss, mean sqrt((pred - target)^2 + eps), a differentiable L1 (BasicSR ``CharbonnierLoss``).

    ``eps`` sits inside the square root as in BasicSR, so identical inputs give sqrt(eps), not 0.
    """
    _check_same_shape(pred, target)
    return _mean(jnp.sqrt(jnp.square(pred - target) + eps), weight)
