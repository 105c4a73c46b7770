"""Artifact-detection metrics of DeSRA (section 4.1, eq. 11-13; section 4.3): numpy, on the host.

Masks are boolean (H, W) arrays, ``True`` = artifact. A data set is a sequence of masks whose sizes may differ from
image to image; the prediction and the ground truth of one image must have the same size. Regions are
8-connected components (the connectivity of the authors' released detection script, which keeps 8-connected
regions of more than 4000 pixels).

Two conventions (``convention=``), which differ where the paper's text and the authors' released metric scripts
(TencentARC/DeSRA, ``metrics/calc_iou.py``, ``calc_precision.py``, ``calc_recall.py``) differ:

- ``'released'`` (default, the numbers of the paper's tables come from these scripts): a region counts at overlap
  ``ratio >= threshold`` (both scripts' ``if ratio >= args.threshold``), and the IoU of an image whose predicted
  and labelled masks are both empty is NaN (``calc_iou.py``'s ``np.sum(overlap_mask) / np.sum(total_mask)`` is
  0 / 0), so the data set's mean IoU is NaN too (the script sums the per-image values).
- ``'paper'``: eq. 12-13 as printed, ``|A ∩ B| / |A| > p``; an empty union has IoU 1.0 (the detector agrees with an
  artifact-free ground truth).

The scripts also read labels as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` and keep only 255
(``np.asarray(gt_mask / 255, dtype="int32")`` truncates every other level to 0): that rule belongs to reading the
files, ``desra_jax.data.masks.read_mask(path, artifact_value=255)``. They crop 5 pixels from each side of the
labels to the size of the released detector's 'valid' masks; here both masks of a pair must already have one size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Overlap threshold p of eq. 12-13 ("we empirically set it as 0.5").
DEFAULT_P = 0.5

#: The metric conventions of the module doc: the authors' released scripts, the paper's text.
CONVENTIONS = ("released", "paper")

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(
            f"expected a predicted and a ground-truth mask of the same (H, W) shape, got {pred.shape} and {gt.shape}"
        )
    return pred.astype(bool), gt.astype(bool)


def _check_dataset(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> None:
    if len(preds) != len(gts):
        raise ValueError(f"expected as many predicted as ground-truth masks, got {len(preds)} and {len(gts)}")


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) mask: (labels int32 (H, W), 0 = background, count)."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT_CONNECTED)
    return labels, int(count)


def _region_fractions_inside(regions_of: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each 8-connected region of ``regions_of``: the fraction of its pixels that lie inside ``other``."""
    labels, count = label_regions(regions_of)
    if count == 0:
        return np.zeros(0)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)[1:]
    inside = np.bincount(flat, weights=other.ravel().astype(np.float64), minlength=count + 1)[1:]
    return inside / area


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator; NaN when the denominator is 0 (no regions: the ratio is undefined)."""
    return numerator / denominator if denominator else float("nan")


def iou(pred: np.ndarray, gt: np.ndarray, convention: str = "released") -> float:
    """Eq. 11 of DeSRA for one image: |A ∩ B| / |A ∪ B|, A = detected, B = ground-truth artifact area.

    Both (H, W) boolean. When both masks are empty: NaN with ``convention='released'`` (``calc_iou.py`` divides
    0 by 0), 1.0 with ``'paper'`` (the detector agrees with an artifact-free ground truth; the paper's data set has
    artifacts in every image and leaves this open). See the module doc.
    """
    _check_convention(convention)
    pred, gt = _check_pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return float("nan") if convention == "released" else 1.0
    return float(np.count_nonzero(pred & gt) / union)


def mean_iou(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], convention: str = "released") -> float:
    """Eq. 11 averaged over a data set: "We can calculate IoU for each image, and we use the average IoU".

    With ``convention='released'`` one image with an empty union makes the mean NaN, as ``calc_iou.py``'s running
    sum does; ``'paper'`` counts that image as 1.0.
    """
    _check_dataset(preds, gts)
    if not preds:
        raise ValueError("expected at least one mask pair, got none")
    return float(np.mean([iou(p, g, convention) for p, g in zip(preds, gts)]))


def region_counts(pred: np.ndarray, gt: np.ndarray, p: float = DEFAULT_P, convention: str = "released"
                  ) -> dict[str, int]:
    """Region counts of eq. 12-13 for one image, (H, W) boolean masks.

    Eq. 12: T = {z in S | |A ∩ B| / |A| > p}: a detected region z is correct when more than p of its pixels lie
    inside the ground truth. Eq. 13: R = {z in G | |A ∩ B| / |B| > p}: a ground-truth region is found when more
    than p of its pixels are covered by the detection. Strictly greater with ``convention='paper'``, as printed;
    at least p with ``'released'``, as ``calc_precision.py`` and ``calc_recall.py`` test ``ratio >= threshold``.

    Returns n_s (detected regions), n_t (correct ones), n_g (ground-truth regions), n_r (found ones).
    """
    _check_convention(convention)
    pred, gt = _check_pair(pred, gt)
    counts = np.greater_equal if convention == "released" else np.greater
    correct = counts(_region_fractions_inside(pred, gt), p)
    found = counts(_region_fractions_inside(gt, pred), p)
    return {"n_s": correct.size, "n_t": int(correct.sum()), "n_g": found.size, "n_r": int(found.sum())}


def evaluate_detection(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], p: float = DEFAULT_P,
                       convention: str = "released") -> dict:
    """Mean IoU (eq. 11), precision N_T / N_S (eq. 12) and recall N_R / N_G (eq. 13) over a data set.

    The paper defines precision and recall through the numbers of regions, so the totals count regions over all
    images (precision = sum N_T / sum N_S), not an average of per-image ratios; the per-image values are kept
    alongside (``calc_precision.py`` and ``calc_recall.py`` also divide totals). A ratio whose denominator is 0
    (no detected / no ground-truth regions) is NaN in both conventions (the scripts raise ZeroDivisionError).

    Args:
      preds, gts: sequences of boolean (H_i, W_i) masks, detected and ground truth, pairwise of equal size.
      p: overlap threshold of eq. 12-13.
      convention: 'released' (default) or 'paper', see the module doc: ``>= p`` or ``> p``, and the IoU of an
        empty union (NaN or 1.0).

    Returns:
      {"mean_iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r", "per_image": [{"iou", "precision",
      "recall", "n_s", "n_t", "n_g", "n_r"}, ...]} with plain Python numbers.
    """
    _check_dataset(preds, gts)
    per_image = []
    for pred, gt in zip(preds, gts):
        counts = region_counts(pred, gt, p, convention)
        per_image.append(
            {
                "iou": iou(pred, gt, convention),
                "precision": _ratio(counts["n_t"], counts["n_s"]),
                "recall": _ratio(counts["n_r"], counts["n_g"]),
                **counts,
            }
        )
    totals = {key: sum(image[key] for image in per_image) for key in ("n_s", "n_t", "n_g", "n_r")}
    return {
        "mean_iou": mean_iou(preds, gts, convention),
        "precision": _ratio(totals["n_t"], totals["n_s"]),
        "recall": _ratio(totals["n_r"], totals["n_g"]),
        **totals,
        "per_image": per_image,
    }


def removal_addition(before: np.ndarray, after: np.ndarray, new_fraction: float = 0.0) -> dict[str, int]:
    """Removed and added artifact regions of one image (section 4.3 of DeSRA), (H, W) boolean masks.

    "The condition for judging the removal of artifacts is A ∩ B = 0, and the condition for judging the
    introduction of new artifacts is A ∪ B > B." As in section 4.1, A and B are taken per region z; A is the
    artifact area detected after fine-tuning (``after``) and B (``before``) the artifacts before it, which the
    caller picks (see `removal_addition_rates`): the labelled artifacts of the image (ground truth, Table 3) or the
    detection on the output of the model before fine-tuning. So:

    - a region z of ``before`` is removed when no pixel of ``after`` lies in it (A ∩ B_z = 0);
    - a region z of ``after`` is added when it reaches outside ``before`` (A_z ∪ B > B). The paper's condition
      is one new pixel; ``new_fraction`` (default 0, the paper) counts a region as added only when more than
      this fraction of its pixels lie outside ``before``, for detections whose borders move by a few pixels.

    Returns n_before, n_removed (regions of ``before``), n_after, n_added (regions of ``after``).
    """
    before, after = _check_pair(before, after)
    covered = _region_fractions_inside(before, after)
    outside = 1.0 - _region_fractions_inside(after, before)
    return {
        "n_before": covered.size,
        "n_removed": int(np.count_nonzero(covered == 0)),
        "n_after": outside.size,
        "n_added": int(np.count_nonzero(outside > new_fraction)),
    }


def removal_addition_rates(
    befores: Sequence[np.ndarray], afters: Sequence[np.ndarray], new_fraction: float = 0.0
) -> dict:
    """Removal rate and addition rate of Table 3 / Table 7 of DeSRA over a data set (see ``removal_addition``).

    B (``befores``) is the caller's choice, and a report should name it:

    - the ground-truth artifact masks, when the images are labelled: Table 3 measures against the labelled
      artifacts (its IoU column starts at 51.1 for Real-ESRGAN, DeSRA-det's IoU against the labels in Table 4, and
      falls to 12.9 after fine-tuning), so this is the headline figure whenever labels exist;
    - the detection on the model's output before fine-tuning, on unlabelled images (the only B there is).

    ``afters`` is always the detection on the fine-tuned model's output, mask by mask of the same size as B.

    The paper does not name the unit it counts; "three-quarters of the artifacts on unseen test data can be
    completely removed" counts artifacts, and 75.43 % of its 150 validation images is no whole number, so both
    rates count regions over all images: removal rate = removed B-regions / B-regions (NaN when there are none),
    addition rate = added after-regions / after-regions, 0.0 when no region is detected after fine-tuning
    (nothing was introduced). Per-image counts are kept.

    Returns {"removal_rate", "addition_rate", "n_before", "n_removed", "n_after", "n_added", "per_image"}.
    """
    _check_dataset(befores, afters)
    per_image = [removal_addition(b, a, new_fraction) for b, a in zip(befores, afters)]
    totals = {key: sum(image[key] for image in per_image) for key in ("n_before", "n_removed", "n_after", "n_added")}
    return {
        "removal_rate": _ratio(totals["n_removed"], totals["n_before"]),
        "addition_rate": totals["n_added"] / totals["n_after"] if totals["n_after"] else 0.0,
        **totals,
        "per_image": per_image,
    }
