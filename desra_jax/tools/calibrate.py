"""Calibrates DeSRA's per-class adjustment A_k (eq. 8/15) on a folder of GAN-SR / MSE-SR result pairs: the work
of ``python -m experiments.calibrate`` (its docstring describes the method and the options)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import jax

from desra_jax.data.folder_pairs import batches_by_size, stack_padded
from desra_jax.detection import calibrate_class_adjustment, indicator_d, save_class_adjustment
from desra_jax.detection.calibration import DEFAULT_NUM_BINS, DEFAULT_PERCENTILE
from desra_jax.detection.segmenter import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, Segmenter, load_segmenter
from desra_jax.tools.detect import load_pair, pair_files


#: Label of the rows that pad a short batch: outside every class, so `accumulate` does not count them.
_NOT_A_CLASS = -1


_indicator = jax.jit(indicator_d)


def d_and_label_batches(batches, segmenter: Segmenter, batch_size: int) -> Iterator[tuple[jax.Array, jax.Array]]:
    """(D (B, H, W) float32, labels (B, H, W) int32) for each batch of loaded pairs; a short batch is padded to ``batch_size``
    (one compilation per image size) and its padding rows are labelled outside every class."""
    for batch in batches:
        gans, mses = stack_padded([b[1] for b in batch], batch_size), stack_padded([b[2] for b in batch], batch_size)
        labels = segmenter(gans, mses).at[len(batch):].set(_NOT_A_CLASS)
        yield _indicator(gans, mses), labels  # both stay on the device for the histograms


def run(gan_dir, mse_dir, segformer, out, segment_source=DEFAULT_SEGMENT, batch_size=4, alpha="error",
        num_bins=DEFAULT_NUM_BINS, percentile=DEFAULT_PERCENTILE, segformer_size=DEFAULT_SEGFORMER_SIZE,
        segformer_resize="auto") -> dict:
    """Calibrates on every readable pair and writes the table to ``out`` (when at least one pair was used).

    Returns {'pairs', 'used', 'problems', 'seen_classes', 'out'}. An unreadable SegFormer raises ValueError
    naming the file.
    """
    segmenter = load_segmenter(segformer, segment_source, segformer_size, segformer_resize)
    pairs, problems = pair_files(Path(gan_dir), Path(mse_dir))
    used = []

    def counted(batches):
        for batch in batches:
            used.extend(pair.name for pair, _, _ in batch)
            yield batch

    load = functools.partial(load_pair, alpha=alpha)
    batches = counted(batches_by_size(pairs, batch_size, load, problems, desc="calibrate"))
    adjustment = calibrate_class_adjustment(d_and_label_batches(batches, segmenter, batch_size), segmenter.names,
                                            num_bins, percentile)
    if used:
        save_class_adjustment(out, adjustment)
    return {"pairs": len(pairs), "used": len(used), "problems": problems,
            "seen_classes": int(adjustment.seen.sum()), "out": str(out)}
