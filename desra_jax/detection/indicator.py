"""The DeSRA texture-difference indicator D (eq. 3-7) and the Table-4 ablation indicators, in JAX.

All functions take NHWC float32 images in [0, 1]. Local statistics are computed per channel over a separable
window (11x11 Gaussian with sigma 1.5 as in the authors' released detection script, or the uniform window of
eq. 3) with a stable two-pass form, so float32 matches a float64 reference on smooth bright regions. Two
formulations give the same statistics (`local_moments`'s ``method``): sums of shifted slices, or
``lax.reduce_window``; `desra_jax.detection.sliding.window_method` picks one per backend.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from desra_jax.detection.sliding import shifted, window_method
from desra_jax.metrics.image_quality import gaussian_window

#: The authors' 1e-8 inside sqrt(var + eps), stated on the [0, 255] scale, converted to the [0, 1] scale.
VAR_EPS = 1e-8 / 255.0**2

#: Indicators of Table 4: the released D, absolute std difference (no relative difference), no normalisation,
#: and D of eq. 7 as printed (no C in the numerator).
INDICATORS = ("released", "absolute", "unnormalized", "printed")

#: Other names accepted from flags and configs: 'relative' (the relative difference of eq. 7) reads as 'released'.
INDICATOR_ALIASES = {"relative": "released"}

#: Forms of eq. 7 (`indicator_d`): as the authors' script computes it (C in the numerator too) or as printed.
D_FORMS = ("released", "printed")


def window_weights(window: int, kind: str) -> np.ndarray:
    """1-D weights (window,) summing to 1: SSIM's Gaussian, sigma 1.5 (cv2.getGaussianKernel(11, 1.5)), or uniform."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window: expected an odd size >= 1, got {window}")
    if kind == "gaussian":
        return gaussian_window(window, sigma=1.5)
    if kind == "box":
        return np.full(window, 1.0 / window)
    raise ValueError(f"kind: expected 'gaussian' or 'box', got {kind!r}")


def _pad_axis(x: jnp.ndarray, window: int, border: str, axis: int) -> jnp.ndarray:
    """Mirror-pads one axis by window // 2 (numpy 'reflect' = cv2.BORDER_REFLECT_101), or not for 'valid'."""
    half = window // 2
    if border == "valid":
        if x.shape[axis] < window:
            raise ValueError(f"border='valid': expected images of at least {window} px, got shape {x.shape}")
        return x
    if border != "reflect":
        raise ValueError(f"border: expected 'reflect' or 'valid', got {border!r}")
    if x.shape[axis] <= half:
        raise ValueError(f"border='reflect': expected images larger than {half} px, got shape {x.shape}")
    padding = [(0, 0)] * x.ndim
    padding[axis] = (half, half)
    return jnp.pad(x, padding, mode="reflect")


def _weighted_taps(x: jnp.ndarray, weights: np.ndarray, axis: int, step: int = 1) -> jnp.ndarray:
    """'valid' correlation of x with 1-D weights along axis, taps `step` elements apart, as a sum of shifted
    slices (one fused loop)."""
    length = x.shape[axis] - (len(weights) - 1) * step
    return sum(float(w) * shifted(x, k * step, length, axis) for k, w in enumerate(weights))


def _combine_groups(mean_in, m2_in, weights, axis, step=1):
    """One separable pass: mean and variance of weighted groups (mean_k, m2_k) along axis, 'valid'.

    Groups are `step` elements apart along axis (step = C for pixels of an (N, H, W * C) row).
    mean = sum w_k mean_k and var = sum w_k m2_k + sum w_k (mean_k - mean)^2 (the law of total variance; weights
    sum to 1): two passes over the taps, the second of differences from the output's own mean, so no large terms
    cancel as in E[x^2] - E[x]^2 on bright smooth regions. m2_in=None means single pixels (m2_k = 0).
    """
    length = mean_in.shape[axis] - (len(weights) - 1) * step
    mean = _weighted_taps(mean_in, weights, axis, step)
    var = sum(float(w) * (shifted(mean_in, k * step, length, axis) - mean) ** 2 for k, w in enumerate(weights))
    if m2_in is not None:
        var = var + _weighted_taps(m2_in, weights, axis, step)
    return mean, var


