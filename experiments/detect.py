r"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs (DeSRA, section 3.2 and appendix A.2).

    python -m experiments.detect --gan_dir A --mse_dir B --out_dir C [--gt_dir M] [--threshold 0.7] \
        [--min_area 4000] [--batch_size 4] [--alpha error] \
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
differ) is logged by file name, listed in ``summary.json`` and at the top of the gallery, and the rest of the
set still runs. 16-bit images are accepted (scaled by 65535: no precision is lost). The exit status is 0 when
at least one pair was processed, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging

from desra_jax.data.ade20k import ADE20K_ADJUSTMENT_TSV
from desra_jax.detection.indicator import INDICATOR_ALIASES, INDICATORS
from desra_jax.detection.semantic_model import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, RESIZE_MODES, SEGMENT_CHOICES
from desra_jax.detection.settings import DetectionSettings
from desra_jax.detection.sliding import WINDOW_METHODS
from desra_jax.metrics.detection import CONVENTIONS
from desra_jax.tools import detect
from desra_jax.tools.command import run_command

flags.DEFINE_string("gan_dir", None, "Folder of GAN-SR results.", required=True)
flags.DEFINE_string("mse_dir", None, "Folder of MSE-SR results, same relative names.", required=True)
flags.DEFINE_string("out_dir", None, "Folder for masks, D maps, summaries and the gallery.", required=True)
flags.DEFINE_string("gt_dir", None, "Optional folder of ground-truth masks (PNG or labelme JSON).")
flags.DEFINE_float("threshold", 0.7, "Artifact where clip(D / A, 0, 1) < threshold (eq. 9/14).")
flags.DEFINE_integer("min_area", 4000, "Keep 8-connected regions of more than this many pixels.")
flags.DEFINE_integer("batch_size", 4, "Pairs of equal size processed together on the device.")
flags.DEFINE_enum("alpha", "error", ["error", "drop"], "Images with an alpha channel: skip or drop it.")
flags.DEFINE_string("segformer", None, "SegFormer for the semantic adjustment: a Hugging Face directory "
                    "(config.json + weights) or an mmseg checkpoint (desra_jax.convert.load_segformer).")
flags.DEFINE_string("class_adjustment", None, "With --segformer: the per-class A_k table, the authors' "
                    "'name--bin' text file, their table as TSV or a JSON from experiments.calibrate "
                    f"(default: the published ADE20K table, {ADE20K_ADJUSTMENT_TSV.name}).")
flags.DEFINE_enum("segment", DEFAULT_SEGMENT, list(SEGMENT_CHOICES),
                  "Which image of a pair SegFormer segments: 'gan' (default) as the authors' released detection "
                  "script does; 'mse' as the paper's text says (appendix A.2).")
flags.DEFINE_integer("segformer_size", DEFAULT_SEGFORMER_SIZE, "SegFormer's input size (512 for the "
                     "*-512-512 models, 640 for the authors' MiT-B5 640x640); larger images are segmented in "
                     "sliding windows at their own resolution (desra_jax.detection.segment); 0: whole images.")
flags.DEFINE_enum("segformer_resize", "auto", ["auto", *RESIZE_MODES], "How SegFormer sees an image: 'square' "
                  "(stretched to --segformer_size, sliding windows over larger ones), 'keep_ratio' (the authors' "
                  "mmseg pipeline: fit into 2048x640 keeping the aspect ratio, whole image); 'auto': keep_ratio for "
                  "an mmseg checkpoint, square for a Hugging Face one.")
flags.DEFINE_enum("indicator", "released", [*INDICATORS, *INDICATOR_ALIASES], "The indicator: 'released' (eq. 7 "
                  "as released; also 'relative'), 'printed' (eq. 7 as printed, without C in the numerator), "
                  "'absolute', 'unnormalized' (Table 4).")
flags.DEFINE_enum("window_method", None, list(WINDOW_METHODS), "How local windows are summed (default: the "
                  "faster on this backend).")
flags.DEFINE_enum("metric_convention", "released", list(CONVENTIONS), "Detection metrics with --gt_dir: 'released' "
                  "(the authors' scripts: overlap >= p, NaN IoU for an empty union, only 255 is artifact in PNG "
                  "labels) or 'paper' (> p, IoU 1, any nonzero label).")
FLAGS = flags.FLAGS


def options() -> detect.DetectOptions:
    """The flags as the tool's options (ValueError for settings that do not go together)."""
    return detect.DetectOptions(Path(FLAGS.gan_dir), Path(FLAGS.mse_dir), Path(FLAGS.out_dir),
                                Path(FLAGS.gt_dir) if FLAGS.gt_dir else None,
                                DetectionSettings.from_values(FLAGS.flag_values_dict()), FLAGS.batch_size,
                                FLAGS.alpha, FLAGS.metric_convention)


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
