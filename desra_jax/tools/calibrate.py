"""Calibrates DeSRA's per-class adjustment A_k (eq. 8/15) on a folder of GAN-SR / MSE-SR result pairs: the work
of ``python -m experiments.calibrate`` (its docstring describes the method and the options)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import jax

from desra_jax.checks import check_number
from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.matching import batches_by_size, stack_padded
from desra_jax.data.result_pairs import load_result_pair, pair_results
from desra_jax.files import output_folder
from desra_jax.detection import calibrate_class_adjustment, indicator_d, save_class_adjustment
from desra_jax.detection.adjustment import ADJUSTMENT_BINS
from desra_jax.detection.calibration import DEFAULT_NUM_BINS, DEFAULT_PERCENTILE
from desra_jax.detection.semantic_model import Segmenter
from desra_jax.detection.settings import SemanticSettings


#: Label of the rows that pad a short batch: outside every class, so `accumulate` does not count them.
_NOT_A_CLASS = -1


_indicator = jax.jit(indicator_d)


def d_and_label_batches(batches, segmenter: Segmenter, batch_size: int, used: list[str],
                        problems: list[str]) -> Iterator[tuple[jax.Array, jax.Array]]:
    """(D (B, H, W) float32, labels (B, H, W) int32) for each batch of loaded pairs; a short batch is padded to
    ``batch_size`` (one compilation per image size) and its padding rows are labelled outside every class. The
    names of the pairs of each batch yielded go to ``used``; a batch that a check of D or of the segmenter refuses
    (images smaller than D's window) is a line per pair in ``problems`` and skipped."""
    for batch in batches:
        gans, mses = stack_padded([b[1] for b in batch], batch_size), stack_padded([b[2] for b in batch], batch_size)
        try:
            d, labels = _indicator(gans, mses), segmenter(gans, mses).at[len(batch):].set(_NOT_A_CLASS)
        except ValueError as error:
            problems += [f"{pair.gan}: {error}; skipped" for pair, _, _ in batch]
            continue
        used.extend(pair.name for pair, _, _ in batch)
        yield d, labels  # both stay on the device for the histograms


@dataclasses.dataclass(frozen=True)
class CalibrateOptions:
    """What ``experiments.calibrate`` does: calibrate A_k (eq. 15: at least ``percentile`` % of a class's pixels
    have D >= A_k, from histograms of ``num_bins`` bins) on the pairs of ``gan_dir`` and ``mse_dir``
    (`pair_results`) segmented as ``semantics`` says (its ``class_adjustment`` is not read), ``batch_size`` pairs
    of one size at a time, alpha channels as ``alpha`` says, images over ``max_pixels`` refused by name; write the
    table to ``out``. ValueError naming the option (as the command's flag) when one is out of its range."""

    gan_dir: Path
    mse_dir: Path
    semantics: SemanticSettings
    out: Path
    batch_size: int = 4
    alpha: str = "error"
    num_bins: int = DEFAULT_NUM_BINS
    percentile: float = DEFAULT_PERCENTILE
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        check_number("--batch_size", self.batch_size, 1, whole=True)
        check_number("--num_bins", self.num_bins, ADJUSTMENT_BINS, whole=True)
        if self.num_bins % ADJUSTMENT_BINS:
            raise ValueError(f"--num_bins: expected a multiple of {ADJUSTMENT_BINS} (the authors' bins), got "
                             f"{self.num_bins}")
        check_number("--percentile", self.percentile, 0, 100, above=True)
        check_number("--max_pixels", self.max_pixels, 1, whole=True)


def run(options: CalibrateOptions) -> dict:
    """Calibrates on every usable pair and writes the table to ``out`` (when at least one pair was used), with
    the pairs used and the problems by file name under ``calibrated_on``.

    Returns {'pairs', 'used', 'problems', 'seen_classes', 'out'}. An unreadable SegFormer, or an ``out`` whose
    folder cannot be written (checked before any work), raises ValueError naming the file.
    """
    out = Path(options.out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give the file name of the table to write")
    output_folder(out.parent)
    segmenter = options.semantics.segmenter()
    pairs, problems = pair_results(Path(options.gan_dir), Path(options.mse_dir))
    used: list[str] = []
    load = functools.partial(load_result_pair, alpha=options.alpha, max_pixels=options.max_pixels)
    batch_size = max(1, min(options.batch_size, len(pairs)))  # memory follows the data, not the flag
    batches = batches_by_size(pairs, batch_size, load, problems, desc="calibrate")
    adjustment = calibrate_class_adjustment(
        d_and_label_batches(batches, segmenter, batch_size, used, problems), segmenter.names,
        options.num_bins, options.percentile)
    if used:
        save_class_adjustment(out, adjustment, {"gan_dir": str(options.gan_dir), "mse_dir": str(options.mse_dir),
                                                "pairs": len(pairs), "used": sorted(used), "problems": problems})
    return {"pairs": len(pairs), "used": len(used), "problems": problems,
            "seen_classes": int(adjustment.seen.sum()), "out": str(out)}
