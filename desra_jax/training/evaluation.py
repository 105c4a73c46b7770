"""Evaluations the training loop runs (`Evaluation`): an SR model on whole images (PSNR / SSIM on the Y channel
with crop border = scale, BasicSR's convention, and the 1-D power-spectrum discrepancy of the slides, for the
model and for bicubic upscaling), and the artifact localizer on whole held-out images (DeSRA's detection
metrics)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from desra_jax import inference
from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample
from desra_jax.losses.frequency import spectrum_discrepancy
from desra_jax.metrics.detection import evaluate_detection
from desra_jax.metrics.image_quality import psnr, ssim
from desra_jax.report import overlay_mask


@dataclasses.dataclass
class Evaluation:
    """What an evaluation reports: `summary` (scalars, logged as `val/<key>`), `details` (JSON, stored beside the
    summary in eval_XXXXXXX.json, e.g. per-image records) and an optional `samples` image (H, W, 3) in [0, 1]."""

    summary: dict[str, float]
    details: dict = dataclasses.field(default_factory=dict)
    samples: np.ndarray | None = None


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


def evaluate_sr(module, params, pairs, scale: int, *, tile: int, overlap: int, num_samples: int) -> Evaluation:
    """`evaluate` of the generator `module` with `params` (whole images in tiles, `inference.upscale`), with the
    per-image records and a `sample_grid` of the first `num_samples` images."""

    def upscale(lr):
        return inference.upscale(module, params, lr, tile=tile, overlap=overlap)

    summary, per_image, outputs = evaluate(upscale, pairs, scale)
    return Evaluation(summary, {"per_image": per_image}, sample_grid(outputs, num_samples))


def centre_crop(image: np.ndarray, max_size: int, multiple: int) -> np.ndarray:
    """The centre of an (H, W, ...) array, each side cut to at most `max_size` and down to a multiple of `multiple`
    (the network's output stride, so that every feature map tiles the image exactly)."""
    h, w = (min(s, max_size) // multiple * multiple for s in image.shape[:2])
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[top : top + h, left : left + w]


def predict_masks(predict, variables, images, threshold: float) -> list[np.ndarray]:
    """Boolean (H, W) artifact masks sigmoid(logit) > threshold, i.e. logit > log(t / (1 - t)), of `predict(variables,
    image) -> (H, W) logits` on each (H, W, 3) image."""
    logit_threshold = float(np.log(threshold / (1.0 - threshold)))
    return [np.asarray(predict(variables, image)) > logit_threshold for image in images]


#: The localizer's summary scalars.
LOCALIZER_KEYS = ("mean_iou", "precision", "recall")


def evaluate_localizer(predict, variables, pairs, *, threshold: float, p: float, max_size: int, stride: int,
                       num_samples: int) -> Evaluation:
    """DeSRA's detection metrics (mean IoU, region precision / recall at overlap `p`, eq. 11-13) of the masks
    `predict_masks` finds on the held-out (name, image, mask) `pairs`, centre-cropped to `max_size` (a multiple
    of `stride`); samples: rows of [image | target | prediction]."""
    names = [name for name, _, _ in pairs]
    images = [centre_crop(image, max_size, stride) for _, image, _ in pairs]
    targets = [centre_crop(mask, max_size, stride) for _, _, mask in pairs]
    preds = predict_masks(predict, variables, images, threshold)
    metrics = evaluate_detection(preds, targets, p)
    # The target fraction is also the IoU of flagging everything: the number a localizer has to beat.
    per_image = [{"name": name, "target_fraction": float(target.mean()), **record}
                 for name, target, record in zip(names, targets, metrics.pop("per_image"))]
    counts = {k: float(v) for k, v in metrics.items() if k not in LOCALIZER_KEYS}
    rows = [(name, image, overlay_mask(image, target), overlay_mask(image, pred))
            for name, image, target, pred in zip(names, images, targets, preds)]
    return Evaluation({k: float(metrics[k]) for k in LOCALIZER_KEYS}, {"counts": counts, "per_image": per_image},
                      sample_grid(rows, num_samples))
