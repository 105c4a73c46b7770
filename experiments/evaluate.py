r"""Scores derained images against the clean ground truth: PSNR, SSIM and LPIPS, as in Table 1 of Zhao (2024).

    python -m experiments.evaluate --pred DIR --gt DIR --out DIR [--metrics psnr,ssim,lpips] [--color y|rgb] \
        [--crop_border 0] [--dataset NAME] [--lpips_weights alex.pth --lpips_backbone alexnet-owt-7be5be79.pth \
        [--lpips_net alex|vgg]] [--max_pixels N]

Pairing (``pair_files``): a file's pairing key is its path relative to the folder, without the extension, with
the role marks of the released test sets removed. ``--gt`` may be the whole released folder: files marked as
rainy inputs there are ignored. Predictions are usually named after the rainy input; any of these names pair.

======================  ============================================  =========================================
test set (release)      ground truth                                  rainy input / prediction
======================  ============================================  =========================================
Rain100L, Rain100H,     ``norain-001.png`` (or ``norain/norain-001``)  ``rain-001.png`` (or ``rainy/rain-001``)
Rain12 (JORDER/PReNet)
Rain800 (ID-CGAN,       ``test_syn/1.jpg``: [clean | rainy] side by    ``1.png``, half as wide
``test_syn``)           side; the left half is used (pix2pix AB pair,
                        the model maps B to A)
SPA-Data (SPANet,       ``real_test_1000/gt/001gt.png``                ``real_test_1000/rain/001.png``
``real_test_1000``)
re-packaged sets        ``target/001.png``                             ``input/001.png``
(MPRNet, Restormer)
======================  ============================================  =========================================

Role marks: a leading ``rain-`` / ``norain-`` (or ``_``), a trailing ``gt`` / ``_gt`` / ``-gt`` (any case), and the
folders ``rainy``, ``rain``, ``input`` (rainy) and ``norain``, ``gt``, ``target``, ``groundtruth`` (clean). A
ground-truth image exactly twice as wide as its prediction is read as a Rain800 side-by-side pair.

Colour: deraining papers mostly report PSNR/SSIM on the Y channel of YCbCr (BT.601, MATLAB's ``rgb2ycbcr``), as
the Rain100L/Rain100H tables of JORDER (Yang et al. 2017) and the evaluation scripts released with PReNet, RCDNet,
MPRNet and Restormer do; some re-implementations (e.g. ID-CGAN's Rain800 numbers as re-run in mmagic) use RGB.
Zhao (2024) does not say. ``--color y`` (default) follows the majority; ``--color rgb`` is the alternative. Both
as BasicSR computes them (``desra_jax.metrics.image_quality``), crop border 0 (deraining keeps the full frame).
LPIPS is always on RGB; it needs the two weight files (``desra_jax.convert.lpips``), otherwise its column reads
"n/a (no weights)", never a stand-in number.

Writes into ``--out``: ``per_image.csv`` (one row per pair), ``summary.md`` (the Table 1 row: dataset | PSNR |
SSIM | LPIPS, means over the processed pairs) and ``summary.json`` (settings, means, every image, problems). A pair
that cannot be scored (no partner, unreadable, sizes that differ) is reported by file name and the rest still
run; the exit status is 0 when at least one pair was scored.
"""

from __future__ import annotations

import functools
from pathlib import Path

from absl import app, flags, logging

from desra_jax.tools import evaluate
from experiments.command import define_max_pixels_flag, run_command
from desra_jax.tools.evaluate import METRICS, NO_WEIGHTS

flags.DEFINE_string("pred", None, "Folder of derained images.", required=True)
flags.DEFINE_string("gt", None, "Folder of clean ground truth (the released test folder).", required=True)
flags.DEFINE_string("out", None, "Folder for per_image.csv, summary.md and summary.json.", required=True)
flags.DEFINE_list("metrics", list(METRICS), "Any of psnr, ssim, lpips.")
flags.DEFINE_enum("color", "y", ["y", "rgb"], "PSNR/SSIM on BT.601 Y (deraining papers) or RGB.")
flags.DEFINE_integer("crop_border", 0, "Pixels dropped on each side before PSNR/SSIM.")
flags.DEFINE_string("dataset", None, "Name in the summary table; default: the --gt folder's name.")
flags.DEFINE_string("lpips_weights", None, "The lpips package's weights/v0.1/<net>.pth.")
flags.DEFINE_string("lpips_backbone", None, "torchvision's alexnet-owt-*.pth or vgg16-*.pth.")
flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone (the package's default: alex).")
define_max_pixels_flag()
FLAGS = flags.FLAGS


def main(argv):
    if "lpips" in FLAGS.metrics and not (FLAGS.lpips_weights and FLAGS.lpips_backbone):
        logging.warning("LPIPS needs --lpips_weights and --lpips_backbone; its column will read %r", NO_WEIGHTS)
    options = functools.partial(evaluate.EvaluateOptions, Path(FLAGS.pred), Path(FLAGS.gt), Path(FLAGS.out),
                                tuple(FLAGS.metrics), FLAGS.color, FLAGS.crop_border, FLAGS.dataset,
                                FLAGS.lpips_weights, FLAGS.lpips_backbone, FLAGS.lpips_net, FLAGS.max_pixels)
    summary = run_command(argv, lambda: evaluate.run(options()), (OSError, ValueError))
    if summary is None:  # unknown metrics, unreadable LPIPS weights, an unusable output folder
        return 1
    out_dir = Path(FLAGS.out)
    print((out_dir / "summary.md").read_text(), end="")
    logging.info("scored %d of %d pairs, %d problem(s); per image: %s", summary["processed"], summary["pairs"],
                 len(summary["problems"]), out_dir / "per_image.csv")
    return 0 if summary["processed"] else 1


if __name__ == "__main__":
    app.run(main)
