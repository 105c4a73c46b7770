"""desra_jax.detection.morphology against cv2 / scipy on masks from real photographs: identical masks."""

import numpy as np
import pytest
from scipy import ndimage

from desra_jax import detection
from tests.conftest import photo_crop
from references import desra_numpy as ref
from desra_jax.data.synthetic import synthetic_batch


@pytest.fixture(scope="module")
def raw_masks():
    """(2, 160, 192) raw artifact masks (D < 0.7) of GAN-like pairs made from two photographs."""
    images = [photo_crop("astronaut", (160, 192), 20, 60)[0], photo_crop("rocket", (160, 192), 150, 250)[0]]
    gan, mse, _ = synthetic_batch(images, seed=1)
    mask = ref.artifact_mask(ref.indicator_d(gan, mse))
    assert 0.05 < mask.mean() < 0.6
    return mask


@pytest.fixture(scope="module")
def photo_masks():
    """(2, 120, 140) masks of bright pixels of two photographs: many regions, holes, border contact."""
    return np.concatenate([photo_crop("coffee", (120, 140), 100, 100), photo_crop("chelsea", (120, 140), 60, 80)])[
        ..., 1
    ] > 0.55


@pytest.fixture(scope="module")
def texture_masks():
    """(2, 120, 140) masks of pixels brighter than their right neighbour in textured crops (fur, feathers):
    hundreds of small regions, many touching only diagonally, which stresses 8-connectivity between 2 x 2 blocks."""
    images = np.concatenate([photo_crop("chelsea", (120, 141), 150, 180), photo_crop("astronaut", (120, 141), 300, 50)])
    return images[:, :, :-1, 1] > images[:, :, 1:, 1] + 0.01


@pytest.mark.parametrize("method", ["shifted", "reduce_window"])
@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_erode_and_dilate_equal_cv2(raw_masks, photo_masks, iterations, method):
    for mask in (raw_masks, photo_masks):
        np.testing.assert_array_equal(np.asarray(detection.erode(mask, 5, iterations, method)),
                                      ref.erode(mask, iterations))
        np.testing.assert_array_equal(np.asarray(detection.dilate(mask, 5, iterations, method)),
                                      ref.dilate(mask, iterations))


def test_fill_holes_equals_scipy(raw_masks, photo_masks):
    filled_pixels = 0
    # photo_masks[:, :-1, 1:] is 119 x 139: odd sizes pad the 2 x 2 blocks of the labelling
    for mask in (raw_masks, photo_masks, photo_masks[:, :-1, 1:], ref.dilate(ref.erode(raw_masks))):
        expected = ref.fill_holes(mask)
        np.testing.assert_array_equal(np.asarray(detection.fill_holes(mask)), expected)
        filled_pixels += np.count_nonzero(expected != mask)
    assert filled_pixels > 0, "the masks must have holes to fill"


def test_fill_holes_treats_the_background_as_8_connected():
    """A 'hole' that touches the outside only diagonally is not a hole under the 3x3 structure."""
    mask = np.ones((1, 7, 7), bool)
    mask[0, 1:3, 1:3] = False  # a true hole
    mask[0, 5, 5] = False
    mask[0, 6, 6] = False  # reaches the border: stays background
    mask[0, 4, 4] = False  # touches (5, 5) diagonally only: reaches the border through it
    filled = np.asarray(detection.fill_holes(mask))
    np.testing.assert_array_equal(filled, ref.fill_holes(mask))
    assert filled[0, 1, 1] and not filled[0, 4, 4]


def test_label_components_partition_equals_scipy(photo_masks, texture_masks):
    masks = np.concatenate([photo_masks, texture_masks])
    labels = np.concatenate([detection.label_components(photo_masks), detection.label_components(texture_masks)])
    for mask, got in zip(masks, labels):
        expected, count = ndimage.label(mask, structure=np.ones((3, 3)))
        assert count > 5
        assert len(np.unique(got[mask])) == count
        pairs = np.unique(np.stack([got[mask], expected[mask]]), axis=1)
        assert pairs.shape[1] == count, "each of our components must be exactly one of scipy's"


def square_spiral(size: int) -> np.ndarray:
    """(size, size) bool: a one-pixel-wide square spiral with one-pixel gaps, a single 8-connected region."""
    grid = np.zeros((size, size), bool)
    row, col = 0, 0
    grid[row, col] = True
    lengths = [size - 1] * 3 + [n for n in range(size - 3, 0, -2) for _ in (0, 1)]
    for turn, length in enumerate(lengths):
        d_row, d_col = ((0, 1), (1, 0), (0, -1), (-1, 0))[turn % 4]
        for _ in range(length):
            row, col = row + d_row, col + d_col
            grid[row, col] = True
    return grid


def test_labelling_converges_on_a_long_spiral():
    """A spiral (path length ~ size^2 / 2) is the worst case for label propagation: it must still be one region."""
    spiral = square_spiral(41)
    assert ndimage.label(spiral, structure=np.ones((3, 3)))[1] == 1
    labels = np.asarray(detection.label_components(spiral[None]))[0]
    np.testing.assert_array_equal(labels[spiral], 1)
    area = int(spiral.sum())
    np.testing.assert_array_equal(np.asarray(detection.remove_small_regions(spiral[None], area - 1))[0], spiral)
    assert not np.asarray(detection.remove_small_regions(spiral[None], area)).any()


@pytest.mark.parametrize("min_area", [0, 50, 400, 4000])
def test_remove_small_regions_equals_cv2(raw_masks, photo_masks, texture_masks, min_area):
    for mask in (raw_masks, photo_masks[:, :-1, 1:], texture_masks, photo_masks):
        expected = ref.remove_small_regions(mask, min_area)
        np.testing.assert_array_equal(np.asarray(detection.remove_small_regions(mask, min_area)), expected)
    if min_area == 400:
        assert expected.any() and (expected != photo_masks).any(), "the threshold must keep some regions, drop others"


def test_refine_mask_equals_the_released_morphology(raw_masks):
    for min_area in (0, 800):
        expected = ref.refine_mask(raw_masks, min_area)
        np.testing.assert_array_equal(np.asarray(detection.refine_mask(raw_masks, min_area)), expected)


def test_masks_must_be_batched():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        detection.erode(np.zeros((4, 4), bool))
