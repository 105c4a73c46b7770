r"""Calibrates the per-class adjustment A_k of DeSRA (eq. 8/15) on a folder of GAN-SR / MSE-SR result pairs.

    python -m experiments.calibrate --gan_dir A --mse_dir B --segformer DIR --out adjustment.json \
        [--segment gan|mse] [--segformer_size 512] [--batch_size 4] [--num_bins 4000] [--percentile 85] \
        [--max_pixels N]

Pairs files as experiments.detect does (same relative name, any extension), segments one image of each pair with
the SegFormer (``--segment gan`` by default, the image that experiments.detect segments by default, so the table
is calibrated on the labels it will be applied to; the paper calibrates on MSE-SR segmentations, appendix A.2:
``--segment mse``), computes D (`desra_jax.detection.indicator_d`, the released window and constant, full size)
and accumulates per-class histograms of D on the device (`desra_jax.detection.calibrate_class_adjustment`), so
memory does not grow with the data set. Writes our JSON table (`save_class_adjustment`: per class A exact, A
binned to the authors' 20 bins, bin, pixel count, seen), which ``experiments.detect --class_adjustment`` reads.

Pairs that cannot be used (no partner, unreadable, sizes that differ, smaller than D's 11x11 window) are reported
by file name and skipped; the table lists them under ``calibrated_on`` with the pairs used. The exit status is 0
when at least one pair was used, 1 otherwise or when nothing can run (a SegFormer that cannot be read, an ``--out``
that is a folder or lies in a folder that cannot be written: checked before any work).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging

from desra_jax.detection.calibration import DEFAULT_NUM_BINS, DEFAULT_PERCENTILE
from desra_jax.detection.settings import SemanticSettings
from desra_jax.tools import calibrate
from experiments.command import define_max_pixels_flag, define_semantic_flags, run_command

flags.DEFINE_string("gan_dir", None, "Folder of GAN-SR results.", required=True)
flags.DEFINE_string("mse_dir", None, "Folder of MSE-SR results, same relative names.", required=True)
define_semantic_flags(required=True)
flags.DEFINE_string("out", None, "The JSON table to write (experiments.detect --class_adjustment reads it).",
                    required=True)
flags.DEFINE_integer("batch_size", 4, "Pairs of equal size processed together on the device.")
flags.DEFINE_enum("alpha", "error", ["error", "drop"], "Images with an alpha channel: skip or drop it.")
flags.DEFINE_integer("num_bins", DEFAULT_NUM_BINS, "Histogram bins of D on [0, 1], a multiple of 20; the exact A_k "
                     "are accurate to 1 / num_bins.")
flags.DEFINE_float("percentile", DEFAULT_PERCENTILE, "At least this percentage of a class's pixels have D >= A_k "
                   "(eq. 15: 85).")
define_max_pixels_flag()
FLAGS = flags.FLAGS


def options() -> calibrate.CalibrateOptions:
    """The flags as the tool's options."""
    semantics = SemanticSettings(FLAGS.segformer, None, FLAGS.segment, FLAGS.segformer_size or None,
                                 FLAGS.segformer_resize)
    return calibrate.CalibrateOptions(Path(FLAGS.gan_dir), Path(FLAGS.mse_dir), semantics, Path(FLAGS.out),
                                      FLAGS.batch_size, FLAGS.alpha, FLAGS.num_bins, FLAGS.percentile,
                                      FLAGS.max_pixels)


def main(argv):
    summary = run_command(argv, lambda: calibrate.run(options()), batch_size=FLAGS.batch_size)
    if summary is None:  # an unreadable SegFormer, or bad --num_bins / --percentile
        return 1
    if not summary["used"]:
        logging.error("no readable pair in %s and %s; nothing written", FLAGS.gan_dir, FLAGS.mse_dir)
        return 1
    logging.info("calibrated on %d of %d pairs (%d problem(s)); %d classes seen; table: %s", summary["used"],
                 summary["pairs"], len(summary["problems"]), summary["seen_classes"], summary["out"])
    return 0


if __name__ == "__main__":
    app.run(main)
