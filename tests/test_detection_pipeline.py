"""detect_artifacts / ldl_detect / semantic adjustment against the float64 reference of the released script."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax import detection
from desra_jax.data.bundled import bundled_photograph
from desra_jax.data.ade20k import ADE20K_ADJUSTMENT_TSV
from tests.conftest import photo_crop
from references import desra_numpy as ref
from desra_jax.data.synthetic import synthetic_batch

#: ADE20K classes with different published adjustments: wall 0.95, building 0.80, sky 1.0, tree 0.75, painting 0.70.
CLASSES_BY_BRIGHTNESS = np.array([4, 1, 0, 22, 2])


def brightness_labels(images: np.ndarray) -> np.ndarray:
    """(N, H, W) stand-in segmentation: ADE20K classes by brightness band of each photograph (real structure)."""
    bands = np.clip((images.mean(axis=-1) * len(CLASSES_BY_BRIGHTNESS)).astype(int), 0, len(CLASSES_BY_BRIGHTNESS) - 1)
    return CLASSES_BY_BRIGHTNESS[bands]


def table_bins() -> np.ndarray:
    rows = [line.split("\t") for line in ADE20K_ADJUSTMENT_TSV.read_text().splitlines() if line[:1].isdigit()]
    return np.array([int(r[2]) for r in rows])


@pytest.fixture(scope="module")
def pairs_256():
    images = [photo_crop("astronaut", (256, 256), 100, 150)[0], photo_crop("coffee", (256, 256), 50, 200)[0]]
    return synthetic_batch(images, seed=5)


def test_published_adjustments():
    adjustment, names = detection.load_class_adjustment()
    assert len(names) == len(adjustment) == 150
    by_name = dict(zip(names, adjustment))
    assert (by_name["sky"], by_name["tree"], by_name["building"]) == (1.0, 0.75, 0.8)


def test_semantic_weights_match_the_released_lookup():
    adjustment, _ = detection.load_class_adjustment()
    labels = brightness_labels(photo_crop("chelsea", (64, 80), 10, 10))
    expected = ref.semantic_weights(labels, table_bins())
    np.testing.assert_allclose(np.asarray(detection.semantic_weights(jnp.asarray(labels), adjustment)), expected,
                               rtol=1e-7)
    assert len(np.unique(expected)) >= 3


def test_artifact_mask_clips_then_thresholds():
    d = np.array([[[0.5, 0.69, 0.71, 0.9]]], np.float32)
    weights = np.array([[[1.0, 1.0, 1.0, 1 / 0.75]]], np.float32)
    np.testing.assert_array_equal(np.asarray(detection.artifact_mask(d)), [[[True, True, False, False]]])
    np.testing.assert_array_equal(np.asarray(detection.artifact_mask(d * 0.7, weights)), [[[True, True, True, False]]])


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_pipeline_equals_the_released_script_on_256_crops(pairs_256, border):
    gan, mse, truth = pairs_256
    mask, d = detection.detect_artifacts(jnp.asarray(gan), jnp.asarray(mse), min_area=1500, border=border)
    expected_mask, expected_d = ref.detect_artifacts(gan, mse, min_area=1500, border=border)
    np.testing.assert_allclose(np.asarray(d), expected_d, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(mask), expected_mask)
    raw = ref.artifact_mask(expected_d)
    assert (ref.fill_holes(ref.dilate(ref.erode(raw))) != expected_mask).any(), "min_area must drop some region"
    assert expected_mask.any()


def test_pipeline_with_semantics_equals_the_released_script(pairs_256):
    gan, mse, _ = pairs_256
    adjustment, _ = detection.load_class_adjustment()
    labels = brightness_labels(gan)
    for border in ("reflect", "valid"):
        mask, _ = detection.detect_artifacts(gan, mse, labels=jnp.asarray(labels), class_adjustment=adjustment,
                                             min_area=1500, border=border)
        expected, _ = ref.detect_artifacts(gan, mse, labels, table_bins(), min_area=1500, border=border)
        np.testing.assert_array_equal(np.asarray(mask), expected)
    without, _ = ref.detect_artifacts(gan, mse, min_area=1500)
    assert (mask != without[:, 5:-5, 5:-5]).any(), "the adjustment must change the mask"


def test_pipeline_with_the_default_min_area_on_a_512_photograph():
    gan, mse, truth = synthetic_batch([bundled_photograph("astronaut")], seed=2, regions=3)
    mask, _ = detection.detect_artifacts(gan, mse)
    expected, d = ref.detect_artifacts(gan, mse)
    np.testing.assert_array_equal(np.asarray(mask), expected)
    kept_everything = ref.refine_mask(ref.artifact_mask(d), 0)
    assert expected.any() and (kept_everything != expected).any()
    assert (expected & truth).sum() / (expected | truth).sum() > 0.5


def test_box_window_and_ablations_follow_their_indicators(pairs_256):
    gan, mse, _ = pairs_256
    mask, _ = detection.detect_artifacts(gan, mse, kind="box", min_area=1500)
    np.testing.assert_array_equal(np.asarray(mask), ref.detect_artifacts(gan, mse, kind="box", min_area=1500)[0])
    mask, d = detection.detect_artifacts(gan, mse, indicator="absolute", min_area=1500)
    np.testing.assert_array_equal(np.asarray(mask),
                                  ref.refine_mask(ref.artifact_mask(ref.indicator_absolute(gan, mse)), 1500))
    mask, d = detection.detect_artifacts(gan, mse, indicator="unnormalized", min_area=1500)
    np.testing.assert_array_equal(np.asarray(mask), ref.refine_mask(ref.indicator_unnormalized(gan, mse) > 0.7, 1500))


def test_printed_eq7_ablation_and_the_reduce_window_formulation(pairs_256):
    gan, mse, _ = pairs_256
    mask, d = detection.detect_artifacts(gan, mse, indicator="printed", min_area=1500, window_method="reduce_window")
    np.testing.assert_allclose(np.asarray(d), ref.indicator_printed(gan, mse), atol=1e-4)
    shifted, _ = detection.detect_artifacts(gan, mse, indicator="printed", min_area=1500, window_method="shifted")
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(shifted))
    np.testing.assert_array_equal(np.asarray(mask), ref.refine_mask(ref.artifact_mask(ref.indicator_printed(gan, mse)),
                                                                     1500))


def test_luminance_ablation_is_the_indicator_on_luma(pairs_256):
    gan, mse, _ = pairs_256
    _, d = detection.detect_artifacts(gan, mse, channels="luminance", min_area=1500)
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(np.asarray(d), ref.indicator_d(gan @ luma[:, None], mse @ luma[:, None]), atol=1e-4)


def test_ldl_detect_at_the_published_thresholds(pairs_256):
    gan, mse, _ = pairs_256
    expected_map = ref.ldl_artifact_map(gan, mse)
    areas = []
    for threshold in detection.LDL_THRESHOLDS:
        mask, artifact_map = detection.ldl_detect(gan, mse, threshold)
        # Pixels within float32 rounding of the threshold may flip; none of them should on these images.
        np.testing.assert_array_equal(np.asarray(mask), expected_map > threshold)
        areas.append(np.asarray(mask).mean())
        refined, _ = detection.ldl_detect(gan, mse, threshold, morphology=True, min_area=1500)
        np.testing.assert_array_equal(np.asarray(refined), ref.refine_mask(expected_map > threshold, 1500))
    assert areas[0] < areas[1] < areas[2]


def test_batch_items_are_independent(pairs_256):
    gan, mse, _ = pairs_256
    both, _ = detection.detect_artifacts(gan, mse, min_area=1500)
    second, _ = detection.detect_artifacts(gan[1:], mse[1:], min_area=1500)
    np.testing.assert_array_equal(np.asarray(both)[1], np.asarray(second)[0])


def test_pipeline_lowers_to_one_program_with_on_device_labelling(pairs_256):
    gan, mse, _ = pairs_256
    lowered = jax.jit(lambda g, m: detection.detect_artifacts(g, m, min_area=1500)).lower(gan, mse)
    assert "while" in lowered.as_text()


def test_labels_need_their_adjustment(pairs_256):
    gan, mse, _ = pairs_256
    with pytest.raises(ValueError, match="together"):
        detection.detect_artifacts(gan, mse, labels=jnp.zeros(gan.shape[:3], jnp.int32))
