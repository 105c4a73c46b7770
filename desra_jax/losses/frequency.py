"""Frequency-domain losses and the 1-D power spectrum metric.

- :func:`fft_loss`: the FFT loss of ``papers/esrgan_ragp_fft_loss_slides.md``,
  L = ||F(SR) - F(HR)|| / max(||F(SR)||, ||F(HR)||).
- :func:`spectral_loss`: the spectral regularization of Durall, Keuper and Keuper, "Watch your up-convolution"
  (CVPR 2020): binary cross-entropy between normalized 1-D (azimuthally integrated) spectra.
- :func:`power_spectrum_1d` and :func:`spectrum_discrepancy`: that 1-D spectrum and the slides' evaluation score,
  "the difference between 1D power spectrum from real and fake images" (``desra_jax.metrics`` reports it).

Images are NHWC float arrays (N, H, W, C), RGB in [0, 1] for the 1-D spectrum; every loss is a scalar mean over the
batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.losses.pixel import safe_sqrt

#: RGB -> gray weights of Durall et al.'s released code (MATLAB's rgb2gray, ITU-R BT.601).
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)

#: Added to |F|^2 before the logarithm so that a zero frequency component gives a finite log power.
LOG_POWER_EPS = 1e-8

#: A 1-D log-power profile whose range (natural-log units) is below this is flat and normalizes to zeros.
MIN_LOG_POWER_SPREAD = 1e-3


def _check_pair(sr: jnp.ndarray, hr: jnp.ndarray) -> None:
    if sr.ndim != 4 or sr.shape != hr.shape:
        raise ValueError(f"expected sr and hr of the same (N, H, W, C) shape, got {sr.shape} and {hr.shape}")


def fft_loss(sr: jnp.ndarray, hr: jnp.ndarray, norm: str = "fro") -> jnp.ndarray:
    """The slides' FFT loss, L = ||F(SR) - F(HR)|| / max(||F(SR)||, ||F(HR)||), averaged over the batch.

    sr, hr: (N, H, W, C). F is the unnormalized 2-D DFT over (H, W) of each channel of an image. The slides leave
    the norm open; ``norm`` chooses it, over all frequencies and channels of one image:

    - 'fro' (default): Frobenius, sqrt(sum |z|^2). By Parseval ||F(x)|| = sqrt(H W) ||x||, so this ratio equals the
      spatial ||SR - HR||_2 / max(||SR||_2, ||HR||_2): a relative L2 error that weighs all frequencies alike.
    - 'l1': sum |z| of the complex moduli, which does depend on how the error spreads over frequencies.

    The ratio does not depend on the DFT's scaling. An image pair where both spectra are zero (two black images)
    contributes 0; identical images give exactly 0 with a finite gradient. Returns a scalar in [0, 2].
    """
    _check_pair(sr, hr)
    if norm not in ("fro", "l1"):
        raise ValueError(f"fft_loss norm must be 'fro' or 'l1', got {norm!r}")
    spectrum_sr = jnp.fft.fft2(sr, axes=(1, 2))
    spectrum_hr = jnp.fft.fft2(hr, axes=(1, 2))

    def image_norm(z):
        squared = jnp.square(z.real) + jnp.square(z.imag)
        if norm == "fro":
            return safe_sqrt(jnp.sum(squared, axis=(1, 2, 3)))
        return jnp.sum(safe_sqrt(squared), axis=(1, 2, 3))

    difference = image_norm(spectrum_sr - spectrum_hr)
    scale = jnp.maximum(image_norm(spectrum_sr), image_norm(spectrum_hr))
    ratio = jnp.where(scale > 0, difference / jnp.where(scale > 0, scale, 1.0), 0.0)
    return jnp.mean(ratio)


def _radial_bins(height: int, width: int) -> tuple[np.ndarray, int]:
    """Integer radius floor(|(u, v)|) of each frequency of the centred (fftshift) spectrum, and the bin count.

    The centre is the DC term at (H // 2, W // 2) after ``fftshift``. Bins k = 0 .. M/2 - 1 with M = min(H, W), the
    range of Durall et al.'s azimuthal integral; frequencies farther out (the corners) are left out.
    """
    rows = np.arange(height) - height // 2
    cols = np.arange(width) - width // 2
    radius = np.floor(np.hypot(rows[:, None], cols[None, :])).astype(np.int64)
    return radius, min(height, width) // 2


def power_spectrum_1d(images: jnp.ndarray) -> jnp.ndarray:
    """Durall et al.'s normalized 1-D power spectrum of each image, (N, H, W, 3) RGB -> (N, min(H, W) // 2).

    Following their released code: gray = 0.2989 R + 0.587 G + 0.114 B; the centred 2-D DFT of the gray image; log
    power log(|F|^2 + 1e-8); the azimuthal average over rings of integer radius k = floor(|(u, v)|) around the DC
    term, k = 0 .. min(H, W) / 2 - 1 (the paper's AI(w_k), as a mean over each ring rather than an integral so that
    rings of different length compare); then min-max normalization of each profile to [0, 1]. The released code's
    20 ln|F| differs from log|F|^2 only by a factor that the min-max normalization removes. A profile with no
    spread (range below ``MIN_LOG_POWER_SPREAD``, e.g. a black image) is all zeros; a flat nonzero image gives 1 at
    k = 0 and 0 elsewhere. Values in [0, 1], differentiable.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images of shape (N, H, W, 3), got shape {images.shape}")
    gray = images @ jnp.asarray(GRAY_WEIGHTS, dtype=images.dtype)
    spectrum = jnp.fft.fftshift(jnp.fft.fft2(gray, axes=(1, 2)), axes=(1, 2))
    log_power = jnp.log(jnp.square(spectrum.real) + jnp.square(spectrum.imag) + LOG_POWER_EPS)
    radius, num_bins = _radial_bins(images.shape[1], images.shape[2])
    rings = (radius[..., None] == np.arange(num_bins)).astype(np.float32)  # (H, W, K), built once at trace time
    rings /= rings.sum(axis=(0, 1))
    profile = jnp.einsum("nhw,hwk->nk", log_power, jnp.asarray(rings, dtype=log_power.dtype))
    low = jnp.min(profile, axis=1, keepdims=True)
    spread = jnp.max(profile, axis=1, keepdims=True) - low
    # Ring means of a flat log spectrum differ by float rounding only; stretching that to [0, 1] would be noise.
    has_spread = spread > MIN_LOG_POWER_SPREAD
    return jnp.where(has_spread, (profile - low) / jnp.where(has_spread, spread, 1.0), 0.0)


def _clamped_log(p: jnp.ndarray) -> jnp.ndarray:
    """max(log p, -100) for p in [0, 1] (torch.nn.BCELoss's clamp), with a zero gradient, not NaN, at p = 0."""
    positive = p > 0
    return jnp.maximum(jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), -100.0), -100.0)


