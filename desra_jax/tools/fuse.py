"""Repairs one deraining model's outputs with the outputs of others (Zhao 2024, Sec. 2.2 and Fig. 4): the work of
``python -m experiments.fuse`` (its docstring describes the options and outputs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from desra_jax.checks import check_number
from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.matching import pair_by_name
from desra_jax.data.image_io import read_image, write_image
from desra_jax.files import check_collisions, output_folder, same_path, write_json
from desra_jax.fusion import fuse
from desra_jax.models import DeepLabV3Plus
from desra_jax.models.directory import load_model


def load_localizer(path: Path):
    """(module, variables) of the artifact localizer's model directory; ValueError naming it when it holds another
    model (an SR network, say)."""
    module, variables = load_model(path)
    if not isinstance(module, DeepLabV3Plus):
        raise ValueError(f"{path}: holds a {type(module).__name__} model, not an artifact localizer (a DeepLabV3Plus "
                         "model directory, as experiments.localizer writes)")
    return module, variables


def localizer_probabilities(module):
    """Jitted ``(variables, images) -> sigmoid(logits)``: (M, H, W, 3) in [0, 1] -> (M, H, W) in [0, 1]."""
    return jax.jit(lambda variables, images: jax.nn.sigmoid(module.apply(variables, images, train=False)[..., 0]))


def load_outputs(paths: list[Path], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The M models' outputs of one image, (M, H, W, 3); ValueError naming the files when sizes differ or one
    declares more than ``max_pixels`` (`read_image`)."""
    images = [read_image(path, max_pixels=max_pixels) for path in paths]
    for path, image in zip(paths[1:], images[1:]):
        if image.shape != images[0].shape:
            raise ValueError(f"{path}: size {image.shape[:2]} differs from {paths[0]}: {images[0].shape[:2]}")
    return np.stack(images)


@dataclasses.dataclass(frozen=True)
class FuseOptions:
    """What ``experiments.fuse`` does: repair the images of ``base_dir`` where the ``localizer`` (a model
    directory) finds artifacts (probability >= ``threshold``) with the images of the same name in ``other_dirs``,
    weighted with ``temperature``, the seam softened by ``feather`` (`desra_jax.fusion.fuse`); write into
    ``out_dir``. Images that declare more than ``max_pixels`` are refused by name. ValueError naming the option (as
    the command's flag) when one is out of its range."""

    base_dir: Path
    other_dirs: tuple[Path, ...]
    localizer: Path
    out_dir: Path
    feather: float = 3.0
    threshold: float = 0.5
    temperature: float = 1.0
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        check_number("--feather", self.feather, 0)
        check_number("--threshold", self.threshold, 0, 1)
        check_number("--temperature", self.temperature, 0, above=True)
        check_number("--max_pixels", self.max_pixels, 1, whole=True)


def run(options: FuseOptions) -> dict:
    """Fuses every name that all folders share; writes the images and summary.json; returns the summary."""
    folders = [Path(options.base_dir), *map(Path, options.other_dirs)]
    if len(folders) < 2:
        raise ValueError("fuse: give at least one folder of other models' outputs (--others)")
    out_dir = output_folder(options.out_dir)
    if any(same_path(folder) == same_path(out_dir) for folder in folders):
        raise ValueError(f"{out_dir}: is an input folder; give another --out (one inside it is fine: its files are "
                         "never read as inputs)")
    module, variables = load_localizer(options.localizer)
    probabilities = localizer_probabilities(module)
    feather, threshold, temperature = options.feather, options.threshold, options.temperature
    problems: list[str] = []
    roles = [("base", folders[0])] + [("other", folder) for folder in folders[1:]]
    records, named = [], pair_by_name(roles, problems, exclude=out_dir)  # its own results are never inputs
    check_collisions([(out_dir / f"{name}.png", f"the fusion of {paths[0]}") for name, paths in named],
                     [path for _, paths in named for path in paths])
    for name, paths in tqdm(named, desc="fuse", unit="image"):
        try:
            outputs = load_outputs(list(paths), options.max_pixels)
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        probs = np.asarray(probabilities(variables, outputs))
        fused = fuse(outputs[:, None], probs[:, None], 0, feather=feather, threshold=threshold,
                     temperature=temperature)
        write_image(out_dir / f"{name}.png", np.asarray(fused[0]))
        records.append({"name": name, "base_artifact_fraction": float(np.mean(probs[0] >= threshold))})
    summary = {
        "settings": {"base": str(folders[0]), "others": [str(f) for f in folders[1:]],
                     "localizer": str(options.localizer), "feather": feather, "threshold": threshold,
                     "temperature": temperature},
        "fused": len(records), "problems": problems, "images": records,
    }
    write_json(out_dir / "summary.json", summary)
    return summary
