"""Validation of an SR model on whole images: PSNR / SSIM on the Y channel with crop border = scale (BasicSR's
convention) and the 1-D power-spectrum discrepancy of the slides, for the model and for bicubic upscaling."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample
from desra_jax.losses.frequency import spectrum_discrepancy
from desra_jax.metrics.image_quality import psnr, ssim


def validation_pairs(images: Sequence[tuple[str, np.ndarray]], scale: int):
    """(name, lr, hr) triples of whole images: each HR cropped at its bottom and right to a multiple of `scale`
    (BasicSR's mod crop), its LR made by the same bicubic degradation as training."""
    pairs = []
    for name, image in images:
        h, w = (s // scale * scale for s in image.shape[:2])
        hr = image[:h, :w]
        pairs.append((name, bicubic_downsample(hr, scale), hr))
    return pairs


def image_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    """PSNR-Y, SSIM-Y (crop border = scale) and spectrum discrepancy of one (H, W, 3) image in [0, 1]."""
    sr, hr = np.clip(sr, 0.0, 1.0)[None], hr[None]
    return {
        "psnr_y": float(psnr(sr, hr, crop_border=scale, test_y_channel=True)[0]),
        "ssim_y": float(ssim(sr, hr, crop_border=scale, test_y_channel=True)[0]),
        "spectrum_discrepancy": float(spectrum_discrepancy(sr, hr)),
    }


def evaluate(upscale: Callable[[np.ndarray], np.ndarray], pairs, scale: int):
    """Mean metrics of `upscale` (LR (H, W, 3) -> SR) and of bicubic over `pairs`, and per-image records.

    Returns (summary, per_image, outputs): summary has `psnr_y`, `ssim_y`, `spectrum_discrepancy` and the same
    with a `bicubic_` prefix; outputs are (name, bicubic, sr, hr) for the sample grids.
    """
    per_image, outputs = [], []
    for name, lr, hr in pairs:
        sr = np.asarray(upscale(lr))
        bicubic = bicubic_upsample(lr, scale)
        record = {"name": name, **image_metrics(sr, hr, scale)}
        record.update({f"bicubic_{k}": v for k, v in image_metrics(bicubic, hr, scale).items()})
        per_image.append(record)
        outputs.append((name, bicubic, sr, hr))
    keys = [k for k in per_image[0] if k != "name"]
    summary = {k: float(np.mean([r[k] for r in per_image])) for k in keys}
    return summary, per_image, outputs


def sample_grid(outputs, num_samples: int) -> np.ndarray:
    """Rows of [bicubic | SR | HR] for the first `num_samples` images, stacked, each padded with black on the
    right to the widest row; float32 (H, W, 3) in [0, 1]."""
    rows = [np.concatenate([np.clip(im, 0, 1) for im in images[1:]], axis=1) for images in outputs[:num_samples]]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0).astype(np.float32)
