r"""Repairs one deraining model's outputs with the outputs of others (Zhao 2024, Sec. 2.2 and Fig. 4).

    python -m experiments.fuse --base DIR --others DIR [DIR ...] --localizer CKPT --out DIR \
        [--feather 3.0] [--threshold 0.5] [--temperature 1.0]

``--others`` takes a comma-separated list, and folders given after it without a flag are added to it, so both
``--others B,C`` and ``--others B C`` work. ``--localizer`` is a model directory written by
``desra_jax.training.checkpoints.save_model`` (a ``DeepLabV3Plus`` trained on artifact masks); the sigmoid of its
logit, run on each model's output (RGB in [0, 1]), is that output's artifact probability. The outputs and the
probabilities go to ``desra_jax.fusion.fuse`` (its docstring states the weighting and the feathering).

Files are paired across the folders by their path relative to the folder, without the extension (as
``experiments.detect`` pairs). Writes ``<out>/<name>.png`` for each name of ``--base`` that every other folder has,
and ``<out>/summary.json`` (settings, per image the fraction of the base marked as artifact, problems); every file
appears atomically. A name missing from a folder, an unreadable file or sizes that differ are reported by file name
and skipped; the exit status is 0 when at least one image was fused.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from desra_jax.data.image_io import read_image, write_bytes_atomic, write_image
from desra_jax.fusion import fuse
from desra_jax.training.checkpoints import load_model
from experiments.detect import images_by_name

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined when run as a program, not at import, so that tests and other CLIs can import this module."""
    flags.DEFINE_string("base", None, "Folder of the outputs to repair.", required=True)
    flags.DEFINE_list("others", [], "Folders of the other models' outputs (also as trailing arguments).")
    flags.DEFINE_string("localizer", None, "Model directory of the artifact localizer.", required=True)
    flags.DEFINE_string("out", None, "Folder for the fused images and summary.json.", required=True)
    flags.DEFINE_float("feather", 3.0, "Outward Gaussian sigma of the seam, in pixels (0: hard seam).")
    flags.DEFINE_float("threshold", 0.5, "The base is repaired where its artifact probability >= this.")
    flags.DEFINE_float("temperature", 1.0, "Weights (1 - p + eps)^(1 / T) of the other models.")

def localizer_probabilities(module):
    """Jitted ``(variables, images) -> sigmoid(logits)``: (M, H, W, 3) in [0, 1] -> (M, H, W) in [0, 1]."""
    return jax.jit(lambda variables, images: jax.nn.sigmoid(module.apply(variables, images, train=False)[..., 0]))


def load_outputs(paths: list[Path]) -> np.ndarray:
    """The M models' outputs of one image, (M, H, W, 3); ValueError naming the files when sizes differ."""
    images = [read_image(path) for path in paths]
    for path, image in zip(paths[1:], images[1:]):
        if image.shape != images[0].shape:
            raise ValueError(f"{path}: size {image.shape[:2]} differs from {paths[0]}: {images[0].shape[:2]}")
    return np.stack(images)


def run(base_dir, other_dirs, localizer, out_dir, feather=3.0, threshold=0.5, temperature=1.0) -> dict:
    """Fuses every name that all folders share; writes the images and summary.json; returns the summary."""
    folders = [Path(base_dir), *map(Path, other_dirs)]
    if len(folders) < 2:
        raise ValueError("fuse: give at least one folder of other models' outputs (--others)")
    out_dir = Path(out_dir)
    module, variables = load_model(localizer)
    probabilities = localizer_probabilities(module)
    problems: list[str] = []
    by_folder = [images_by_name(folder, problems) for folder in folders]
    for found in by_folder[1:]:
        extra = sorted(found.keys() - by_folder[0].keys())
        problems += [f"{found[n]}: no file named {n!r} in {folders[0]}; unused" for n in extra]
    records = []
    for name in tqdm(sorted(by_folder[0]), desc="fuse", unit="image"):
        missing = [str(folder) for folder, found in zip(folders[1:], by_folder[1:]) if name not in found]
        if missing:
            problems.append(f"{by_folder[0][name]}: no file named {name!r} in {', '.join(missing)}; skipped")
            continue
        try:
            outputs = load_outputs([found[name] for found in by_folder])
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        probs = np.asarray(probabilities(variables, outputs))
        fused = fuse(outputs[:, None], probs[:, None], 0, feather=feather, threshold=threshold,
                     temperature=temperature)
        write_image(out_dir / f"{name}.png", np.asarray(fused[0]))
        records.append({"name": name, "base_artifact_fraction": float(np.mean(probs[0] >= threshold))})
    summary = {
        "settings": {"base": str(folders[0]), "others": [str(f) for f in folders[1:]], "localizer": str(localizer),
                     "feather": feather, "threshold": threshold, "temperature": temperature},
        "fused": len(records), "problems": problems, "images": records,
    }
    write_bytes_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode("utf-8"))
    return summary


def main(argv):
    try:
        summary = run(FLAGS.base, FLAGS.others + argv[1:], FLAGS.localizer, FLAGS.out, FLAGS.feather,
                      FLAGS.threshold, FLAGS.temperature)
    except (FileNotFoundError, ValueError) as error:  # no localizer, or no other folder: nothing can run
        logging.error("%s", error)
        return 1
    for problem in summary["problems"]:
        logging.warning("%s", problem)
    logging.info("fused %d image(s), %d problem(s); written to %s", summary["fused"], len(summary["problems"]),
                 FLAGS.out)
    return 0 if summary["fused"] else 1


if __name__ == "__main__":
    _define_flags()
    app.run(main)
