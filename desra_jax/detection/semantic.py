"""Semantic-aware adjustment of DeSRA (eq. 8/9, 14/15): per-class weights A_k on a segmentation label map.

The published table (third_party/ade20k/desra_ade20k_adjustment.tsv, from TencentARC/DeSRA) gives for each of
the 150 ADE20K classes (mmseg order, 0 = wall) a bin index b_k of 20 equal bins of [0, 1]; A_k = 1 - b_k / 20
(A_sky = 1, A_tree = 0.75, A_building = 0.80, as the paper states).
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax.numpy as jnp
import numpy as np

#: The authors' table, shipped with its source and licence in third_party/ade20k/.
ADE20K_ADJUSTMENT_TSV = Path(__file__).resolve().parents[2] / "third_party" / "ade20k" / "desra_ade20k_adjustment.tsv"

#: Number of ADE20K classes the SegFormer of the paper predicts (K of eq. 8).
NUM_ADE20K_CLASSES = 150


def load_class_adjustment(path: str | Path = ADE20K_ADJUSTMENT_TSV) -> tuple[np.ndarray, tuple[str, ...]]:
    """Reads the per-class adjustment table: (A (150,) float32 in (0, 1], class names), rows in class order.

    A is recomputed from the bin column as 1 - bin / 20 (the released code's rule) rather than read from the
    rounded A column.
    """
    path = Path(path)
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f, delimiter="\t") if row and not row[0].startswith("#")]
    header, body = rows[0], rows[1:]
    if header[:3] != ["index", "name", "bin"] or [int(r[0]) for r in body] != list(range(len(body))):
        raise ValueError(f"{path}: expected columns index, name, bin, A with rows 0..K-1 in order, got header {header}")
    bins = np.array([int(r[2]) for r in body])
    if bins.min() < 0 or bins.max() > 19:
        raise ValueError(f"{path}: expected bin indices in 0..19, got {bins.min()}..{bins.max()}")
    return (1.0 - bins / 20.0).astype(np.float32), tuple(r[1] for r in body)


def semantic_weights(labels: jnp.ndarray, class_adjustment) -> jnp.ndarray:
    """Per-pixel weights 1 / A_k of eq. 9/14 (the released script multiplies D by them).

    Args:
      labels: (N, H, W) integer class indices in [0, K) (ADE20K: K = 150, 0 = wall). Out-of-range labels
        (e.g. an ignore index 255) get weight 1, i.e. no adjustment.
      class_adjustment: (K,) A_k in (0, 1].

    Returns:
      (N, H, W) float32 >= 1.
    """
    if labels.ndim != 3:
        raise ValueError(f"semantic_weights: expected (N, H, W) class labels, got shape {labels.shape}")
    reciprocal = 1.0 / jnp.asarray(class_adjustment, jnp.float32)
    return jnp.take(reciprocal, labels.astype(jnp.int32), mode="fill", fill_value=1.0)
