r"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs (DeSRA, section 3.2 and appendix A.2).

    python -m experiments.detect --gan_dir A --mse_dir B --out_dir C [--gt_dir M] [--threshold 0.7] \
        [--min_area 4000] [--batch_size 4] [--alpha error] [--max_pixels N] \
        [--segformer DIR [--class_adjustment FILE] [--segment gan|mse] [--segformer_size 512]]

Files are paired by their path relative to the folder, without the extension (``A/sub/x.png`` with
``B/sub/x.jpg``), as in the authors' layout of one sub-folder per model. Ground-truth masks, when given, are
``M/<same path>.png`` (nonzero = artifact) or ``M/<same path>.json`` (labelme).

Without ``--segformer`` detection is the semantics-free variant (``labels=None``: Table 4, third row). With
``--segformer DIR`` (a Hugging Face SegFormer directory or an mmseg checkpoint, `desra_jax.convert.load_segformer`)
each pair is segmented and D is adjusted per class (eq. 9/14) by the table of ``--class_adjustment`` (the authors'
published ADE20K table by default; also their ``name--bin`` text file or a JSON from ``experiments.calibrate``).
``--segment gan`` (default) segments the GAN-SR image, as the authors' released detection script does; the
paper's text (appendix A.2) says the MSE-SR image: ``--segment mse``.

Writes into ``C``: ``masks/<name>.png`` (0 / 255), ``overlays/<name>.png`` (mask on the GAN-SR image),
``d_maps/<name>.png`` (D in colour, viridis: dark = low D = artifact-like), with ``--segformer`` also
``segmentation/<name>.png`` (class labels in colour), ``summary.csv``, ``summary.json`` (artifact area per image;
the classes present with ``--segformer``; mean IoU, precision and recall with ``--gt_dir``) and ``index.html``, a
gallery (MSE-SR | GAN-SR | D | mask overlay [| segmentation with a legend of class names]) whose thumbnails lie in
``gallery/``. Every file appears atomically.

A pair that cannot be processed (no partner, unreadable, alpha channel under ``--alpha error``, sizes that
differ, over ``--max_pixels``) is logged by file name, listed in ``summary.json`` and at the top of the gallery,
and the rest of the set still runs. Files inside ``C`` are never read as inputs, and outputs that would land on an
input are refused before any work; batches hold at most as many pairs as there are. 16-bit images are accepted
(scaled by 65535: no precision is lost). The exit status is 0 when at least one pair was processed, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging

from desra_jax.detection.settings import DetectionSettings
from desra_jax.metrics.detection import CONVENTIONS
from desra_jax.tools import detect
from experiments.command import define_detection_flags, define_max_pixels_flag, run_command

flags.DEFINE_string("gan_dir", None, "Folder of GAN-SR results.", required=True)
flags.DEFINE_string("mse_dir", None, "Folder of MSE-SR results, same relative names.", required=True)
flags.DEFINE_string("out_dir", None, "Folder for masks, D maps, summaries and the gallery.", required=True)
flags.DEFINE_string("gt_dir", None, "Optional folder of ground-truth masks (PNG or labelme JSON).")
flags.DEFINE_integer("batch_size", 4, "Pairs of equal size processed together on the device.")
flags.DEFINE_enum("alpha", "error", ["error", "drop"], "Images with an alpha channel: skip or drop it.")
define_detection_flags()
define_max_pixels_flag()
flags.DEFINE_enum("metric_convention", "released", list(CONVENTIONS), "Detection metrics with --gt_dir: 'released' "
                  "(the authors' scripts: overlap >= p, NaN IoU for an empty union, only 255 is artifact in PNG "
                  "labels) or 'paper' (> p, IoU 1, any nonzero label).")
FLAGS = flags.FLAGS


def options() -> detect.DetectOptions:
    """The flags as the tool's options (ValueError for settings that do not go together)."""
    return detect.DetectOptions(Path(FLAGS.gan_dir), Path(FLAGS.mse_dir), Path(FLAGS.out_dir),
                                Path(FLAGS.gt_dir) if FLAGS.gt_dir else None,
                                DetectionSettings.from_values(FLAGS.flag_values_dict()), FLAGS.batch_size,
                                FLAGS.alpha, FLAGS.metric_convention, FLAGS.max_pixels)


def main(argv):
    summary = run_command(argv, lambda: detect.run(options()), batch_size=FLAGS.batch_size)
    if summary is None:  # an unusable output folder, SegFormer or adjustment table: nothing can run
        return 1
    out_dir = Path(FLAGS.out_dir)
    logging.info("processed %d of %d pairs, %d problem(s); gallery: %s, summary: %s", summary["processed"],
                 summary["pairs"], len(summary["problems"]), out_dir / "index.html", out_dir / "summary.json")
    return 0 if summary["processed"] else 1


if __name__ == "__main__":
    app.run(main)
