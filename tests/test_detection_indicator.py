"""desra_jax.detection.indicator against the float64 cv2 reference (references/desra_numpy.py)."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax import detection
from desra_jax.detection.indicator import window_weights
from tests.conftest import photo_crop
from references import desra_numpy as ref
from desra_jax.data.synthetic import synthetic_batch

BORDERS_AND_KINDS = [(b, k) for b in ("reflect", "valid") for k in ("gaussian", "box")]


@pytest.fixture(scope="module")
def gan_like_pair():
    """(gan, mse, truth) of two 128x128 photo crops with artifact textures in known ellipses."""
    images = [photo_crop("astronaut", (128, 128), 100, 150)[0], photo_crop("coffee", (128, 128), 50, 200)[0]]
    return synthetic_batch(images, seed=3)


def test_gaussian_window_is_cv2s():
    np.testing.assert_allclose(window_weights(11, "gaussian"), cv2.getGaussianKernel(11, 1.5)[:, 0], rtol=1e-12)


@pytest.mark.parametrize("border,kind", BORDERS_AND_KINDS)
def test_local_moments_match_cv2(photo_batch, border, kind):
    x = photo_batch(48, 64)
    mean, var = detection.local_moments(jnp.asarray(x), 11, kind, border)
    for image, m, v in zip(x, np.asarray(mean), np.asarray(var)):
        ref_mean, ref_var = ref.local_moments(image, 11, kind, border)
        assert m.shape == ref_mean.shape
        np.testing.assert_allclose(m, ref_mean, atol=2e-7)
        np.testing.assert_allclose(v, ref_var, rtol=1e-5, atol=1e-8)


def test_local_variance_is_exact_on_a_bright_smooth_region():
    """Local std ~ 4e-4 on values ~ 0.94: E[x^2] - E[x]^2 in float32 loses the variance (even goes negative)."""
    x = (0.93 + 0.01 * photo_crop("chelsea", (64, 64))).astype(np.float32)
    _, var = detection.local_moments(jnp.asarray(x))
    _, ref_var = ref.local_moments(x[0])
    assert ref_var.max() < 1e-6
    np.testing.assert_allclose(np.asarray(var[0]), ref_var, rtol=1e-3, atol=1e-10)
    _, naive_var = ref.local_moments(x[0], dtype=np.float32)
    assert np.abs(naive_var - ref_var).max() > 10 * np.abs(np.asarray(var[0]) - ref_var).max()
    mse = cv2.GaussianBlur(x[0], (0, 0), 1.2)[None]
    np.testing.assert_allclose(np.asarray(detection.indicator_d(x, mse)), ref.indicator_d(x, mse), atol=1e-6)


@pytest.mark.parametrize("border,kind", BORDERS_AND_KINDS)
def test_indicator_d_matches_the_released_formula(gan_like_pair, border, kind):
    gan, mse, _ = gan_like_pair
    d = np.asarray(detection.indicator_d(jnp.asarray(gan), jnp.asarray(mse), kind=kind, border=border))
    expected = ref.indicator_d(gan, mse, kind=kind, border=border)
    assert d.shape == expected.shape == ((2, 128, 128) if border == "reflect" else (2, 118, 118))
    np.testing.assert_allclose(d, expected, atol=1e-4)
    assert expected.min() < 0.3, "the artifact textures must produce low D somewhere"


def test_indicator_d_is_one_for_identical_images_and_low_inside_artifacts(gan_like_pair):
    gan, mse, truth = gan_like_pair
    np.testing.assert_allclose(np.asarray(detection.indicator_d(mse, mse)), 1.0, atol=1e-6)
    d = np.asarray(detection.indicator_d(gan, mse))
    assert d[truth].mean() + 0.2 < d[~truth].mean()


def test_table4_ablation_indicators(gan_like_pair):
    gan, mse, _ = gan_like_pair
    np.testing.assert_allclose(np.asarray(detection.indicator_absolute(gan, mse)),
                               ref.indicator_absolute(gan, mse), atol=1e-4)
    np.testing.assert_allclose(np.asarray(detection.indicator_unnormalized(gan, mse)),
                               ref.indicator_unnormalized(gan, mse), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("border,kind", [("reflect", "gaussian"), ("valid", "box")])  # each compile costs seconds
def test_reduce_window_formulation_equals_the_shifted_one(gan_like_pair, border, kind):
    gan, mse, _ = gan_like_pair
    """Both formulations within 1e-6 of the float64 reference (measured up to 5.9e-7) and of each other
    (up to 8.3e-7; float32's spacing at 1 is 1.2e-7)."""
    shifted = np.asarray(detection.indicator_d(gan, mse, kind=kind, border=border, method="shifted"))
    window = np.asarray(detection.indicator_d(gan, mse, kind=kind, border=border, method="reduce_window"))
    assert shifted.min() < 0.3 and shifted.max() > 0.99  # both ends of D's range occur
    expected = ref.indicator_d(gan, mse, kind=kind, border=border)
    np.testing.assert_allclose(shifted, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(window, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(window, shifted, rtol=0, atol=1e-6)


def test_reduce_window_formulation_is_exact_on_a_bright_smooth_region():
    x = (0.93 + 0.01 * photo_crop("chelsea", (64, 64))).astype(np.float32)
    _, var = detection.local_moments(jnp.asarray(x), method="reduce_window")
    _, ref_var = ref.local_moments(x[0])
    np.testing.assert_allclose(np.asarray(var[0]), ref_var, rtol=1e-3, atol=1e-10)
    mse = cv2.GaussianBlur(x[0], (0, 0), 1.2)[None]
    np.testing.assert_allclose(np.asarray(detection.indicator_d(x, mse, method="reduce_window")),
                               np.asarray(detection.indicator_d(x, mse, method="shifted")), rtol=0, atol=1e-6)


def test_window_method_by_backend_and_by_argument():
    backend = jax.default_backend()
    assert detection.window_method(operation="indicator") == ("shifted" if backend in ("cpu", "gpu") else
                                                              "reduce_window")
    assert detection.window_method(operation="morphology") == ("shifted" if backend == "cpu" else "reduce_window")
    for operation in detection.WINDOW_OPERATIONS:
        assert [detection.window_method(m, operation) for m in detection.WINDOW_METHODS] == list(
            detection.WINDOW_METHODS)
    with pytest.raises(ValueError, match="method: expected one of"):
        detection.window_method("conv")
    with pytest.raises(ValueError, match="operation: expected one of"):
        detection.window_method(None, "pooling")


def test_eq7_as_printed(gan_like_pair):
    """Without C in the numerator two flat patches give D = 0 (an 'artifact'), the released form gives 1."""
    gan, mse, _ = gan_like_pair
    printed = np.asarray(detection.indicator_d(gan, mse, form="printed"))
    np.testing.assert_allclose(printed, ref.indicator_printed(gan, mse), atol=1e-4)
    assert (printed <= np.asarray(detection.indicator_d(gan, mse)) + 1e-6).all()
    flat = np.full((1, 24, 24, 3), 0.4, np.float32)
    assert float(detection.indicator_d(flat, flat, form="printed").max()) < 1e-6
    np.testing.assert_allclose(np.asarray(detection.indicator_d(flat, flat)), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="form: expected one of"):
        detection.indicator_d(flat, flat, form="paper")


def test_ldl_artifact_map_matches_ldl(gan_like_pair):
    gan, mse, _ = gan_like_pair
    expected = ref.ldl_artifact_map(gan, mse)
    np.testing.assert_allclose(np.asarray(detection.ldl_artifact_map(gan, mse)), expected, rtol=1e-4, atol=1e-8)
    assert expected.max() > 0.01, "some pixels must pass LDL*'s largest threshold"


def test_luminance_is_bt601():
    x = photo_crop("rocket", (8, 8), 200, 300)
    expected = x @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(np.asarray(detection.luminance(x))[..., 0], expected, atol=1e-6)


def test_errors_name_the_problem():
    x = photo_crop("astronaut", (16, 16))
    with pytest.raises(ValueError, match="same"):
        detection.indicator_d(x, x[:, :8])
    with pytest.raises(ValueError, match="border"):
        detection.indicator_d(x, x, border="wrap")
    with pytest.raises(ValueError, match="valid"):
        detection.indicator_d(x[:, :8, :8], x[:, :8, :8], border="valid")
    with pytest.raises(ValueError, match="odd"):
        detection.local_moments(x, window=10)
