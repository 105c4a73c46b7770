r"""Calibrates the per-class adjustment A_k of DeSRA (eq. 8/15) on a folder of GAN-SR / MSE-SR result pairs.

    python -m experiments.calibrate --gan_dir A --mse_dir B --segformer DIR --out adjustment.json \
        [--segment gan|mse] [--segformer_size 512] [--batch_size 4] [--num_bins 4000] [--percentile 85]

Pairs files as experiments.detect does (same relative name, any extension), segments one image of each pair with
the SegFormer (``--segment gan`` by default, the image that experiments.detect segments by default, so the table
is calibrated on the labels it will be applied to; the paper calibrates on MSE-SR segmentations, appendix A.2:
``--segment mse``), computes D (`desra_jax.detection.indicator_d`, the released window and constant, full size)
and accumulates per-class histograms of D on the device (`desra_jax.detection.calibrate_class_adjustment`), so
memory does not grow with the data set. Writes our JSON table (`save_class_adjustment`: per class A exact, A
binned to the authors' 20 bins, bin, pixel count, seen), which ``experiments.detect --class_adjustment`` reads.

Pairs that cannot be read are reported by file name and skipped; the exit status is 1 when no pair was used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jax
from absl import app, flags, logging

from desra_jax.detection import calibrate_class_adjustment, indicator_d, save_class_adjustment
from desra_jax.detection.calibration import DEFAULT_NUM_BINS, DEFAULT_PERCENTILE
from experiments.detect import (
    DEFAULT_SEGFORMER_SIZE,
    DEFAULT_SEGMENT,
    Segmenter,
    batches_by_size,
    define_pair_flags,
    load_segmenter,
    pair_files,
    stack_padded,
)

FLAGS = flags.FLAGS

#: Label of the rows that pad a short batch: outside every class, so `accumulate` does not count them.
_NOT_A_CLASS = -1


def _define_calibrate_flags() -> None:
    define_pair_flags()
    flags.mark_flag_as_required("segformer")
    flags.DEFINE_string("out", None, "The JSON table to write (experiments.detect --class_adjustment reads it).",
                        required=True)
    flags.DEFINE_integer("num_bins", DEFAULT_NUM_BINS, "Histogram bins of D on [0, 1], a multiple of 20; the "
                         "exact A_k are accurate to 1 / num_bins.")
    flags.DEFINE_float("percentile", DEFAULT_PERCENTILE, "At least this percentage of a class's pixels have "
                       "D >= A_k (eq. 15: 85).")


_indicator = jax.jit(indicator_d)


def d_and_label_batches(batches, segmenter: Segmenter, batch_size: int) -> Iterator[tuple[jax.Array, jax.Array]]:
    """(D (B, H, W) float32, labels (B, H, W) int32) for each batch of loaded pairs; a short batch is padded to ``batch_size``
    (one compilation per image size) and its padding rows are labelled outside every class."""
    for batch in batches:
        gans, mses = stack_padded([b[1] for b in batch], batch_size), stack_padded([b[2] for b in batch], batch_size)
        labels = segmenter(gans, mses).at[len(batch):].set(_NOT_A_CLASS)
        yield _indicator(gans, mses), labels  # both stay on the device for the histograms


def run(gan_dir, mse_dir, segformer, out, segment_source=DEFAULT_SEGMENT, batch_size=4, alpha="error",
        num_bins=DEFAULT_NUM_BINS, percentile=DEFAULT_PERCENTILE, segformer_size=DEFAULT_SEGFORMER_SIZE) -> dict:
    """Calibrates on every readable pair and writes the table to ``out`` (when at least one pair was used).

    Returns {'pairs', 'used', 'problems', 'seen_classes', 'out'}. An unreadable SegFormer raises ValueError
    naming the file.
    """
    segmenter = load_segmenter(segformer, segment_source, segformer_size)
    pairs, problems = pair_files(Path(gan_dir), Path(mse_dir))
    used = []

    def counted(batches):
        for batch in batches:
            used.extend(pair.name for pair, _, _ in batch)
            yield batch

    batches = counted(batches_by_size(pairs, batch_size, alpha, problems, desc="calibrate"))
    adjustment = calibrate_class_adjustment(d_and_label_batches(batches, segmenter, batch_size), segmenter.names,
                                            num_bins, percentile)
    if used:
        save_class_adjustment(out, adjustment)
    return {"pairs": len(pairs), "used": len(used), "problems": problems,
            "seen_classes": int(adjustment.seen.sum()), "out": str(out)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.batch_size < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    try:
        summary = run(FLAGS.gan_dir, FLAGS.mse_dir, FLAGS.segformer, FLAGS.out, FLAGS.segment, FLAGS.batch_size,
                      FLAGS.alpha, FLAGS.num_bins, FLAGS.percentile, FLAGS.segformer_size or None)
    except ValueError as error:  # an unreadable SegFormer, or bad --num_bins / --percentile
        logging.error("%s", error)
        return 1
    for problem in summary["problems"]:
        logging.warning("%s", problem)
    if not summary["used"]:
        logging.error("no readable pair in %s and %s; nothing written", FLAGS.gan_dir, FLAGS.mse_dir)
        return 1
    logging.info("calibrated on %d of %d pairs (%d problem(s)); %d classes seen; table: %s", summary["used"],
                 summary["pairs"], len(summary["problems"]), summary["seen_classes"], summary["out"])
    return 0


if __name__ == "__main__":
    _define_calibrate_flags()
    app.run(main)
