r"""Upscales an image or a folder of images with an SR model, optionally deleting GAN-SR artifacts at inference
time with an MSE-SR partner (DeSRA detection, then eq. 10). The flags are those of Real-ESRGAN's
``inference_realesrgan.py`` where it has them.

    python -m experiments.upscale --input FILE_OR_DIR --output DIR --model realesrgan-x4plus \
        [--outscale 4] [--suffix out] [--ext auto|png|jpg] [--tile 256] [--tile_pad 16] [--bucket 16] \
        [--dtype float32|bfloat16|float16] [--alpha realesrgan|bicubic|drop|error] [--batch_size 4] \
        [--max_batch_mib 512] [--max_pixels N] [--max_output_pixels N] [--overwrite]
    python -m experiments.upscale --input DIR --output DIR --model realesrgan-x4plus --mse_model realesrnet-span-x4 \
        [--threshold 0.7] [--min_area 4000] [--feather 0] [--report [--hr_dir DIR]] \
        [--segformer DIR [--class_adjustment FILE] [--segment gan|mse] [--segformer_size 512]]

``--model`` / ``--mse_model``: a model directory, a ``.pth`` / ``.safetensors`` file, an ncnn ``.param`` (its
``.bin`` beside it) or the bare name of an ncnn model that an installed package ships (``realesrgan-x4plus``,
``spanx4_ch48``, ...) or the project's partner (``realesrnet-span-x4``); where a name was found is printed.

A folder is read recursively and its sub-folders are kept: ``IN/sub/x.png`` becomes ``DIR/sub/x_<suffix>.png``
(``x.png`` for ``--suffix ''``). ``--ext auto`` keeps the input's file type (PNG for types that are only read);
results with alpha or 16 bits that a JPEG cannot hold are written as PNG, as Real-ESRGAN writes RGBA results.
Gray inputs give gray results, 16-bit inputs 16-bit results. ``--alpha``: an alpha channel is upscaled by the
model as a gray image (``realesrgan``, Real-ESRGAN's default) or bicubically (``bicubic``), or dropped
(``drop``), or the file is refused (``error``). ``--outscale``: the final scale (default: the network's); another
scale resizes the network's result with Lanczos, as Real-ESRGAN does.

``--tile``: LR tile side (0: whole images); adjacent tiles overlap by ``2 * --tile_pad`` LR pixels and each keeps the
part nearest its centre, so every kept pixel has ``--tile_pad`` pixels of real context on every side
(`desra_jax.inference.upscale`). Tiles are batched (``--batch_size``) across all local devices, as many per device as
fit ``--max_batch_mib`` of buffers (a 256-px x4plus tile takes 512 MiB). A side shorter than a tile is mirrored beyond
the bottom or right border up to a multiple of ``--bucket`` (as Real-ESRGAN's ``--pre_pad``), so images of many sizes
share a few compilations, kept in the compilation cache between runs. ``--dtype``: the networks' computation
(parameters stay float32; Real-ESRGAN computes in float16 by default).

With ``--mse_model`` the artifacts of the ``--model`` results are detected against the MSE-SR results with the options
of ``experiments.detect`` and replaced by them (eq. 10; ``--feather`` sigma in pixels softens the blend outward); the
masks (at the network's scale) go to ``DIR/masks/<name>.png``, and ``--report`` adds the gallery (``DIR/index.html``:
LR | GAN-SR | MSE-SR | merged | HR with ``--hr_dir`` (same relative names; PSNR of GAN-SR and merged against it) | D |
mask overlay), its images and ``summary.json`` / ``summary.csv``. A partner whose results are blockier than the GAN-SR
results inside the masks (trained on another degradation) is warned about. Both models must have one scale.

Every file appears atomically (a killed run leaves no half image); a rerun skips the inputs whose result exists and
says how many. ``DIR/.upscale-options.json`` records the options that shape the results; a rerun with others is refused
naming them, unless ``--overwrite``. Outputs that would land on an input or on each other are refused before any work.
An image over ``--max_pixels`` or a result over ``--max_output_pixels`` and a file that cannot be read or upscaled are
reported by name and the others still run. With ``--distributed`` (one process per host) each process takes every P-th
of the sorted files. Exit status: 0 when every input was upscaled or had been; 1 when some could not be (the others are
written) or nothing could run (a bad model, option or output folder).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from desra_jax.detection.settings import DetectionSettings
from desra_jax.tools import upscale
from experiments.command import (define_detection_flags, define_distributed_flags, define_max_pixels_flag,
                                 initialize_distributed, run_command)

flags.DEFINE_string("input", None, "Input image or folder (read recursively).", required=True)
flags.DEFINE_string("output", None, "Output folder.", required=True)
flags.DEFINE_string("model", None, "SR model: model directory, .pth/.safetensors, ncnn .param, or an installed "
                    "ncnn model's name (realesrgan-x4plus, spanx4_ch48, ...).", required=True)
flags.DEFINE_string("mse_model", None, "MSE-SR model (same kinds of spec): detect the artifacts of --model's "
                    "results against it and replace them with its results (DeSRA at inference).")
flags.DEFINE_float("outscale", None, "The final upsampling scale of the image (default: the network's).")
flags.DEFINE_string("suffix", "out", "Suffix of the restored image: <name>_<suffix>.<ext>; '' for <name>.<ext>.")
flags.DEFINE_enum("ext", "auto", ["auto", "png", "jpg"], "Image extension; auto: that of the input.")
flags.DEFINE_integer("tile", 256, "LR tile side, 0 for whole images.")
flags.DEFINE_integer("tile_pad", 16, "LR context kept on each side of a tile's cut (tiles overlap by twice it).")
flags.DEFINE_integer("bucket", upscale.DEFAULT_BUCKET, "Pad sides shorter than a tile to a multiple of this; 0: no.")
flags.DEFINE_enum("dtype", "float32", list(upscale.DTYPES), "The networks' computation dtype.")
flags.DEFINE_enum("alpha", "realesrgan", list(upscale.ALPHA_POLICIES), "The upsampler for alpha channels.")
flags.DEFINE_integer("batch_size", 4, "Images of one size, and tiles per device call, processed together.")
flags.DEFINE_integer("max_batch_mib", upscale.MAX_BATCH_MIB, "Tiles per device call: at most what fits these MiB.")
flags.DEFINE_float("feather", 0.0, "With --mse_model: Gaussian sigma (pixels) of the blend outside the mask.")
flags.DEFINE_bool("report", False, "With --mse_model: also write the detection gallery and summaries.")
flags.DEFINE_integer("max_output_pixels", upscale.MAX_OUTPUT_PIXELS, "Refuse inputs whose result would be larger.")
flags.DEFINE_bool("overwrite", False, "Make every result again, also those made with other options.")
define_max_pixels_flag()
flags.DEFINE_string("hr_dir", None, "With --report: HR images by the inputs' names, shown with PSNR against them.")
define_detection_flags()  # used with --mse_model
define_distributed_flags()
FLAGS = flags.FLAGS


def options(process_index: int, process_count: int) -> upscale.UpscaleOptions:
    """The flags as the tool's options (ValueError for an option that is not among its choices)."""
    return upscale.UpscaleOptions(
        Path(FLAGS.input), Path(FLAGS.output), FLAGS.model, FLAGS.mse_model, FLAGS.outscale, FLAGS.suffix, FLAGS.ext,
        FLAGS.tile, FLAGS.tile_pad, FLAGS.bucket, FLAGS.dtype, FLAGS.alpha, FLAGS.batch_size, FLAGS.max_batch_mib,
        DetectionSettings.from_values(FLAGS.flag_values_dict()), FLAGS.feather, FLAGS.report, process_index,
        process_count, FLAGS.max_pixels, FLAGS.max_output_pixels, FLAGS.overwrite,
        Path(FLAGS.hr_dir) if FLAGS.hr_dir else None)


def main(argv):
    import jax
    initialize_distributed()
    summary = run_command(argv, lambda: upscale.run(options(jax.process_index(), jax.process_count())),
                          (ValueError, OSError), FLAGS.batch_size)
    if summary is None:  # a bad model spec, option or output folder: nothing can run
        return 1
    print(f"model: {summary['model']} (x{summary['scale']:g})")
    if summary["mse_model"]:
        print(f"MSE-SR model: {summary['mse_model']}")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} finished file(s): their results exist in {FLAGS.output}")
    for name, fraction in summary.get("replaced", {}).items():
        print(f"  {name}: {fraction:.2%} replaced by MSE-SR")
    print(f"wrote {len(summary['written'])} of {summary['images']} image(s) to {FLAGS.output}"
          + (f"; {len(summary['problems'])} problem(s), listed above" if summary["problems"] else ""))
    if FLAGS.report and summary["mse_model"] and jax.process_index() == 0:
        print(f"gallery: {FLAGS.output}/index.html")
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    app.run(main)
