"""PSNR / SSIM against scikit-image and a float64 numpy evaluation, on crops of the bundled photographs."""

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from desra_jax.metrics.image_quality import psnr, rgb_to_y, ssim


def _jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Each image of (N, H, W, 3) in [0, 1] through 8-bit JPEG at ``quality``, back to float32 [0, 1]."""
    out = []
    for image in images:
        bgr = cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        _, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out).astype(np.float32) / 255.0


def _degraded_copies(clean: np.ndarray) -> dict[str, np.ndarray]:
    noise = np.random.default_rng(0).normal(0.0, 0.03, clean.shape)
    return {
        "blur": ndimage.gaussian_filter(clean, (0, 2.0, 2.0, 0)).astype(np.float32),
        "jpeg": _jpeg(clean, quality=30),
        "noise": np.clip(clean + noise, 0, 1).astype(np.float32),
    }


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with the settings of Wang et al. / BasicSR, (H, W, C) float64 on [0, 255]."""
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )


@pytest.mark.parametrize("kind", ["blur", "jpeg", "noise"])
def test_psnr_and_ssim_match_skimage(photo_batch, kind):
    clean = photo_batch(48, 64)
    degraded = _degraded_copies(clean)[kind]
    got_psnr = np.asarray(psnr(degraded, clean))
    got_ssim = np.asarray(ssim(degraded, clean))
    for i in range(len(clean)):
        a, b = clean[i].astype(np.float64) * 255, degraded[i].astype(np.float64) * 255
        np.testing.assert_allclose(got_psnr[i], peak_signal_noise_ratio(a, b, data_range=255), rtol=1e-5)
        np.testing.assert_allclose(got_ssim[i], _skimage_ssim(b, a), rtol=1e-5)
    # The degradations must be strong enough for the comparison to mean something.
    assert got_psnr.max() < 45 and got_ssim.max() < 0.99


def test_y_channel_matches_float64_numpy(photo_batch):
    clean = photo_batch(48, 64)
    degraded = _degraded_copies(clean)["jpeg"]

    def luma(rgb):
        return 16 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966])

    got_psnr = np.asarray(psnr(degraded, clean, test_y_channel=True))
    got_ssim = np.asarray(ssim(degraded, clean, test_y_channel=True))
    for i in range(len(clean)):
        y_clean, y_degraded = luma(clean[i]), luma(degraded[i])
        mse = np.mean((y_clean - y_degraded) ** 2)
        np.testing.assert_allclose(got_psnr[i], 10 * np.log10(255**2 / mse), rtol=1e-5)
        expected = _skimage_ssim(y_degraded[..., None], y_clean[..., None])
        np.testing.assert_allclose(got_ssim[i], expected, rtol=1e-5)
    # Luma differs from the RGB average: the Y metrics are not the RGB ones.
    assert not np.allclose(got_psnr, np.asarray(psnr(degraded, clean)), rtol=1e-3)


def test_rgb_to_y_maps_black_and_white_to_studio_range():
    black_white = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(rgb_to_y(black_white))[:, 0] * 255, [16.0, 235.0], atol=1e-4)


def test_crop_border_removes_exactly_that_many_pixels(photo_batch):
    clean = photo_batch(40, 40)
    damaged = clean.copy()
    # Damage the 4-pixel frame only: cropping 4 pixels leaves identical images, cropping 3 does not.
    damaged[:, :4] = 1 - damaged[:, :4]
    damaged[:, :, -4:] = 1 - damaged[:, :, -4:]
    assert np.all(np.isinf(np.asarray(psnr(damaged, clean, crop_border=4))))
    np.testing.assert_allclose(np.asarray(ssim(damaged, clean, crop_border=4)), 1.0, atol=1e-6)
    assert np.all(np.asarray(psnr(damaged, clean, crop_border=3)) < 40)
    assert np.all(np.asarray(ssim(damaged, clean, crop_border=3)) < 0.999)
    cropped = np.asarray(psnr(damaged[:, 3:-3, 3:-3], clean[:, 3:-3, 3:-3]))
    np.testing.assert_allclose(np.asarray(psnr(damaged, clean, crop_border=3)), cropped, rtol=1e-6)


def test_identical_images_give_infinite_psnr_and_unit_ssim(photo_batch):
    clean = photo_batch(32, 32)
    assert np.all(np.isinf(np.asarray(psnr(clean, clean))))
    np.testing.assert_allclose(np.asarray(ssim(clean, clean, test_y_channel=True)), 1.0, atol=1e-6)


def test_mismatched_shapes_and_tiny_images_are_refused(photo_batch):
    clean = photo_batch(32, 32)
    with pytest.raises(ValueError, match="same"):
        psnr(clean, clean[:, :16])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(clean, clean, crop_border=11)
