"""DeSRA detection written the way the authors' released script and a cv2/scipy user would write it.

The reference for desra_jax.detection: cv2.GaussianBlur (11x11, sigma 1.5) / cv2.blur on the [0, 255] scale with
cv2.BORDER_REFLECT_101, var = E[x^2] - E[x]^2, C = 58.5225, eps = 1e-8; cv2.erode / cv2.dilate with
np.ones((5, 5)); scipy.ndimage.binary_fill_holes(structure=np.ones((3, 3))); cv2.connectedComponentsWithStats
(connectivity=8), area > min_area. float64 by default (the tests); dtype=np.float32 gives the fast float32 cv2
pipeline the speed benchmark times. Images are NHWC in [0, 1], masks (N, H, W) bool, as in the library.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

C_255 = (0.03 * 255) ** 2
EPS_255 = 1e-8
_FIVE = np.ones((5, 5), np.uint8)


def local_moments(image: np.ndarray, window: int = 11, kind: str = "gaussian", border: str = "reflect",
                  dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel local mean and variance of one (H, W, C) image, by cv2 filters on `dtype`."""
    x = np.ascontiguousarray(image, dtype=dtype)

    def blur(a):
        if kind == "gaussian":
            out = cv2.GaussianBlur(a, (window, window), 1.5, borderType=cv2.BORDER_REFLECT_101)
        else:
            out = cv2.blur(a, (window, window), borderType=cv2.BORDER_REFLECT_101)
        return out.reshape(a.shape)

    mean = blur(x)
    var = blur(x * x) - mean * mean
    if border == "valid":
        half = window // 2
        mean, var = mean[half:-half, half:-half], var[half:-half, half:-half]
    return mean, var


def _variances_255(gan, mse, window, kind, border, dtype):
    var_x = local_moments(gan * 255.0, window, kind, border, dtype)[1]
    var_y = local_moments(mse * 255.0, window, kind, border, dtype)[1]
    return var_x, var_y


def indicator_d(gan, mse, window=11, kind="gaussian", border="reflect", dtype=np.float64) -> np.ndarray:
    """D of the released script for (N, H, W, C) pairs in [0, 1]: (N, H', W'), averaged over channels."""
    out = []
    for x, y in zip(gan, mse):
        var_x, var_y = _variances_255(x, y, window, kind, border, dtype)
        d = (2 * np.sqrt(var_x + EPS_255) * np.sqrt(var_y + EPS_255) + C_255) / (var_x + var_y + C_255)
        out.append(d.mean(axis=-1))
    return np.stack(out)


def indicator_printed(gan, mse, window=11, kind="gaussian", border="reflect") -> np.ndarray:
    """Eq. 7 as printed (no C in the numerator), with the released window, constants and channel mean."""
    out = []
    for x, y in zip(gan, mse):
        var_x, var_y = _variances_255(x, y, window, kind, border, np.float64)
        out.append((2 * np.sqrt(var_x + EPS_255) * np.sqrt(var_y + EPS_255) / (var_x + var_y + C_255)).mean(axis=-1))
    return np.stack(out)


def indicator_absolute(gan, mse, window=11, kind="gaussian", border="reflect") -> np.ndarray:
    """Table 4 row 1: mean over channels of 1 / (1 + (sigma_x - sigma_y)^2), sigmas on [0, 255]."""
    out = []
    for x, y in zip(gan, mse):
        var_x, var_y = _variances_255(x, y, window, kind, border, np.float64)
        diff = np.sqrt(var_x + EPS_255) - np.sqrt(var_y + EPS_255)
        out.append((1.0 / (1.0 + diff**2)).mean(axis=-1))
    return np.stack(out)


def indicator_unnormalized(gan, mse, window=11, kind="gaussian", border="reflect") -> np.ndarray:
    """Table 4 row 2: mean over channels of (sigma_x - sigma_y)^2 / (2 sigma_x sigma_y + C)."""
    out = []
    for x, y in zip(gan, mse):
        var_x, var_y = _variances_255(x, y, window, kind, border, np.float64)
        sx, sy = np.sqrt(var_x + EPS_255), np.sqrt(var_y + EPS_255)
        out.append(((sx - sy) ** 2 / (2 * sx * sy + C_255)).mean(axis=-1))
    return np.stack(out)


def ldl_artifact_map(gan, mse, window=7) -> np.ndarray:
    """LDL's get_refined_artifact_map with MSE-SR as GT, without the EMA term: (N, H, W) float64."""
    out = []
    for x, y in zip(gan.astype(np.float64), mse.astype(np.float64)):
        residual = np.abs(x - y).sum(axis=-1)
        half = window // 2
        padded = np.pad(residual, half, mode="reflect")
        patches = np.lib.stride_tricks.sliding_window_view(padded, (window, window))
        local_var = patches.var(axis=(-1, -2), ddof=1)
        out.append(residual.var(ddof=1) ** 0.2 * local_var)
    return np.stack(out)


def semantic_weights(labels: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """The released script's per-pixel weight 20 / (20 - bin) of each pixel's class: (N, H, W) float64."""
    return (20.0 / (20.0 - bins.astype(np.float64)))[labels]


def artifact_mask(d, weights=None, threshold=0.7) -> np.ndarray:
    adjusted = d if weights is None else d * weights
    return np.clip(adjusted, 0, 1) < threshold


def erode(mask, iterations=1) -> np.ndarray:
    return np.stack([cv2.erode(m.astype(np.uint8), _FIVE, iterations=iterations) for m in mask]).astype(bool)


def dilate(mask, iterations=3) -> np.ndarray:
    return np.stack([cv2.dilate(m.astype(np.uint8), _FIVE, iterations=iterations) for m in mask]).astype(bool)


def fill_holes(mask) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(m, structure=np.ones((3, 3))) for m in mask])


def remove_small_regions(mask, min_area=4000) -> np.ndarray:
    out = []
    for m in mask:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] > min_area
        keep[0] = False
        out.append(keep[labels])
    return np.stack(out)


def refine_mask(mask, min_area=4000) -> np.ndarray:
    return remove_small_regions(fill_holes(dilate(erode(mask))), min_area)


def detect_artifacts(gan, mse, labels=None, bins=None, threshold=0.7, min_area=4000, window=11, kind="gaussian",
                     border="reflect", dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The whole released pipeline: (mask (N, H', W') bool, D (N, H', W'))."""
    d = indicator_d(gan, mse, window, kind, border, dtype)
    weights = None
    if labels is not None:
        if border == "valid":
            half = window // 2
            labels = labels[:, half:-half, half:-half]
        weights = semantic_weights(labels, bins)
    return refine_mask(artifact_mask(d, weights, threshold), min_area), d
