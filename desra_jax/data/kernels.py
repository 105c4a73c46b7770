"""Blur kernels of Real-ESRGAN's degradation, their random draws, ``filter2d`` and USM sharpening, in JAX.

Follows BasicSR's ``basicsr/data/degradations.py`` (``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``,
``bivariate_plateau``, ``random_mixed_kernels``, ``circular_lowpass_kernel``), Real-ESRGAN's
``RealESRGANDataset.__getitem__`` (how a kernel, its size and the sinc filter are drawn) and BasicSR's
``basicsr/utils/img_process_util.py`` (``filter2D``, ``USMSharp``).

Every kernel lives on a fixed ``KERNEL_CANVAS`` x ``KERNEL_CANVAS`` (21 x 21) grid whatever its drawn size k
(7-21, odd): the k x k kernel sits in the centre and the border is zero. Convolving with the zero-padded kernel
is exactly convolving with the k x k one (the extra taps multiply by zero), and Real-ESRGAN pads its kernels to
21 x 21 the same way, so the size can be drawn per image under ``jit`` with one compiled shape.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: Side of the grid every kernel is drawn on (Real-ESRGAN's largest kernel, ``blur_kernel_size: 21``).
KERNEL_CANVAS = 21
#: The kernel families of ``random_mixed_kernels``, in the order of Real-ESRGAN's ``kernel_list``.
KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
#: Points of the trapezoidal rule for Bessel's integral of J1: the aliasing error is J_{1 +- m M}(x), below
#: 1e-30 for M = 128 and the largest argument a 21 x 21 sinc kernel meets (pi * 10 sqrt 2 ~ 44.4).
_BESSEL_POINTS = 128



def _grid(canvas: int = KERNEL_CANVAS) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(x, y) offsets from the centre of a canvas x canvas grid, x along columns (BasicSR's ``mesh_grid``)."""
    axis = jnp.arange(canvas, dtype=jnp.float32) - (canvas - 1) / 2
    return jnp.meshgrid(axis, axis)


def _support(size, canvas: int = KERNEL_CANVAS) -> jnp.ndarray:
    """Boolean (canvas, canvas) mask of the centred size x size square (size odd, may be traced)."""
    x, y = _grid(canvas)
    half = (size - 1) // 2
    return (jnp.abs(x) <= half) & (jnp.abs(y) <= half)


def _normalised(kernel: jnp.ndarray, support: jnp.ndarray) -> jnp.ndarray:
    kernel = jnp.where(support, kernel, 0.0)
    return kernel / jnp.sum(kernel)


def _quadratic_form(sigma_x, sigma_y, theta) -> jnp.ndarray:
    """[x y] Sigma^-1 [x y]^T on the grid, Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T
    (BasicSR's ``sigma_matrix2`` and ``pdf2``), with the inverse written out in the rotated frame."""
    x, y = _grid()
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    along = cos * x + sin * y
    across = -sin * x + cos * y
    return (along / sigma_x) ** 2 + (across / sigma_y) ** 2


def bivariate_gaussian(size, sigma_x, sigma_y, theta) -> jnp.ndarray:
    """BasicSR's ``bivariate_Gaussian``: exp(-Q / 2) normalised to sum 1, Q the quadratic form of the rotated
    covariance; isotropic when sigma_y = sigma_x. Returns the (21, 21) float32 canvas, size x size support."""
    support = _support(size)
    return _normalised(jnp.exp(-0.5 * _quadratic_form(sigma_x, sigma_y, theta)), support)


def bivariate_generalized_gaussian(size, sigma_x, sigma_y, theta, beta) -> jnp.ndarray:
    """BasicSR's ``bivariate_generalized_Gaussian``: exp(-Q^beta / 2), normalised; (21, 21) float32."""
    support = _support(size)
    return _normalised(jnp.exp(-0.5 * _quadratic_form(sigma_x, sigma_y, theta) ** beta), support)


