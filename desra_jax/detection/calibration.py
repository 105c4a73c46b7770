"""Calibration of the per-class adjustment A_k of DeSRA (eq. 8/15) over a whole data set, in constant memory.

Eq. 15: for each class k, sort the D values of its pixels in descending order and take the value at 85 %. We read
this as: A_k is the largest value such that at least 85 % of class k's pixels have D >= A_k, i.e. the element of
rank ceil(0.85 n) in descending order (the 15th percentile from below, numpy's 'inverted_cdf' of -D at 85).

Instead of sorting every pixel, per-class histograms of D (``num_bins`` equal bins of [0, 1], D clipped to
[0, 1]) are accumulated on the device batch by batch (`accumulate`, a jitted scatter-add over (label, bin)), and
A_k is read from them (`class_adjustment_from_histograms`):

- A exact: the lower edge j / num_bins of the histogram bin holding the percentile, so the true value lies in
  [A exact, A exact + 1 / num_bins) and at least 85 % of the pixels have D >= A exact (the resolution is
  1 / num_bins, 2.5e-4 by default).
- A binned: the authors' 20 bins, A_k = 1 - b_k / 20 with b_k = 19 - floor(20 A), clipped to 0..19: the upper
  edge of the 1/20 interval holding A, counted from D = 1 down (interval 0 = [0.95, 1]). The authors' script says
  of its table "in which of the first few intervals the D value of more than 85 % of the pixels is distributed";
  the upper edge is the reading that gives A_sky = 1 for a smooth class and keeps A >= 0.05 (a finite weight
  1 / A). It never adjusts more than the exact value: A binned >= A exact.
  With ``num_bins`` a multiple of 20 every fine bin lies inside one of the 20, so b_k is exact (no rounding
  error from the histogram).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.data.ade20k import ade20k_class_names
from desra_jax.detection.adjustment import ADJUSTMENT_BINS, ClassAdjustment

#: Histogram bins of D on [0, 1]: a multiple of 20 (exact authors' bins), resolution 2.5e-4.
DEFAULT_NUM_BINS = 4000

#: P of eq. 8/15.
DEFAULT_PERCENTILE = 85.0

#: Counts are int32 on the device (JAX's default integers); the running total is flushed to the host (int64)
#: before a batch could overflow a bin.
_DEVICE_COUNT_LIMIT = np.iinfo(np.int32).max


def init_histograms(num_classes: int, num_bins: int = DEFAULT_NUM_BINS) -> jnp.ndarray:
    """Empty per-class histograms of D: (num_classes, num_bins) int32 zeros."""
    if num_bins % ADJUSTMENT_BINS:
        raise ValueError(f"num_bins: expected a multiple of {ADJUSTMENT_BINS} (exact authors' bins), got {num_bins}")
    return jnp.zeros((num_classes, num_bins), jnp.int32)


@jax.jit
def accumulate(histograms: jnp.ndarray, d: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Adds a batch to the per-class histograms of D (eq. 15's data, streamed).

    Args:
      histograms: (K, B) int32 counts, bin j = [j / B, (j + 1) / B) of D, the last bin closed at 1.
      d: (N, H, W) float32 indicator D; clipped to [0, 1]. Non-finite values are not counted.
      labels: (N, H, W) int class indices; pixels outside [0, K) (an ignore index such as 255) are not counted.

    Returns:
      (K, B) int32, the counts plus this batch's.
    """
    if d.shape != labels.shape:
        raise ValueError(f"accumulate: expected D and labels of one shape, got {d.shape} and {labels.shape}")
    num_classes, num_bins = histograms.shape
    bins = jnp.minimum(jnp.floor(jnp.clip(d, 0.0, 1.0) * num_bins).astype(jnp.int32), num_bins - 1)
    labels = labels.astype(jnp.int32)
    counted = (labels >= 0) & (labels < num_classes) & jnp.isfinite(d)
    # an index past the end is dropped by the scatter: uncounted pixels cost nothing
    flat = jnp.where(counted, labels * num_bins + bins, num_classes * num_bins)
    return histograms.reshape(-1).at[flat.reshape(-1)].add(1, mode="drop").reshape(num_classes, num_bins)


