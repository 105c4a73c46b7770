"""GAN-SR / MSE-SR result pairs: the files of two folders of SR results matched by name (`data.matching`), with
the ground-truth artifact mask of the same name when a mask folder is given; what detection and calibration read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.image_io import read_image
from desra_jax.data.masks import find_mask
from desra_jax.data.matching import pair_by_name


@dataclasses.dataclass(frozen=True)
class ResultPair:
    """One GAN-SR / MSE-SR pair: ``name`` is the relative path without extension, e.g. 'sub/0001'; ``gt`` its
    ground-truth mask file, or None."""

    name: str
    gan: Path
    mse: Path
    gt: Path | None = None


def pair_results(gan_dir: Path, mse_dir: Path, gt_dir: Path | None = None,
                 exclude: Path | None = None) -> tuple[list[ResultPair], list[str]]:
    """Pairs GAN-SR and MSE-SR files by relative name (`pair_by_name`, ``exclude``: the caller's output folder);
    returns (sorted pairs, problems found on the way). ``ResultPair.gt`` is None when ``gt_dir`` has no mask of
    that name."""
    problems: list[str] = []
    matched = pair_by_name((("GAN-SR", gan_dir), ("MSE-SR", mse_dir)), problems, exclude=exclude)
    pairs = [ResultPair(name, gan, mse, find_mask(gt_dir, name) if gt_dir is not None else None)
             for name, (gan, mse) in matched]
    return pairs, problems


def load_result_pair(pair: ResultPair, alpha: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair, float32 RGB (H, W, 3); ValueError naming the files when the sizes differ or a file
    declares more than ``max_pixels`` (`read_image`)."""
    gan, mse = read_image(pair.gan, alpha, max_pixels), read_image(pair.mse, alpha, max_pixels)
    if gan.shape != mse.shape:
        raise ValueError(f"{pair.gan}: size {gan.shape[:2]} differs from {pair.mse}: {mse.shape[:2]}")
    return gan, mse