def bivariate_plateau(size, sigma_x, sigma_y, theta, beta) -> jnp.ndarray:
    """BasicSR's ``bivariate_plateau``: 1 / (Q^beta + 1), normalised; (21, 21) float32."""
    support = _support(size)
    return _normalised(1.0 / (_quadratic_form(sigma_x, sigma_y, theta) ** beta + 1.0), support)


def bessel_j1(x: jnp.ndarray) -> jnp.ndarray:
    """Bessel function of the first kind, order 1, for |x| <= ~45, float32.

    Bessel's integral J1(x) = 1 / (2 pi) int_0^{2 pi} cos(t - x sin t) dt by the trapezoidal rule, which is
    spectrally accurate for a periodic integrand (see ``_BESSEL_POINTS``); jax.scipy has no J1 of its own that is
    accurate at the sinc kernel's arguments.
    """
    t = jnp.arange(_BESSEL_POINTS, dtype=jnp.float32) * (2 * math.pi / _BESSEL_POINTS)
    return jnp.mean(jnp.cos(t - x[..., None] * jnp.sin(t)), axis=-1)


def circular_lowpass_kernel(cutoff, size) -> jnp.ndarray:
    """BasicSR's ``circular_lowpass_kernel`` (the 2-D sinc filter): cutoff J1(cutoff r) / (2 pi r), the centre
    cutoff^2 / (4 pi), normalised to sum 1 over the size x size support. cutoff in radians (pi the largest);
    returns the (21, 21) float32 canvas."""
    x, y = _grid()
    radius = jnp.sqrt(x**2 + y**2)
    off_centre = jnp.where(radius > 0, radius, 1.0)
    kernel = cutoff * bessel_j1(cutoff * off_centre) / (2 * math.pi * off_centre)
    kernel = jnp.where(radius > 0, kernel, cutoff**2 / (4 * math.pi))
    return _normalised(kernel, _support(size))


