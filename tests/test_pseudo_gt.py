"""Pseudo ground truth (eq. 10) and mask feathering on bundled photographs."""

import numpy as np
import pytest

from desra_jax.fusion import feather_mask, pseudo_gt
from tests.conftest import photo_crop


def _pair_and_mask():
    gan = photo_crop("astronaut", (64, 80), 40, 200)
    mse = photo_crop("astronaut", (64, 80), 41, 201)  # a slightly shifted crop: different content per pixel
    mask = np.zeros((1, 64, 80), bool)
    mask[0, 10:30, 20:50] = True
    return gan, mse, mask


def test_pseudo_gt_is_eq10_with_a_hard_mask():
    gan, mse, mask = _pair_and_mask()
    expected = np.where(mask[..., None], mse, gan)
    np.testing.assert_array_equal(np.asarray(pseudo_gt(gan, mse, mask)), expected)


def test_feathering_keeps_the_artifact_replaced_and_fades_outward():
    gan, mse, mask = _pair_and_mask()
    weight = np.asarray(feather_mask(mask, sigma=2.0))[0]
    assert np.all(weight[mask[0]] == 1)
    # Outside: the Gaussian tail of the mask, computed here as a float64 2-D convolution.
    offsets = np.arange(-6, 7)
    kernel = np.exp(-(offsets**2) / 8.0)
    kernel /= kernel.sum()
    padded = np.pad(mask[0].astype(np.float64), 6)
    blurred = np.array([[np.sum(padded[i : i + 13, j : j + 13] * np.outer(kernel, kernel)) for j in range(80)]
                        for i in range(64)])
    np.testing.assert_allclose(weight[~mask[0]], blurred[~mask[0]], atol=1e-6)
    column = weight[:10, 35]  # rows above the region, which starts at row 10
    assert np.all(np.diff(column) >= 0) and column[-1] > 0.3 and np.all(column[:4] == 0)  # window radius 6
    blended = np.asarray(pseudo_gt(gan, mse, mask, feather=2.0))
    np.testing.assert_allclose(blended, weight[None, ..., None] * mse + (1 - weight[None, ..., None]) * gan, atol=1e-6)


def test_pseudo_gt_names_mismatched_shapes():
    gan, mse, mask = _pair_and_mask()
    with pytest.raises(ValueError, match=r"\(1, 64, 80\)"):
        pseudo_gt(gan, mse[:, :32], mask)