def class_adjustment_from_histograms(histograms, names: Sequence[str] | None = None,
                                     percentile: float = DEFAULT_PERCENTILE) -> ClassAdjustment:
    """A_k of eq. 15 from per-class histograms of D (see the module docstring for the exact conventions).

    Args:
      histograms: (K, B) integer counts (`accumulate`), B a multiple of 20.
      names: K class names; default the 150 ADE20K names (K must then be 150).
      percentile: at least this percentage of a class's pixels have D >= A_k (85 in the paper).

    Returns:
      A `ClassAdjustment`; classes without pixels get A exact = 1, bin 0 (A binned = 1) and pixels = 0.
    """
    histograms = np.asarray(histograms, np.int64)
    num_classes, num_bins = histograms.shape
    names = ade20k_class_names() if names is None else tuple(names)
    if len(names) != num_classes:
        raise ValueError(f"expected {num_classes} class names for histograms of shape {histograms.shape}, "
                         f"got {len(names)}")
    if num_bins % ADJUSTMENT_BINS:
        raise ValueError(f"expected a multiple of {ADJUSTMENT_BINS} bins, got histograms of shape {histograms.shape}")
    _check_percentile(percentile)
    pixels = histograms.sum(axis=1)
    # pixels with D >= j / B, for every bin j: counts summed from the top bin down
    at_or_above = np.cumsum(histograms[:, ::-1], axis=1)[:, ::-1]
    enough = at_or_above * 100.0 >= percentile * pixels[:, None]
    # the highest bin j that still has enough pixels at or above it holds the percentile
    top_bin = num_bins - 1 - np.argmax(enough[:, ::-1], axis=1)
    seen = pixels > 0
    exact = np.where(seen, top_bin / num_bins, 1.0)
    bins = np.where(seen, ADJUSTMENT_BINS - 1 - (top_bin * ADJUSTMENT_BINS) // num_bins, 0)
    return ClassAdjustment(names=names, exact=exact, bins=bins, pixels=pixels, percentile=float(percentile),
                           resolution=1.0 / num_bins)


def calibrate_class_adjustment(batches: Iterable[tuple], names: Sequence[str] | None = None,
                               num_bins: int = DEFAULT_NUM_BINS,
                               percentile: float = DEFAULT_PERCENTILE) -> ClassAdjustment:
    """Eq. 15 over a data set: streams (D, labels) batches through device histograms, then reads A_k.

    Memory is constant in the data set's size: (K, num_bins) counts on the device, flushed into an int64 host
    total only when the next batch could overflow int32.

    Args:
      batches: iterable of (d, labels), each (N, H, W): D float32 (`indicator_d`) and class indices of the same
        pixels (`segment`); sizes may differ between batches (one compilation per size).
      names, percentile: as in `class_adjustment_from_histograms` (default: the 150 ADE20K classes, 85).
      num_bins: histogram bins of D on [0, 1] (a multiple of 20); the exact values' resolution is 1 / num_bins.
    """
    names = ade20k_class_names() if names is None else tuple(names)
    _check_percentile(percentile)  # before the data set is read, not after
    device = init_histograms(len(names), num_bins)
    total = np.zeros(device.shape, np.int64)
    pending = 0  # pixels in `device` since the last flush: an upper bound on any of its counts
    for d, labels in batches:
        if pending + jnp.size(d) > _DEVICE_COUNT_LIMIT:
            total += np.asarray(device)
            device, pending = init_histograms(len(names), num_bins), 0
        device = accumulate(device, jnp.asarray(d), jnp.asarray(labels))
        pending += jnp.size(d)
    return class_adjustment_from_histograms(total + np.asarray(device), names, percentile)


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile: expected a value in (0, 100], got {percentile}")
