"""Scores derained images against the clean ground truth (PSNR, SSIM, LPIPS, as Table 1 of Zhao 2024): the work
of ``python -m experiments.evaluate`` (its docstring describes the pairing rules, colour and outputs)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from desra_jax.data.matching import pair_by_name
from desra_jax.data.image_io import read_image
from desra_jax.files import output_folder, write_bytes_atomic, write_csv, write_json
from desra_jax.metrics.image_quality import psnr, ssim

METRICS = ("psnr", "ssim", "lpips")
NO_WEIGHTS = "n/a (no weights)"

_RAINY_FOLDERS = {"rainy", "rain", "input"}
_CLEAN_FOLDERS = {"norain", "gt", "target", "groundtruth"}
_PREFIX = re.compile(r"^(no)?rain[-_]", re.IGNORECASE)
_GT_SUFFIX = re.compile(r"[-_]?gt$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Pair:
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


def pair_files(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[Pair], list[str]]:
    """Pairs derained images with ground truth by ``pairing_key`` (`pair_by_name`); returns (sorted pairs, problems
    by file name). Rainy inputs inside ``gt_dir`` (role 'rainy') are not ground truth and are ignored."""
    problems: list[str] = []
    matched = pair_by_name((("derained image", pred_dir), ("ground truth", gt_dir)), problems,
                           keys=(_key, _ground_truth_key))
    return [Pair(name, pred, gt) for name, (pred, gt) in matched], problems


def _key(relative: str) -> str:
    return pairing_key(relative)[0]


def _ground_truth_key(relative: str) -> str | None:
    key, role = pairing_key(relative)
    return None if role == "rainy" else key


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) as float32 RGB (H, W, 3); a Rain800 side-by-side ground truth (twice as wide)
    gives its left, clean half. ValueError naming both files when the sizes differ otherwise."""
    pred, gt = read_image(pair.pred), read_image(pair.gt)
    if gt.shape[0] == pred.shape[0] and gt.shape[1] == 2 * pred.shape[1]:
        gt = gt[:, : pred.shape[1]]
    if pred.shape != gt.shape:
        raise ValueError(f"{pair.pred}: size {pred.shape[:2]} differs from the ground truth {pair.gt}: {gt.shape[:2]}")
    return pred, gt


def score(pred: np.ndarray, gt: np.ndarray, metrics, test_y_channel: bool, crop_border: int, lpips_fn) -> dict:
    """The requested metrics of one (H, W, 3) pair; ``lpips_fn(x, y) -> (N,)`` or None when no weights."""
    x, y = pred[None], gt[None]
    values = {}
    if "psnr" in metrics:
        values["psnr"] = float(psnr(x, y, crop_border, test_y_channel)[0])
    if "ssim" in metrics:
        values["ssim"] = float(ssim(x, y, crop_border, test_y_channel)[0])
    if "lpips" in metrics:
        values["lpips"] = float(lpips_fn(x, y)[0]) if lpips_fn is not None else NO_WEIGHTS
    return values


def lpips_function(weights: str | None, backbone: str | None, net: str):
    """``(x, y) -> LPIPS (N,)`` from the two weight files, or None when either is not given."""
    if not weights or not backbone:
        return None
    from desra_jax.convert.lpips import load_lpips
    from desra_jax.metrics.lpips import lpips

    _, params = load_lpips(weights, backbone, net)
    return lambda x, y: lpips(x, y, params, net)


def _mean(records: list[dict], metric: str):
    """Mean over the scored pairs; ``NO_WEIGHTS`` for LPIPS without weights; None when nothing was scored."""
    values = [record[metric] for record in records]
    if NO_WEIGHTS in values:
        return NO_WEIGHTS
    return float(np.mean(values)) if values else None


def table_row(dataset: str, means: dict, metrics) -> str:
    """The markdown table of Table 1 for one dataset: PSNR 2, SSIM 3, LPIPS 4 decimals, as the paper prints."""
    digits = {"psnr": 2, "ssim": 3, "lpips": 4}
    cells = []
    for metric in metrics:
        value = means[metric]
        cells.append(value if isinstance(value, str) else "n/a" if value is None else f"{value:.{digits[metric]}f}")
    header = "| dataset | " + " | ".join(m.upper() for m in metrics) + " |"
    rule = "| --- |" + " --- |" * len(metrics)
    return "\n".join([header, rule, f"| {dataset} | " + " | ".join(cells) + " |"]) + "\n"


def _json_number(value):
    """JSON has no infinity: PSNR of identical images (inf) becomes the string 'inf'."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def run(pred_dir, gt_dir, out_dir, metrics=METRICS, color="y", crop_border=0, dataset=None, lpips_weights=None,
        lpips_backbone=None, lpips_net="alex") -> dict:
    """Scores every pair, writes per_image.csv, summary.md and summary.json into ``out_dir``; returns the summary."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; choose from {', '.join(METRICS)}")
    metrics = [m for m in METRICS if m in metrics]
    out_dir, dataset = output_folder(out_dir), dataset or Path(gt_dir).resolve().name
    lpips_fn = lpips_function(lpips_weights, lpips_backbone, lpips_net) if "lpips" in metrics else None
    pairs, problems = pair_files(pred_dir, gt_dir)
    records = []
    for pair in tqdm(pairs, desc="evaluate", unit="pair"):
        try:
            pred, gt = load_pair(pair)
        except ValueError as error:  # unreadable, or sizes that differ: the error names the files
            problems.append(f"{error}; skipped")
            continue
        try:
            values = score(pred, gt, metrics, color == "y", crop_border, lpips_fn)
        except ValueError as error:  # e.g. smaller than SSIM's window
            problems.append(f"{pair.pred}: {error}; skipped")
            continue
        records.append({"name": pair.name, "pred": str(pair.pred), "gt": str(pair.gt), "height": pred.shape[0],
                        "width": pred.shape[1], **values})
    means = {metric: _mean(records, metric) for metric in metrics}
    summary = {
        "settings": {"pred": str(pred_dir), "gt": str(gt_dir), "dataset": dataset, "metrics": metrics,
                     "color": color, "crop_border": crop_border, "lpips_net": lpips_net if lpips_fn else None},
        "pairs": len(pairs), "processed": len(records), "problems": problems,
        "means": {k: _json_number(v) for k, v in means.items()},
        "images": [{k: _json_number(v) for k, v in record.items()} for record in records],
    }
    columns = ["name", "pred", "gt", "height", "width", *metrics]
    write_csv(out_dir / "per_image.csv", records, columns)
    write_bytes_atomic(out_dir / "summary.md", table_row(dataset, means, metrics).encode("utf-8"))
    write_json(out_dir / "summary.json", summary)
    return summary
