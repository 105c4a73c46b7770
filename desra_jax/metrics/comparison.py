"""DeSRA's before/after comparison of a fine-tuning (section 4.3 of the paper), on arrays: `compare` of the
artifacts detected on the original and the fine-tuned model's results, and `fidelity` of SR results against HR
images. Reading the labels and HR images from files is the caller's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from desra_jax.metrics.detection import mean_iou, removal_addition_rates
from desra_jax.metrics.image_quality import psnr, ssim
from desra_jax.metrics.no_reference import mean_gradient


def fidelity(results: Sequence[np.ndarray], hrs: Sequence[np.ndarray], crop_border: int,
             lpips_fn: Callable | None = None) -> dict:
    """Mean PSNR and SSIM (RGB, `crop_border` pixels off each side, BasicSR's `calculate_psnr` / `calculate_ssim`
    as Real-ESRGAN's validation uses them) of SR `results` (H, W, 3) in [0, 1] against their `hrs`, and the mean
    LPIPS with `lpips_fn(x, y) -> (N,)` (None: not measured)."""
    scores = {"psnr": [], "ssim": [], "lpips": []}
    for result, hr in zip(results, hrs):
        pair = (result[None], hr[None])
        scores["psnr"].append(float(psnr(*pair, crop_border=crop_border)[0]))
        scores["ssim"].append(float(ssim(*pair, crop_border=crop_border)[0]))
        if lpips_fn is not None:
            scores["lpips"].append(float(lpips_fn(*pair)[0]))
    return {k: float(np.mean(v)) for k, v in scores.items() if v}


def _changes(sr_before, sr_after, masks_before) -> tuple[list[float], list[float]]:
    """Per image, the mean absolute change of the SR result outside the artifacts detected before (0 where there is
    no such pixel), and inside them (images with artifacts only)."""
    outside = [float(np.abs(a - b)[~m].mean()) if (~m).any() else 0.0
               for a, b, m in zip(sr_after, sr_before, masks_before)]
    inside = [float(np.abs(a - b)[m].mean()) for a, b, m in zip(sr_after, sr_before, masks_before) if m.any()]
    return outside, inside


def _sharpness_outside(sr_before, sr_after, masks_before, masks_after) -> float:
    """Mean over images of the fine-tuned result's `mean_gradient` over the original's, where neither detection
    found an artifact (nan when no image has such a pixel): below 1, fine-tuning blurred what it should keep."""
    ratios = []
    for before, after, mask_b, mask_a in zip(sr_before, sr_after, masks_before, masks_after):
        outside = ~(mask_b | mask_a)
        if outside.any():
            ratios.append(mean_gradient(after, outside) / max(mean_gradient(before, outside), 1e-6))
    return float(np.mean(ratios)) if ratios else float("nan")


def _against_labels(masks_before, masks_after, labels) -> dict:
    """IoU of each detection against the labelled images' `labels`, and the rates with B = the labels."""
    labelled = [i for i, label in enumerate(labels) if label is not None]
    if not labelled:
        return {}
    gts = [labels[i] for i in labelled]
    rates = removal_addition_rates(gts, [masks_after[i] for i in labelled])
    return {"iou_before": mean_iou([masks_before[i] for i in labelled], gts),
            "iou_after": mean_iou([masks_after[i] for i in labelled], gts),
            "gt_removal_rate": rates["removal_rate"], "gt_addition_rate": rates["addition_rate"]}


def compare(before, after, names: Sequence[str], labels: Sequence[np.ndarray | None] | None = None,
            hrs: Sequence[np.ndarray | None] | None = None, crop_border: int = 0,
            lpips_fn: Callable | None = None) -> tuple[dict, dict]:
    """Section 4.3's before/after comparison over the held-out images `names`: (summary, per-image records).

    before, after: (SR results (H, W, 3) in [0, 1], boolean masks (H, W)) of the original and the fine-tuned
    model. `labels`: per image its ground-truth mask or None. `removal_rate` and `addition_rate` are the headline
    figures: against the labelled artifacts (B = the labels, as the paper's Table 3 measures) when every image has
    a label, else against the detection before fine-tuning (B = the masks before); `rates_against` in the
    returned details says which. Both versions are kept under their own names (`detected_*`, and with labels
    `gt_*`, with the mean IoU of each detection against the labels). `change_outside_artifacts`: mean absolute
    change of the SR result where nothing was detected before, on the [0, 1] scale (and `change_in_artifacts`
    where something was). `sharpness_outside_artifacts`: the mean luma gradient of the fine-tuned result over the
    original's where neither detection found anything (detail kept: about 1; blur: below).
    `new_artifact_fraction`: the fraction of pixels detected after fine-tuning where nothing was detected before,
    the area behind the addition rate (which counts a region as added for one such pixel). When every image has
    its HR image in `hrs`, `<metric>_before` / `<metric>_after` are both models' `fidelity` (`crop_border`,
    `lpips_fn`): fine-tuning should not cost fidelity (section 4.3).
    Returns (summary, details {"rates_against", "per_image"}).
    """
    (sr_before, masks_before), (sr_after, masks_after) = before, after
    labels = list(labels) if labels is not None else [None] * len(names)
    rates = removal_addition_rates(masks_before, masks_after)
    change, change_in = _changes(sr_before, sr_after, masks_before)
    new = [float((a & ~b).mean()) for a, b in zip(masks_after, masks_before)]
    summary = {
        "artifact_fraction_before": float(np.mean([m.mean() for m in masks_before])),
        "artifact_fraction_after": float(np.mean([m.mean() for m in masks_after])),
        "new_artifact_fraction": float(np.mean(new)),
        "detected_removal_rate": rates["removal_rate"],
        "detected_addition_rate": rates["addition_rate"],
        "change_outside_artifacts": float(np.mean(change)),
        "change_in_artifacts": float(np.mean(change_in)) if change_in else 0.0,
        "sharpness_outside_artifacts": _sharpness_outside(sr_before, sr_after, masks_before, masks_after),
        **_against_labels(masks_before, masks_after, labels),
    }
    per_image = [
        {"name": name, "artifact_fraction_before": float(b.mean()), "artifact_fraction_after": float(a.mean()),
         "new_artifact_fraction": n, **{k: counts[k] for k in ("n_before", "n_removed", "n_after", "n_added")},
         "change_outside_artifacts": c}
        for name, b, a, n, counts, c in zip(names, masks_before, masks_after, new, rates["per_image"], change)
    ]
    if names and hrs is not None and all(hr is not None for hr in hrs):
        for when, results in (("before", sr_before), ("after", sr_after)):
            summary.update({f"{k}_{when}": v for k, v in fidelity(results, hrs, crop_border, lpips_fn).items()})
    against = "labels" if names and all(label is not None for label in labels) else "detection before"
    prefix = "gt" if against == "labels" else "detected"
    summary = {"removal_rate": summary[f"{prefix}_removal_rate"], "addition_rate": summary[f"{prefix}_addition_rate"],
               **summary}
    return summary, {"rates_against": against, "per_image": per_image}
