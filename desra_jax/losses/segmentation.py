"""Losses of the artifact localizer (a binary segmentation): BCE with logits and soft Dice, and their weighted sum.

The deraining paper trains DeepLabV3+ on artifact masks without naming its loss; BCE + Dice is the
usual pair for a foreground that covers a small part of the image (BCE gives every pixel a gradient, Dice keeps a
small foreground from being drowned by the background). Inputs are NHWC: logits (N, H, W, 1) of any real value,
targets (N, H, W, 1) in [0, 1] (1 = artifact); each loss returns a scalar.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_same_shape(logits: jnp.ndarray, targets: jnp.ndarray) -> None:
    if logits.shape != targets.shape or logits.ndim != 4:
        raise ValueError(f"expected logits and targets of one (N, H, W, C) shape, got {logits.shape} and "
                         f"{targets.shape}")


def binary_cross_entropy_with_logits(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Mean over every element of -t log sigmoid(x) - (1 - t) log sigmoid(-x) (PyTorch's
    ``binary_cross_entropy_with_logits``), computed through log-sigmoid so large |x| neither overflows nor loses
    precision."""
    _check_same_shape(logits, targets)
    targets = targets.astype(logits.dtype)
    return jnp.mean(-targets * jax.nn.log_sigmoid(logits) - (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def soft_dice_loss(logits: jnp.ndarray, targets: jnp.ndarray, smooth: float = 1.0) -> jnp.ndarray:
    """1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s) per image, p = sigmoid(logits), averaged over the batch.

    The soft Dice of Milletari et al. (V-Net, 2016) with the squares of its denominator dropped (the form of
    most segmentation libraries). Sums run over (H, W, C) of each image, so every image weighs the same whatever
    its artifact area; the smoothing s = 1 pixel makes an image without artifacts give a loss that falls to 0 as
    its predictions do, instead of 0 / 0.
    """
    _check_same_shape(logits, targets)
    probabilities = jax.nn.sigmoid(logits)
    targets = targets.astype(probabilities.dtype)
    axes = (1, 2, 3)
    overlap = jnp.sum(probabilities * targets, axis=axes)
    total = jnp.sum(probabilities, axis=axes) + jnp.sum(targets, axis=axes)
    return jnp.mean(1.0 - (2.0 * overlap + smooth) / (total + smooth))


def segmentation_loss(logits: jnp.ndarray, targets: jnp.ndarray, bce_weight: float = 1.0, dice_weight: float = 1.0,
                      dice_smooth: float = 1.0) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """bce_weight * BCE + dice_weight * soft Dice; returns (total, {'l_bce', 'l_dice'}), the terms weighted.

    A zero weight drops its term (it is neither computed nor reported).
    """
    terms = {}
    if bce_weight:
        terms["l_bce"] = bce_weight * binary_cross_entropy_with_logits(logits, targets)
    if dice_weight:
        terms["l_dice"] = dice_weight * soft_dice_loss(logits, targets, dice_smooth)
    if not terms:
        raise ValueError("segmentation_loss: bce_weight and dice_weight are both 0; nothing to train on")
    return sum(terms.values()), terms
