"""Pixel losses against direct float64 numpy evaluations on crops of the bundled photographs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.losses import charbonnier_loss, l1_loss, l2_loss
from desra_jax.losses.pixel import safe_sqrt
from tests.conftest import photo_crop


@pytest.fixture
def pred_and_target(photo_batch):
    """Ground truth: two photographs; prediction: the same scenes two pixels to the right."""
    target = photo_batch(32, 32)
    pred = np.concatenate([photo_crop("astronaut", (32, 32), 100, 152), photo_crop("coffee", (32, 32), 50, 202)])
    return pred, target


def test_pixel_losses_match_numpy(pred_and_target):
    pred, target = pred_and_target
    diff = pred.astype(np.float64) - target.astype(np.float64)
    assert np.abs(diff).mean() > 0.01  # a real difference, so the comparison can fail
    np.testing.assert_allclose(jax.jit(l1_loss)(pred, target), np.abs(diff).mean(), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(l2_loss)(pred, target), np.square(diff).mean(), rtol=1e-5)
    charbonnier = jax.jit(charbonnier_loss, static_argnames="eps")
    np.testing.assert_allclose(charbonnier(pred, target), np.sqrt(diff**2 + 1e-12).mean(), rtol=1e-5)
    np.testing.assert_allclose(charbonnier(pred, target, eps=1e-3), np.sqrt(diff**2 + 1e-3).mean(), rtol=1e-5)


def test_weighted_mean_over_a_mask(pred_and_target):
    pred, target = pred_and_target
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[0, 4:20, 8:30] = 1.0
    mask[1, 10:12] = 0.5
    diff = np.abs(pred.astype(np.float64) - target)
    weights = np.broadcast_to(mask, diff.shape)
    expected = (weights * diff).sum() / weights.sum()
    np.testing.assert_allclose(jax.jit(l1_loss)(pred, target, mask), expected, rtol=1e-5)
    assert float(l1_loss(pred, target, np.zeros_like(mask))) == 0.0


def test_identical_images_and_errors(pred_and_target):
    _, target = pred_and_target
    assert float(l1_loss(target, target)) == 0.0
    assert float(l2_loss(target, target)) == 0.0
    np.testing.assert_allclose(charbonnier_loss(target, target), 1e-6, rtol=1e-4)  # sqrt(eps), as in BasicSR
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(target, target[:, :16])


def test_safe_sqrt_has_a_finite_gradient_at_zero():
    values = jnp.array([0.0, 4.0])
    np.testing.assert_allclose(safe_sqrt(values), [0.0, 2.0])
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(safe_sqrt(x)))(values), [0.0, 0.25])
