"""FFT loss, Durall et al.'s 1-D spectrum, spectral loss and spectrum discrepancy against numpy.fft in float64."""

import cv2
import jax
import numpy as np
import pytest

from desra_jax.losses import fft_loss, power_spectrum_1d, spectral_loss, spectrum_discrepancy


@pytest.fixture
def hr_and_sr(photo_batch):
    """HR: two 64x64 photograph crops; SR: each downscaled x4 (area) and upscaled back (bicubic), a blurry result."""
    hr = photo_batch(64, 64)
    sr = np.stack([cv2.resize(cv2.resize(x, (16, 16), interpolation=cv2.INTER_AREA), (64, 64)) for x in hr])
    return sr.astype(np.float32), hr


def numpy_fft_loss(sr, hr, norm):
    def image_norm(z):
        return np.sqrt(np.sum(np.abs(z) ** 2, axis=(1, 2, 3))) if norm == "fro" else np.sum(np.abs(z), axis=(1, 2, 3))

    f_sr = np.fft.fft2(sr.astype(np.float64), axes=(1, 2))
    f_hr = np.fft.fft2(hr.astype(np.float64), axes=(1, 2))
    return np.mean(image_norm(f_sr - f_hr) / np.maximum(image_norm(f_sr), image_norm(f_hr)))


@pytest.mark.parametrize("norm", ["fro", "l1"])
def test_fft_loss_matches_numpy_fft(hr_and_sr, norm):
    sr, hr = hr_and_sr
    loss = jax.jit(fft_loss, static_argnames="norm")(sr, hr, norm=norm)
    expected = numpy_fft_loss(sr, hr, norm)
    assert expected > 0.02
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_fft_loss_fro_is_the_relative_spatial_l2_error(hr_and_sr):
    """Parseval: with the Frobenius norm the ratio is ||SR - HR|| / max(||SR||, ||HR||) in pixel space."""
    sr, hr = hr_and_sr
    sr64, hr64 = sr.astype(np.float64), hr.astype(np.float64)
    per_image = np.linalg.norm((sr64 - hr64).reshape(2, -1), axis=1) / np.maximum(
        np.linalg.norm(sr64.reshape(2, -1), axis=1), np.linalg.norm(hr64.reshape(2, -1), axis=1)
    )
    np.testing.assert_allclose(fft_loss(sr, hr), per_image.mean(), rtol=1e-5)


@pytest.mark.parametrize("norm", ["fro", "l1"])
def test_fft_loss_edge_cases_have_finite_gradients(hr_and_sr, norm):
    _, hr = hr_and_sr
    black = np.zeros_like(hr)
    grad = jax.jit(jax.grad(fft_loss), static_argnames="norm")
    assert float(fft_loss(hr, hr, norm)) == 0.0
    assert float(fft_loss(black, black, norm)) == 0.0
    np.testing.assert_allclose(fft_loss(black, hr, norm), 1.0, rtol=1e-6)  # ||F(HR)|| / ||F(HR)||
    for sr, target in [(hr, hr), (black, black), (black, hr)]:
        assert np.isfinite(grad(sr, target, norm=norm)).all()


