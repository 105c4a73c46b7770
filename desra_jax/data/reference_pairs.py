"""Restored images and their clean references (the deraining test sets' ground truth), matched by name: a
``rain-``/``norain-`` prefix, a ``gt`` suffix or a rainy/clean folder marks a file's role and is not part of its
name (`pairing_key`); what evaluation reads.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath

import numpy as np

from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.image_io import read_image
from desra_jax.data.matching import pair_by_name

_RAINY_FOLDERS = {"rainy", "rain", "input"}
_CLEAN_FOLDERS = {"norain", "gt", "target", "groundtruth"}
_PREFIX = re.compile(r"^(no)?rain[-_]", re.IGNORECASE)
_GT_SUFFIX = re.compile(r"[-_]?gt$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ReferencePair:
    """A derained image and its ground truth; ``name`` is the pairing key, e.g. '001'."""

    name: str
    pred: Path
    gt: Path


def pairing_key(relative: str) -> tuple[str, str | None]:
    """(key, role) of a path relative to its folder: 'rainy/rain-001.png' -> ('001', 'rainy'),
    'norain-001.png' -> ('001', 'clean'), 'gt/001gt.png' -> ('001', 'clean'), 'sub/7.jpg' -> ('sub/7', None)."""
    path = PurePosixPath(relative)
    role, folders = None, []
    for folder in path.parent.parts:
        if folder.lower() in _RAINY_FOLDERS | _CLEAN_FOLDERS:
            role = "rainy" if folder.lower() in _RAINY_FOLDERS else "clean"
        else:
            folders.append(folder)
    stem = path.stem
    prefix = _PREFIX.match(stem)
    if prefix:
        role, stem = ("clean" if prefix.group(1) else "rainy"), stem[prefix.end() :]
    elif _GT_SUFFIX.search(stem) and _GT_SUFFIX.sub("", stem):
        role, stem = "clean", _GT_SUFFIX.sub("", stem)
    return "/".join(folders + [stem]), role


def pair_references(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[ReferencePair], list[str]]:
    """Pairs derained images with ground truth by ``pairing_key`` (`pair_by_name`); returns (sorted pairs, problems
    by file name). Rainy inputs inside ``gt_dir`` (role 'rainy') are not ground truth and are ignored."""
    problems: list[str] = []
    matched = pair_by_name((("derained image", pred_dir), ("ground truth", gt_dir)), problems,
                           keys=(_key, _ground_truth_key))
    return [ReferencePair(name, pred, gt) for name, (pred, gt) in matched], problems


def _key(relative: str) -> str:
    return pairing_key(relative)[0]


def _ground_truth_key(relative: str) -> str | None:
    key, role = pairing_key(relative)
    return None if role == "rainy" else key


def load_reference_pair(pair: ReferencePair, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) as float32 RGB (H, W, 3); a Rain800 side-by-side ground truth (twice as wide)
    gives its left, clean half. ValueError naming both files when the sizes differ otherwise, or a file declares
    more than ``max_pixels`` (`read_image`)."""
    pred, gt = read_image(pair.pred, max_pixels=max_pixels), read_image(pair.gt, max_pixels=max_pixels)
    if gt.shape[0] == pred.shape[0] and gt.shape[1] == 2 * pred.shape[1]:
        gt = gt[:, : pred.shape[1]]
    if pred.shape != gt.shape:
        raise ValueError(f"{pair.pred}: size {pred.shape[:2]} differs from the ground truth {pair.gt}: {gt.shape[:2]}")
    return pred, gt
