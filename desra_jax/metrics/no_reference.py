"""No-reference measures of one image: JPEG blockiness and sharpness (mean gradient magnitude).

Both work on the BT.601 luma on the [0, 255] scale (``rgb_to_y``), over (H, W, 3) float images in [0, 1]; an
optional boolean (H, W) ``where`` restricts them to part of the image (e.g. outside detected artifacts).
"""

from __future__ import annotations

import numpy as np

from desra_jax.metrics.image_quality import rgb_to_y

#: JPEG's block side in the image it compressed (the luma's 8x8 DCT blocks).
JPEG_BLOCK = 8


def _luma(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return 255.0 * np.asarray(rgb_to_y(image))[..., 0]


def blockiness(image: np.ndarray, block: int = JPEG_BLOCK, where: np.ndarray | None = None) -> float:
    """The mean luma jump across the block grid over the mean jump elsewhere (1 for no block structure).

    A jump is |Y(x + 1) - Y(x)| between horizontal, and likewise vertical, neighbours; it crosses the grid when x + 1
    is a multiple of ``block`` (8 for a JPEG-compressed image; 8 x scale for an image super-resolved from one,
    where the LR's 8x8 blocks became (8 scale)^2). Only pairs with both pixels in ``where`` count. JPEG at low
    quality flattens each block and steps at its edges, so the ratio rises above 1; smooth restorations bring
    it back towards 1.
    """
    luma = _luma(image)
    where = np.ones(luma.shape, bool) if where is None else np.asarray(where, bool)
    across, inside = [], []
    for axis in (0, 1):
        jumps = np.abs(np.diff(luma, axis=axis))
        both = np.logical_and(np.take(where, range(luma.shape[axis] - 1), axis),
                              np.take(where, range(1, luma.shape[axis]), axis))
        on_grid = (np.arange(1, luma.shape[axis]) % block) == 0
        grid = np.expand_dims(on_grid, 1 - axis)
        across.append(jumps[both & grid])
        inside.append(jumps[both & ~grid])
    across, inside = np.concatenate(across), np.concatenate(inside)
    if not across.size or not inside.size:
        return float("nan")
    return float(across.mean() / max(inside.mean(), 1e-6))


def mean_gradient(image: np.ndarray, where: np.ndarray | None = None) -> float:
    """Sharpness: the mean luma gradient magnitude sqrt(gx^2 + gy^2) (central differences, [0, 255] scale) over
    the pixels of ``where`` (all by default). Blur lowers it; detail and noise raise it."""
    gy, gx = np.gradient(_luma(image))
    magnitude = np.hypot(gx, gy)
    where = np.ones(magnitude.shape, bool) if where is None else np.asarray(where, bool)
    return float(magnitude[where].mean()) if where.any() else float("nan")