def spectral_loss(sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
    """Durall et al. (2020)'s spectral regularization: BCE between normalized 1-D spectra of real and generated images.

    L = -1/K sum_k [p_hr(k) log p_sr(k) + (1 - p_hr(k)) log(1 - p_sr(k))], p = :func:`power_spectrum_1d`, with the
    HR (real) spectrum as the target (under stop_gradient) and the SR (generated) one as the prediction, as the
    paper writes it (their released training script passes the two the other way round to ``nn.BCELoss``);
    averaged over the bins and the batch (an SR image has a paired HR image, so each SR spectrum is compared with
    its own HR spectrum). Logs are clamped at -100 as in ``torch.nn.BCELoss``, because min-max normalization
    puts exact 0s and 1s in every profile. The minimum over p_sr is at p_sr = p_hr, where the loss is the entropy of
    p_hr, not 0. sr, hr: (N, H, W, 3) RGB. Returns a scalar.
    """
    _check_pair(sr, hr)
    target = jax.lax.stop_gradient(power_spectrum_1d(hr))
    predicted = power_spectrum_1d(sr)
    return -jnp.mean(target * _clamped_log(predicted) + (1.0 - target) * _clamped_log(1.0 - predicted))


def spectrum_discrepancy(sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
    """The slides' frequency spectrum discrepancy: mean squared difference of the normalized 1-D spectra.

    D = 1/(N K) sum_n sum_k (p_sr,n(k) - p_hr,n(k))^2 with p = :func:`power_spectrum_1d` (K = min(H, W) // 2 bins).
    The slides only say "the difference between 1D power spectrum from real and fake images"; a squared difference
    is chosen because the scores they report (3e-4 to 8e-3) are of the size of a squared difference of [0, 1]
    profiles. Lower is better; 0 for identical spectra. sr, hr: (N, H, W, 3) RGB in [0, 1]. Returns a scalar.
    """
    _check_pair(sr, hr)
    return jnp.mean(jnp.square(power_spectrum_1d(sr) - power_spectrum_1d(hr)))
