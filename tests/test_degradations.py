"""MATLAB-style bicubic resize: invariants, parity with jax.image.resize inside, the mirrored border by hand."""

import jax
import numpy as np
import pytest

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample, imresize
from tests.conftest import photo_crop


def _keys_cubic(x: float) -> float:
    """Keys (1981) cubic convolution kernel, a = -0.5, written out for the hand evaluation."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x < 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _matlab_downsample_pixel(image: np.ndarray, row: int, col: int, scale: int) -> np.ndarray:
    """One output pixel of MATLAB's imresize(image, 1 / scale, 'bicubic'), float64, straight from the definition:
    centre u = (i + 0.5) * scale - 0.5, antialiased kernel cubic(d / scale) / scale over |d| < 2 * scale,
    weights normalised, taps outside the image mirrored with the edge pixel repeated."""
    height, width = image.shape[:2]

    def taps(centre: float, length: int) -> tuple[list[int], np.ndarray]:
        indices = range(int(np.floor(centre - 2 * scale)), int(np.ceil(centre + 2 * scale)) + 1)
        weights = np.array([_keys_cubic((centre - k) / scale) / scale for k in indices])
        mirrored = [-k - 1 if k < 0 else 2 * length - 1 - k if k >= length else k for k in indices]
        return mirrored, weights / weights.sum()

    rows, row_weights = taps((row + 0.5) * scale - 0.5, height)
    cols, col_weights = taps((col + 0.5) * scale - 0.5, width)
    block = image.astype(np.float64)[np.ix_(rows, cols)]
    return np.einsum("r,c,rcx->x", row_weights, col_weights, block)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_constant_image_stays_constant(scale):
    constant = np.full((24, 36, 3), 0.37, dtype=np.float32)
    np.testing.assert_allclose(bicubic_downsample(constant, scale), 0.37, atol=1e-6)
    np.testing.assert_allclose(bicubic_upsample(constant, scale), 0.37, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_linear_ramp_is_reproduced_in_the_interior(scale):
    # Keys' kernel reproduces linear functions; only the mirrored border bends the ramp.
    height, width = 32, 48
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = np.stack([0.01 * rows + 0.005 * cols, 0.02 * cols, 0.8 - 0.015 * rows], axis=-1).astype(np.float32)
    lr = bicubic_downsample(ramp, scale)
    lr_rows, lr_cols = np.meshgrid((np.arange(height // scale) + 0.5) * scale - 0.5,
                                   (np.arange(width // scale) + 0.5) * scale - 0.5, indexing="ij")
    expected = np.stack([0.01 * lr_rows + 0.005 * lr_cols, 0.02 * lr_cols, 0.8 - 0.015 * lr_rows], axis=-1)
    np.testing.assert_allclose(lr[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-5)
    assert np.abs(lr[0, 0] - expected[0, 0]).max() > 1e-3  # the border is mirrored, not extrapolated


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_interior_matches_jax_antialiased_bicubic(scale):
    hr = photo_crop("astronaut", (96, 72), 120, 160)[0]
    lr = bicubic_downsample(hr, scale)
    assert lr.shape == (96 // scale, 72 // scale, 3) and lr.dtype == np.float32
    reference = np.asarray(jax.image.resize(hr, lr.shape, method="bicubic", antialias=True))
    # jax renormalises over in-image taps instead of mirroring: equal wherever the 4 * scale support is inside.
    np.testing.assert_allclose(lr[2:-2, 2:-2], reference[2:-2, 2:-2], atol=1e-5)
    assert np.abs(lr - reference).max() > 1e-3

    up = bicubic_upsample(lr, scale)
    assert up.shape == hr.shape
    reference = np.asarray(jax.image.resize(lr, up.shape, method="bicubic"))
    margin = 2 * scale
    np.testing.assert_allclose(up[margin:-margin, margin:-margin], reference[margin:-margin, margin:-margin], atol=1e-5)


def test_border_pixels_match_hand_evaluation_with_mirror_padding():
    hr = photo_crop("coffee", (64, 48), 60, 220)[0]
    lr = bicubic_downsample(hr, 4)
    for row, col in [(0, 0), (0, 5), (1, 11), (15, 0), (15, 11), (7, 6)]:
        np.testing.assert_allclose(lr[row, col], _matlab_downsample_pixel(hr, row, col, 4), atol=1e-6)


def test_imresize_takes_batches_and_picks_matlab_output_size():
    batch = photo_crop("chelsea", (30, 45), 100, 100)
    single = imresize(batch[0], 0.5)
    assert single.shape == (15, 23, 3)  # ceil(45 * 0.5), as MATLAB
    np.testing.assert_allclose(imresize(np.concatenate([batch, batch]), 0.5)[1], single, atol=1e-7)


def test_bad_shapes_and_scales_are_refused():
    with pytest.raises(ValueError, match=r"divisible by 4, got shape \(30, 32, 3\)"):
        bicubic_downsample(np.zeros((30, 32, 3), np.float32), 4)
    with pytest.raises(ValueError, match="integer scale"):
        bicubic_downsample(np.zeros((32, 32, 3), np.float32), 2.5)
    with pytest.raises(ValueError, match=r"got shape \(32, 32\)"):
        imresize(np.zeros((32, 32), np.float32), 0.5)
