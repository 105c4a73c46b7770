"""Scores derained images against the clean ground truth (PSNR, SSIM, LPIPS, as Table 1 of Zhao 2024): the work
of ``python -m experiments.evaluate`` (its docstring describes the pairing rules, colour and outputs)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from desra_jax.checks import check_number
from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.reference_pairs import load_reference_pair, pair_references
from desra_jax.files import output_folder, write_bytes_atomic, write_csv, write_json
from desra_jax.metrics.image_quality import psnr, ssim

METRICS = ("psnr", "ssim", "lpips")
NO_WEIGHTS = "n/a (no weights)"

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


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What ``experiments.evaluate`` does: score the images of ``pred_dir`` against their references in ``gt_dir``
    (`pair_references`) with ``metrics`` (of `METRICS`) on ``color`` ('y' or 'rgb') less ``crop_border`` pixels
    per side; LPIPS (``lpips_net``) from ``lpips_weights`` and ``lpips_backbone``; ``dataset`` names the row of
    the summary table (default: the ``gt_dir`` folder's name). Writes into ``out_dir``. Images that declare more
    than ``max_pixels`` are refused by name. ValueError naming the option (as the command's flag) when one is out of
    its range."""

    pred_dir: Path
    gt_dir: Path
    out_dir: Path
    metrics: tuple[str, ...] = METRICS
    color: str = "y"
    crop_border: int = 0
    dataset: str | None = None
    lpips_weights: str | None = None
    lpips_backbone: str | None = None
    lpips_net: str = "alex"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        check_number("--crop_border", self.crop_border, 0, whole=True)
        check_number("--max_pixels", self.max_pixels, 1, whole=True)


def run(options: EvaluateOptions) -> dict:
    """Scores every pair, writes per_image.csv, summary.md and summary.json into ``out_dir``; returns the summary."""
    unknown = [m for m in options.metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; choose from {', '.join(METRICS)}")
    metrics = [m for m in METRICS if m in options.metrics]
    out_dir, dataset = output_folder(options.out_dir), options.dataset or Path(options.gt_dir).resolve().name
    lpips_fn = (lpips_function(options.lpips_weights, options.lpips_backbone, options.lpips_net)
                if "lpips" in metrics else None)
    pairs, problems = pair_references(options.pred_dir, options.gt_dir)
    records = []
    for pair in tqdm(pairs, desc="evaluate", unit="pair"):
        try:
            pred, gt = load_reference_pair(pair, options.max_pixels)
        except ValueError as error:  # unreadable, or sizes that differ: the error names the files
            problems.append(f"{error}; skipped")
            continue
        try:
            values = score(pred, gt, metrics, options.color == "y", options.crop_border, lpips_fn)
        except ValueError as error:  # e.g. smaller than SSIM's window
            problems.append(f"{pair.pred}: {error}; skipped")
            continue
        records.append({"name": pair.name, "pred": str(pair.pred), "gt": str(pair.gt), "height": pred.shape[0],
                        "width": pred.shape[1], **values})
    means = {metric: _mean(records, metric) for metric in metrics}
    summary = {
        "settings": {"pred": str(options.pred_dir), "gt": str(options.gt_dir), "dataset": dataset,
                     "metrics": metrics, "color": options.color, "crop_border": options.crop_border,
                     "lpips_net": options.lpips_net if lpips_fn else None},
        "pairs": len(pairs), "processed": len(records), "problems": problems,
        "means": {k: _json_number(v) for k, v in means.items()},
        "images": [{k: _json_number(v) for k, v in record.items()} for record in records],
    }
    columns = ["name", "pred", "gt", "height", "width", *metrics]
    write_csv(out_dir / "per_image.csv", records, columns)
    write_bytes_atomic(out_dir / "summary.md", table_row(dataset, means, metrics).encode("utf-8"))
    write_json(out_dir / "summary.json", summary)
    return summary
