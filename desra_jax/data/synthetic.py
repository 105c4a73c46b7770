"""GAN-like SR pairs with known artifact regions, made from real photographs (the localizer's default data, the
detection tests and benchmarks).

MSE-SR stand-in: the photograph smoothed (Gaussian, sigma 1.2), as an MSE-trained model over-smooths.
GAN-SR stand-in: the photograph itself (plausible fine detail where the scene has it) plus, inside a few random
ellipses, a high-frequency texture that the scene does not have (oriented stripes with noise, like the
GAN-inference artifacts of DeSRA's Fig. 1). The ellipses are the ground-truth artifact mask.
"""

from __future__ import annotations

import cv2
import numpy as np


def _ellipse_masks(shape, count, rng, min_axis, max_axis):
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    masks = []
    for _ in range(count):
        ay, ax = rng.uniform(min_axis, max_axis, 2) * min(h, w)
        cy, cx = rng.uniform(ay, h - ay), rng.uniform(ax, w - ax)
        masks.append(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0)
    return masks


def _artifact_texture(shape, rng, amplitude):
    """(H, W, 1) zero-mean texture: stripes of period 3-5 px at a random angle, plus fine noise."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 5.0)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), 0.7)
    return (amplitude * (0.7 * stripes + 0.6 * noise / noise.std()))[..., None]


def synthetic_pair(image: np.ndarray, seed: int = 0, regions: int = 2, amplitude: float = 0.08,
                   min_axis: float = 0.12, max_axis: float = 0.22):
    """(gan (H, W, 3), mse (H, W, 3), artifact mask (H, W) bool) from an (H, W, 3) float32 photo in [0, 1].

    Ellipse semi-axes are drawn in [min_axis, max_axis] x min(H, W); the texture's amplitude is in [0, 1] units.
    """
    rng = np.random.default_rng(seed)
    image = np.asarray(image, np.float32)
    mse = cv2.GaussianBlur(image, (0, 0), 1.2, borderType=cv2.BORDER_REFLECT_101)
    gan = image.astype(np.float64)
    truth = np.zeros(image.shape[:2], bool)
    for region in _ellipse_masks(image.shape[:2], regions, rng, min_axis, max_axis):
        gan += region[..., None] * _artifact_texture(image.shape[:2], rng, amplitude)
        truth |= region
    return np.clip(gan, 0, 1).astype(np.float32), mse, truth


def synthetic_batch(images, seed: int = 0, **kwargs):
    """Stacked `synthetic_pair` of each (H, W, 3) image: (gan (N, H, W, 3), mse (N, H, W, 3), masks (N, H, W))."""
    pairs = [synthetic_pair(image, seed + i, **kwargs) for i, image in enumerate(images)]
    return tuple(np.stack(parts) for parts in zip(*pairs))


def synthetic_mask_pairs(photographs, size: int, variants: int, label):
    """(name, GAN-like image, mask) of `variants` synthetic pairs of the centre `size` square of each (name,
    photograph); pair k of the list has synthetic seed k, so no two share their artifacts. The masks are
    `label(gans, mses)` of all pairs at once ((N, size, size, 3) each -> (N, size, size) bool), e.g. DeSRA's
    detection, the labels a localizer learns."""
    names, gans, mses = [], [], []
    for name, image in photographs:
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        if min(top, left) < 0:
            raise ValueError(f"{name}: photograph of {image.shape[:2]} is smaller than the synthetic size {size}")
        square = image[top : top + size, left : left + size]
        for variant in range(variants):
            gan, mse, _ = synthetic_pair(square, seed=len(names))
            names.append(f"{name}_{variant}")
            gans.append(gan)
            mses.append(mse)
    return list(zip(names, gans, np.asarray(label(np.stack(gans), np.stack(mses)))))