def pulse_kernel() -> jnp.ndarray:
    """The (21, 21) identity kernel: Real-ESRGAN's ``pulse_tensor``, the final filter when no sinc is drawn."""
    return jnp.zeros((KERNEL_CANVAS, KERNEL_CANVAS), jnp.float32).at[KERNEL_CANVAS // 2, KERNEL_CANVAS // 2].set(1.0)


def _uniform(key, low, high):
    return jax.random.uniform(key, (), jnp.float32, low, high)


def _beta(key, beta_range):
    """Half the draws in [low, 1], half in [1, high], as BasicSR's random generalized/plateau kernels."""
    below, low_key, high_key = jax.random.split(key, 3)
    return jnp.where(
        jax.random.uniform(below) < 0.5, _uniform(low_key, beta_range[0], 1.0), _uniform(high_key, 1.0, beta_range[1])
    )


def _kernel_size(key, sizes: Sequence[int]):
    return jnp.asarray(sizes, jnp.int32)[jax.random.randint(key, (), 0, len(sizes))]


def _sinc_cutoff(key, size):
    """Real-ESRGAN's cutoff for a blur sinc: uniform in [pi / 3, pi] below size 13, [pi / 5, pi] from 13 up."""
    low = jnp.where(size < 13, math.pi / 3, math.pi / 5)
    return low + (math.pi - low) * jax.random.uniform(key)


def family_indices(kernel_list: Sequence[str]) -> tuple[int, ...]:
    """Positions in ``KERNEL_FAMILIES`` of the names in a Real-ESRGAN ``kernel_list``; unknown names fail."""
    unknown = [name for name in kernel_list if name not in KERNEL_FAMILIES]
    if unknown:
        raise ValueError(f"kernel_list: unknown kernel families {unknown}; known: {list(KERNEL_FAMILIES)}")
    return tuple(KERNEL_FAMILIES.index(name) for name in kernel_list)


def random_mixed_kernel(
    key,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
    sinc_prob: float,
    sizes: Sequence[int] = tuple(range(7, KERNEL_CANVAS + 1, 2)),
) -> jnp.ndarray:
    """One blur kernel as Real-ESRGAN's dataset draws it: a size from ``sizes``; with probability ``sinc_prob``
    a ``circular_lowpass_kernel``, otherwise ``random_mixed_kernels`` (a family by ``kernel_prob``; sigma_x and
    sigma_y uniform in ``sigma_range``, the angle in [-pi, pi]; isotropic families use sigma_x and angle 0).
    Returns the (21, 21) float32 canvas."""
    keys = jax.random.split(key, 9)
    size = _kernel_size(keys[0], sizes)
    family = jnp.asarray(family_indices(kernel_list), jnp.int32)[
        jax.random.choice(keys[1], len(kernel_list), p=jnp.asarray(kernel_prob, jnp.float32))
    ]
    isotropic = family % 2 == 0
    sigma_x = _uniform(keys[2], *sigma_range)
    sigma_y = jnp.where(isotropic, sigma_x, _uniform(keys[3], *sigma_range))
    theta = jnp.where(isotropic, 0.0, _uniform(keys[4], -math.pi, math.pi))
    candidates = jnp.stack(
        [
            bivariate_gaussian(size, sigma_x, sigma_y, theta),
            bivariate_generalized_gaussian(size, sigma_x, sigma_y, theta, _beta(keys[5], betag_range)),
            bivariate_plateau(size, sigma_x, sigma_y, theta, _beta(keys[6], betap_range)),
        ]
    )
    mixed = candidates[family // 2]
    sinc = circular_lowpass_kernel(_sinc_cutoff(keys[7], size), size)
    return jnp.where(jax.random.uniform(keys[8]) < sinc_prob, sinc, mixed)


def random_final_sinc_kernel(
    key, final_sinc_prob: float, sizes: Sequence[int] = tuple(range(7, KERNEL_CANVAS + 1, 2))
) -> jnp.ndarray:
    """Real-ESRGAN's final filter: with probability ``final_sinc_prob`` a sinc kernel of a size drawn from
    ``sizes`` and cutoff uniform in [pi / 3, pi], otherwise the pulse. Returns the (21, 21) float32 canvas."""
    use_sinc, size_key, cutoff_key = jax.random.split(key, 3)
    size = _kernel_size(size_key, sizes)
    sinc = circular_lowpass_kernel(_uniform(cutoff_key, math.pi / 3, math.pi), size)
    return jnp.where(jax.random.uniform(use_sinc) < final_sinc_prob, sinc, pulse_kernel())


def reflect_indices(positions: jnp.ndarray, length) -> jnp.ndarray:
    """Maps integer positions into [0, length) by mirroring without repeating the edge (``numpy.pad``'s and
    torch's 'reflect'), periodically, so pads wider than the image are defined. ``length`` may be traced."""
    period = jnp.maximum(2 * (length - 1), 1)
    folded = jnp.mod(positions, period)
    return jnp.where(folded < length, folded, period - folded)


def reflect_pad(images: jnp.ndarray, pad: int, valid_hw=None) -> jnp.ndarray:
    """(N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C), mirrored ('reflect') about the borders of each image's valid
    top-left region of size ``valid_hw`` ((N, 2) int, traced; default the whole image). Rows and columns beyond
    the valid region plus ``pad`` hold copies of the image and are to be ignored."""
    n, h, w, _ = images.shape
    if valid_hw is None:
        return jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = reflect_indices(jnp.arange(h + 2 * pad)[None] - pad, valid_hw[:, :1])
    cols = reflect_indices(jnp.arange(w + 2 * pad)[None] - pad, valid_hw[:, 1:])
    batch = jnp.arange(n)[:, None, None]
    return images[batch, rows[:, :, None], cols[:, None, :]]


def _depthwise_correlation(padded: jnp.ndarray, kernels: jnp.ndarray) -> jnp.ndarray:
    """Valid cross-correlation of each image's channels with that image's kernel: (N, H', W', C) with
    (N, kh, kw) -> (N, H' - kh + 1, W' - kw + 1, C).

    As a sum of shifted images weighted by the taps, one kernel row per loop step: XLA's grouped convolution
    (one group per image and channel) runs an order of magnitude slower on the CPU.
    """
    kh, kw = kernels.shape[1:]
    h, w = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1

    def add_row(i, total):
        rows = jax.lax.dynamic_slice_in_dim(padded, i, h, axis=1)
        taps = jax.lax.dynamic_index_in_dim(kernels, i, axis=1, keepdims=False)
        for j in range(kw):
            total = total + taps[:, j, None, None, None] * rows[:, :, j : j + w]
        return total

    return jax.lax.fori_loop(0, kh, add_row, jnp.zeros((padded.shape[0], h, w, padded.shape[3]), padded.dtype))


def filter2d(images: jnp.ndarray, kernels: jnp.ndarray, valid_hw=None) -> jnp.ndarray:
    """BasicSR's ``filter2D``: each image cross-correlated (as ``F.conv2d``) with its own kernel after 'reflect'
    padding by k // 2.

    images: (N, H, W, C) float32; kernels: (N, k, k) or (k, k), k odd. ``valid_hw`` ((N, 2) int, traced): each
    image is its top-left region of that size inside the canvas, and is mirrored about that region's borders;
    outside it the output is meaningless. Returns (N, H, W, C).
    """
    k = kernels.shape[-1]
    if k % 2 == 0 or kernels.shape[-2] != k:
        raise ValueError(f"filter2d: expected square kernels of odd size, got shape {kernels.shape}")
    if kernels.ndim == 2:
        kernels = jnp.broadcast_to(kernels, (images.shape[0], k, k))
    return _depthwise_correlation(reflect_pad(images, k // 2, valid_hw), kernels)


def cv2_gaussian_kernel(size: int) -> np.ndarray:
    """``cv2.getGaussianKernel(size, 0)``: the 1-D Gaussian with sigma = 0.3 ((size - 1) / 2 - 1) + 0.8,
    normalised (size odd and > 7, where OpenCV computes rather than tabulates). float64 (size,)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    taps = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


@functools.lru_cache(maxsize=16)
def _blur_matrix(length: int, taps: tuple[float, ...]) -> np.ndarray:
    """(length, length) float32 matrix of 1-D correlation with ``taps`` after 'reflect' padding: the padding's
    rows of the identity, weighted and summed, so the border is folded into the matrix."""
    pad = len(taps) // 2
    mirrored = np.pad(np.eye(length), ((pad, pad), (0, 0)), mode="reflect")
    return sum(tap * mirrored[t : t + length] for t, tap in enumerate(taps)).astype(np.float32)


def _separable_blur(images: jnp.ndarray, taps: np.ndarray) -> jnp.ndarray:
    """``filter2D`` with the outer product of ``taps`` with itself, as one matrix product per axis (the same
    sums; a matrix product is far faster than a 51-tap loop on a CPU and as fast on an accelerator)."""
    _, h, w, _ = images.shape
    rows, cols = _blur_matrix(h, tuple(taps)), _blur_matrix(w, tuple(taps))
    blurred = jnp.einsum("ih,nhwc->niwc", rows, images, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("jw,niwc->nijc", cols, blurred, precision=jax.lax.Precision.HIGHEST)


def usm_sharp(images: jnp.ndarray, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> jnp.ndarray:
    """BasicSR's ``USMSharp`` (unsharp masking of the GT, Real-ESRGAN's ``gt_usm``).

    blur = the image filtered with the radius x radius Gaussian of ``cv2.getGaussianKernel(radius, 0)`` (radius
    made odd: 51, sigma 8), 'reflect' border; residual = image - blur; soft mask = the blurred indicator of
    |residual| * 255 > threshold; result = mask * clip(image + weight * residual, 0, 1) + (1 - mask) * image.
    The 2-D Gaussian is separable, so it is applied as two 1-D passes (the same sums in another order).
    images: (N, H, W, C) float32 in [0, 1]; returns the same shape.
    """
    if radius % 2 == 0:
        radius += 1
    taps = cv2_gaussian_kernel(radius)
    residual = images - _separable_blur(images, taps)
    mask = (jnp.abs(residual) * 255 > threshold).astype(images.dtype)
    soft_mask = _separable_blur(mask, taps)
    sharp = jnp.clip(images + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * images