def _nested_boxes(weights: np.ndarray) -> tuple[tuple[int, float], ...]:
    """Symmetric window weights that do not grow away from the centre as a sum of centred boxes.

    Returns ((radius r, height a_r), ...) with weights[centre + k] = sum of a_r over r >= |k|, a_r =
    w(r) - w(r + 1) >= 0 (SSIM's Gaussian: six boxes; the uniform window: one). Non-negative heights keep the
    weighted variance a sum of non-negative terms (`_reduce_window_pass`).
    """
    half = len(weights) // 2
    outward = np.asarray(weights[half:], np.float64)
    if not np.allclose(weights, weights[::-1]) or np.any(np.diff(outward) > 0):
        raise ValueError(f"reduce_window: expected symmetric weights falling away from the centre, got {weights}")
    heights = outward - np.append(outward[1:], 0.0)
    return tuple((radius, float(height)) for radius, height in enumerate(heights) if height > 0)


def _merge_moments(a, b):
    """Chan, Golub and LeVeque's pairwise update of (count, mean, sum of squared deviations M2): every term is a
    local difference or non-negative, so float32 keeps the variance of bright smooth regions."""
    count_a, mean_a, m2_a = a
    count_b, mean_b, m2_b = b
    count = count_a + count_b
    share = jnp.where(count > 0, count_b / jnp.where(count > 0, count, 1.0), 0.0)  # the identity (0, 0, 0)
    delta = mean_b - mean_a
    return count, mean_a + delta * share, m2_a + m2_b + delta * delta * count_a * share


def _reduce_window_pass(mean_in, var_in, weights, axis):
    """`_combine_groups` as ``lax.reduce_window``: weighted mean and variance of groups along axis, 'valid'.

    The weights are split into centred boxes (`_nested_boxes`); one reduce_window per box merges its groups'
    (1, mean_k, var_k) with `_merge_moments` into (n_r, mean_r, M2_r), and the boxes combine exactly by the law
    of total variance: mean = sum a_r n_r mean_r, var = sum a_r (M2_r + n_r (mean_r - mean)^2).
    var_in=None means single pixels.
    """
    half = len(weights) // 2
    length = mean_in.shape[axis] - 2 * half
    var_in = jnp.zeros_like(mean_in) if var_in is None else var_in
    zero = jnp.zeros((), mean_in.dtype)
    parts = []
    for radius, height in _nested_boxes(weights):
        size = 2 * radius + 1
        dims = tuple(size if a == axis else 1 for a in range(mean_in.ndim))
        inputs = [lax.slice_in_dim(a, half - radius, half - radius + length + 2 * radius, axis=axis)
                  for a in (jnp.ones_like(mean_in), mean_in, var_in)]
        _, mean, m2 = lax.reduce_window(tuple(inputs), (zero, zero, zero), _merge_moments, dims,
                                        (1,) * mean_in.ndim, "VALID")
        parts.append((height * size, mean, height * m2))
    mean = sum(weight * box_mean for weight, box_mean, _ in parts)
    var = sum(box_m2 + weight * (box_mean - mean) ** 2 for weight, box_mean, box_m2 in parts)
    return mean, var