def numpy_power_spectrum_1d(images):
    """Durall et al.'s recipe written out in float64: gray, centred DFT, log power, ring means, min-max."""
    gray = images.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    n, h, w = gray.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(1, 2))) ** 2
    log_power = np.log(power + 1e-8)
    rows, cols = np.indices((h, w))
    ring = np.hypot(rows - h // 2, cols - w // 2).astype(int)
    profile = np.stack([[log_power[i][ring == k].mean() for k in range(min(h, w) // 2)] for i in range(n)])
    low, high = profile.min(axis=1, keepdims=True), profile.max(axis=1, keepdims=True)
    return (profile - low) / (high - low)


def test_power_spectrum_1d_matches_numpy(hr_and_sr):
    sr, hr = hr_and_sr
    spectrum = jax.jit(power_spectrum_1d)(hr)
    assert spectrum.shape == (2, 32)
    np.testing.assert_allclose(spectrum, numpy_power_spectrum_1d(hr), atol=2e-5)
    np.testing.assert_allclose(power_spectrum_1d(sr), numpy_power_spectrum_1d(sr), atol=2e-5)
    wide = hr[:, :48, :]  # a non-square image: rings up to min(H, W) / 2
    np.testing.assert_allclose(power_spectrum_1d(wide), numpy_power_spectrum_1d(wide), atol=2e-5)


def test_power_spectrum_1d_of_photographs_falls_with_frequency(hr_and_sr):
    """Natural images: most power at DC (normalized to 1), falling towards the highest ring (normalized to 0)."""
    _, hr = hr_and_sr
    spectrum = np.asarray(power_spectrum_1d(hr))
    np.testing.assert_allclose(spectrum[:, 0], 1.0)
    np.testing.assert_allclose(spectrum.min(axis=1), 0.0)
    assert (spectrum[:, :8].mean(axis=1) > 3 * spectrum[:, -8:].mean(axis=1)).all()


def test_flat_images_give_finite_spectra_and_gradients():
    black = np.zeros((1, 16, 16, 3), np.float32)
    gray = np.full((1, 16, 16, 3), 0.5, np.float32)
    np.testing.assert_array_equal(power_spectrum_1d(black), np.zeros((1, 8)))  # no spread: all zeros, not 0 / 0
    np.testing.assert_allclose(power_spectrum_1d(gray), np.eye(8)[:1], atol=1e-6)  # only the DC ring has power
    for sr, hr in [(black, black), (gray, black), (black, gray)]:
        assert np.isfinite(jax.grad(spectral_loss)(sr, hr)).all()
        assert np.isfinite(jax.grad(spectrum_discrepancy)(sr, hr)).all()
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        power_spectrum_1d(gray[..., :1])


def test_spectral_loss_is_bce_between_normalized_spectra(hr_and_sr):
    sr, hr = hr_and_sr
    p_sr, p_hr = numpy_power_spectrum_1d(sr), numpy_power_spectrum_1d(hr)
    log_p = np.maximum(np.log(np.maximum(p_sr, 1e-300)), -100)
    log_not_p = np.maximum(np.log(np.maximum(1 - p_sr, 1e-300)), -100)
    expected = -np.mean(p_hr * log_p + (1 - p_hr) * log_not_p)
    np.testing.assert_allclose(jax.jit(spectral_loss)(sr, hr), expected, rtol=1e-4)
    # Minimal (the entropy of p_hr, not 0) when the spectra agree.
    own = -np.mean(p_hr * np.log(np.where(p_hr > 0, p_hr, 1)) + (1 - p_hr) * np.log(np.where(p_hr < 1, 1 - p_hr, 1)))
    np.testing.assert_allclose(spectral_loss(hr, hr), own, rtol=1e-4)
    assert float(spectral_loss(hr, hr)) < float(spectral_loss(sr, hr))


def test_spectral_loss_gradient_reaches_sr_only(hr_and_sr):
    sr, hr = hr_and_sr
    grad_sr, grad_hr = jax.jit(jax.grad(spectral_loss, argnums=(0, 1)))(sr, hr)
    assert np.isfinite(grad_sr).all() and np.abs(grad_sr).max() > 0
    np.testing.assert_array_equal(grad_hr, 0.0)


def test_spectrum_discrepancy(hr_and_sr):
    sr, hr = hr_and_sr
    expected = np.mean((numpy_power_spectrum_1d(sr) - numpy_power_spectrum_1d(hr)) ** 2)
    # A mean square of differences, which can be ~0: against the spectra's own error (each within 2e-5 of numpy's,
    # above), that moves it by at most 2 * rms(difference) * 2e-5 + (2e-5)^2 (measured: 3e-8 of 2e-3).
    np.testing.assert_allclose(jax.jit(spectrum_discrepancy)(sr, hr), expected, rtol=0,
                               atol=2 * np.sqrt(expected) * 2e-5 + 4e-10)
    assert float(spectrum_discrepancy(hr, hr)) == 0.0
    assert 1e-4 < expected < 1e-1  # the size of the scores the slides report (3e-4 .. 8e-3)
    with pytest.raises(ValueError, match="same"):
        spectrum_discrepancy(sr, hr[:, :32])
