r"""Repairs one deraining model's outputs with the outputs of others (Zhao 2024, Sec. 2.2 and Fig. 4).

    python -m experiments.fuse --base DIR --others DIR [DIR ...] --localizer CKPT --out DIR \
        [--feather 3.0] [--threshold 0.5] [--temperature 1.0] [--max_pixels N]

``--others`` takes a comma-separated list, and folders given after it without a flag are added to it, so both
``--others B,C`` and ``--others B C`` work. ``--localizer`` is a model directory written by
``desra_jax.models.directory.save_model`` (a ``DeepLabV3Plus`` trained on artifact masks); the sigmoid of its
logit, run on each model's output (RGB in [0, 1]), is that output's artifact probability. The outputs and the
probabilities go to ``desra_jax.fusion.fuse`` (its docstring states the weighting and the feathering).

Files are paired across the folders by their path relative to the folder, without the extension (as
``experiments.detect`` pairs). Writes ``<out>/<name>.png`` for each name of ``--base`` that every other folder has,
and ``<out>/summary.json`` (settings, per image the fraction of the base marked as artifact, problems); every file
appears atomically. A name missing from a folder, an unreadable file or sizes that differ are reported by file name
and skipped; the exit status is 0 when at least one image was fused.
"""

from __future__ import annotations

import functools
from pathlib import Path

from absl import app, flags, logging

from desra_jax.tools import fuse
from experiments.command import define_max_pixels_flag, run_command

flags.DEFINE_string("base", None, "Folder of the outputs to repair.", required=True)
flags.DEFINE_list("others", [], "Folders of the other models' outputs (also as trailing arguments).")
flags.DEFINE_string("localizer", None, "Model directory of the artifact localizer.", required=True)
flags.DEFINE_string("out", None, "Folder for the fused images and summary.json.", required=True)
flags.DEFINE_float("feather", 3.0, "Outward Gaussian sigma of the seam, in pixels (0: hard seam).")
flags.DEFINE_float("threshold", 0.5, "The base is repaired where its artifact probability >= this.")
flags.DEFINE_float("temperature", 1.0, "Weights (1 - p + eps)^(1 / T) of the other models.")
define_max_pixels_flag()
FLAGS = flags.FLAGS


def main(argv):
    options = functools.partial(fuse.FuseOptions, Path(FLAGS.base), tuple(map(Path, FLAGS.others + argv[1:])),
                                Path(FLAGS.localizer), Path(FLAGS.out), FLAGS.feather, FLAGS.threshold,
                                FLAGS.temperature, FLAGS.max_pixels)  # built in run_command: a bad value is one line
    summary = run_command(argv, lambda: fuse.run(options()), (FileNotFoundError, ValueError), arguments=True)
    if summary is None:  # no localizer, or no other folder: nothing can run
        return 1
    logging.info("fused %d image(s), %d problem(s); written to %s", summary["fused"], len(summary["problems"]),
                 FLAGS.out)
    return 0 if summary["fused"] else 1


if __name__ == "__main__":
    app.run(main)