def local_moments(x: jnp.ndarray, window: int = 11, kind: str = "gaussian", border: str = "reflect",
                  method: str | None = None):
    """Local mean and (population) variance per channel over a window x window neighbourhood (eq. 3).

    Args:
      x: (N, H, W, C) float32, any range ([0, 1] in this library).
      window: odd window size; 11 in the paper and the released script.
      kind: 'gaussian' = SSIM's 11x11 window with sigma 1.5 (the released script, cv2.GaussianBlur weights);
        'box' = the uniform window of eq. 3 as written.
      border: 'reflect' = full-size output, mirror padding without repeating the edge pixel (numpy 'reflect',
        cv2.BORDER_REFLECT_101); 'valid' = only windows inside the image, (H - window + 1, W - window + 1),
        which is the released script's crop of window // 2 pixels per side.
      method: 'shifted' (sums of shifted slices), 'reduce_window' (`_reduce_window_pass`: lax.reduce_window per
        centred box of the window, a variadic reduce-window that XLA:GPU does not implement), or None:
        `sliding.window_method`'s choice for the default backend. Both are stable two-pass forms and agree to
        float32 rounding.

    Returns:
      (mean, var), each (N, H', W', C) float32; var >= 0.

    method='shifted' applies the window as two 1-D passes of shifted slices on the (N, H, W * C) view of x: no
    transpose, and a horizontal shift by k pixels is a shift by k * C along the contiguous rows, which XLA
    vectorises (a layout of (N * C, H, W) planes spent most of its time transposing). Both methods take the
    variance in a two-pass form rather than E[x^2] - E[x]^2, whose float32 cancellation on bright smooth regions
    (E[x^2] ~ 1, var ~ 1e-6) moves D by ~1e-4 and even makes the variance negative.
    """
    if x.ndim != 4:
        raise ValueError(f"local_moments: expected an (N, H, W, C) array, got shape {x.shape}")
    weights = window_weights(window, kind)
    if window_method(method, "indicator") == "reduce_window":
        rows = _pad_axis(x.astype(jnp.float32), window, border, 2)
        row_mean, row_var = _reduce_window_pass(rows, None, weights, axis=2)
        mean, var = _reduce_window_pass(_pad_axis(row_mean, window, border, 1), _pad_axis(row_var, window, border, 1),
                                        weights, axis=1)
        return mean, jnp.maximum(var, 0.0)
    n, _, _, c = x.shape
    rows = _pad_axis(x.astype(jnp.float32), window, border, 2)
    rows = rows.reshape(rows.shape[:2] + (-1,))
    row_mean, row_var = _combine_groups(rows, None, weights, axis=2, step=c)
    mean, var = _combine_groups(_pad_axis(row_mean, window, border, 1), _pad_axis(row_var, window, border, 1),
                                weights, axis=1)
    out_shape = (n, mean.shape[1], mean.shape[2] // c, c)
    return mean.reshape(out_shape), jnp.maximum(var, 0.0).reshape(out_shape)


def _check_pair(gan: jnp.ndarray, mse: jnp.ndarray) -> None:
    if gan.shape != mse.shape or gan.ndim != 4:
        raise ValueError(f"expected GAN-SR and MSE-SR of the same (N, H, W, C) shape, got {gan.shape} and {mse.shape}")


def _local_vars(gan, mse, window, kind, border, method):
    """Local variances of GAN-SR and MSE-SR, (N, H', W', C) each."""
    _check_pair(gan, mse)
    return local_moments(gan, window, kind, border, method)[1], local_moments(mse, window, kind, border, method)[1]


def indicator_d(gan, mse, window: int = 11, kind: str = "gaussian", c: float = 0.03**2, border: str = "reflect",
                method: str | None = None, form: str = "released"):
    """D of DeSRA (eq. 7 as released): per channel, then averaged over channels. Low D = likely artifact.

    D = (2 sqrt(var_x + eps) sqrt(var_y + eps) + C) / (var_x + var_y + C), x = GAN-SR, y = MSE-SR, with the
    released script's constants (scripts/distance.py, ``calc_single_artifact_map``): C = (0.03 * 255)^2 and
    eps = 1e-8 on the [0, 255] scale, i.e. C = 0.03^2 and eps = 1e-8 / 255^2 here on [0, 1] (D is invariant to the
    common rescaling). Unlike eq. 7 as printed, C is in the numerator too, so two flat patches give D = 1.
    form='printed' is eq. 7 as printed, 2 sqrt(var_x + eps) sqrt(var_y + eps) / (var_x + var_y + C), for the
    ablations: flat patches give D ~ 0 there, i.e. look like artifacts.

    Args:
      gan, mse: (N, H, W, C) float32 in [0, 1].
      window, kind, border, method: see `local_moments`.
      c: contrast constant on the [0, 1] scale.
      form: 'released' or 'printed' (``D_FORMS``).

    Returns:
      (N, H', W') float32 in [0, 1]; H' = H for 'reflect', H - 2 * (window // 2) for 'valid'.
    """
    if form not in D_FORMS:
        raise ValueError(f"form: expected one of {D_FORMS}, got {form!r}")
    var_x, var_y = _local_vars(gan, mse, window, kind, border, method)
    numerator = 2 * jnp.sqrt(var_x + VAR_EPS) * jnp.sqrt(var_y + VAR_EPS)
    d = (numerator + (c if form == "released" else 0.0)) / (var_x + var_y + c)
    return jnp.mean(d, axis=-1)


def indicator_absolute(gan, mse, window: int = 11, kind: str = "gaussian", border: str = "reflect",
                       method: str | None = None):
    """Table 4, first row (no relative difference): 1 / (1 + d), d = (sigma_x - sigma_y)^2 of eq. 4.

    d is taken on the [0, 255] scale, the scale the authors compute on, and normalised with eq. 6's map
    t -> 1 / (1 + t) so that, like D, low values flag artifacts; averaged over channels. (N, H', W') in (0, 1].
    """
    var_x, var_y = _local_vars(gan, mse, window, kind, border, method)
    diff = 255.0 * (jnp.sqrt(var_x + VAR_EPS) - jnp.sqrt(var_y + VAR_EPS))
    return jnp.mean(1.0 / (1.0 + diff * diff), axis=-1)


def indicator_unnormalized(gan, mse, window: int = 11, kind: str = "gaussian", c: float = 0.03**2,
                           border: str = "reflect", method: str | None = None):
    """Table 4, second row (no normalisation): d' = (sigma_x - sigma_y)^2 / (2 sigma_x sigma_y + C) (eq. 5).

    C (as in `indicator_d`) stabilises flat patches, which eq. 5 leaves undefined. A distance: HIGH values flag
    artifacts, unbounded above; averaged over channels. (N, H', W') float32 >= 0.
    """
    var_x, var_y = _local_vars(gan, mse, window, kind, border, method)
    sx, sy = jnp.sqrt(var_x + VAR_EPS), jnp.sqrt(var_y + VAR_EPS)
    return jnp.mean((sx - sy) ** 2 / (2 * sx * sy + c), axis=-1)


def luminance(x: jnp.ndarray) -> jnp.ndarray:
    """ITU-R BT.601 luma of (N, H, W, 3) RGB in [0, 1] as (N, H, W, 1), for the luminance-only ablation."""
    if x.shape[-1] != 3:
        raise ValueError(f"luminance: expected RGB (N, H, W, 3), got shape {x.shape}")
    return jnp.tensordot(x, jnp.asarray([0.299, 0.587, 0.114], x.dtype), axes=([-1], [0]))[..., None]


def ldl_artifact_map(gan, mse, window: int = 7):
    """LDL's refined artifact map (Liang et al. 2022, get_refined_artifact_map) with MSE-SR in place of GT.

    residual r = sum over channels of |GAN-SR - MSE-SR|; map = var_image(r) ** (1/5) * var_local(r), both
    variances unbiased (ddof=1) as torch.var, the local one over window x window with mirror padding (torch
    'reflect' = numpy 'reflect'). LDL's extra zeroing where the EMA model is worse has no counterpart at
    inference (there is no EMA model), so it is left out, as in DeSRA's LDL* baseline.

    Args:
      gan, mse: (N, H, W, C) float32 in [0, 1].

    Returns:
      (N, H, W) float32 >= 0; DeSRA's LDL* flags pixels above 0.01, 0.005 or 0.001.
    """
    _check_pair(gan, mse)
    residual = jnp.sum(jnp.abs(gan.astype(jnp.float32) - mse.astype(jnp.float32)), axis=-1, keepdims=True)
    _, local_var = local_moments(residual, window, "box", "reflect")
    local_var = local_var[..., 0] * (window * window / (window * window - 1))
    pixels = math.prod(residual.shape[1:3])
    image_var = jnp.var(residual, axis=(1, 2, 3)) * (pixels / (pixels - 1))
    return image_var[:, None, None] ** 0.2 * local_var
