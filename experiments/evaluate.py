r"""Scores derained images against the clean ground truth: PSNR, SSIM and LPIPS, as in Table 1 of Zhao (2024).

    python -m experiments.evaluate --pred DIR --gt DIR --out DIR [--metrics psnr,ssim,lpips] [--color y|rgb] \
        [--crop_border 0] [--dataset NAME] [--lpips_weights alex.pth --lpips_backbone alexnet-owt-7be5be79.pth \
        [--lpips_net alex|vgg]]

Pairing (``pair_files``): a file's pairing key is its path relative to the folder, without the extension, with
the role marks of the released test sets removed. ``--gt`` may be the whole released folder: files marked as
rainy inputs there are ignored. Predictions are usually named after the rainy input; any of these names pair.

======================  ============================================  =========================================
test set (release)      ground truth                                  rainy input / prediction
======================  ============================================  =========================================
Rain100L, Rain100H,     ``norain-001.png`` (or ``norain/norain-001``)  ``rain-001.png`` (or ``rainy/rain-001``)
Rain12 (JORDER/PReNet)
Rain800 (ID-CGAN,       ``test_syn/1.jpg``: [clean | rainy] side by    ``1.png``, half as wide
``test_syn``)           side; the left half is used (pix2pix AB pair,
                        the model maps B to A)
SPA-Data (SPANet,       ``real_test_1000/gt/001gt.png``                ``real_test_1000/rain/001.png``
``real_test_1000``)
re-packaged sets        ``target/001.png``                             ``input/001.png``
(MPRNet, Restormer)
======================  ============================================  =========================================

Role marks: a leading ``rain-`` / ``norain-`` (or ``_``), a trailing ``gt`` / ``_gt`` / ``-gt`` (any case), and the
folders ``rainy``, ``rain``, ``input`` (rainy) and ``norain``, ``gt``, ``target``, ``groundtruth`` (clean). A
ground-truth image exactly twice as wide as its prediction is read as a Rain800 side-by-side pair.

Colour: deraining papers mostly report PSNR/SSIM on the Y channel of YCbCr (BT.601, MATLAB's ``rgb2ycbcr``), as
the Rain100L/Rain100H tables of JORDER (Yang et al. 2017) and the evaluation scripts released with PReNet, RCDNet,
MPRNet and Restormer do; some re-implementations (e.g. ID-CGAN's Rain800 numbers as re-run in mmagic) use RGB.
Zhao (2024) does not say. ``--color y`` (default) follows the majority; ``--color rgb`` is the alternative. Both
as BasicSR computes them (``desra_jax.metrics.image_quality``), crop border 0 (deraining keeps the full frame).
LPIPS is always on RGB; it needs the two weight files (``desra_jax.convert.lpips``), otherwise its column reads
"n/a (no weights)", never a stand-in number.

Writes into ``--out``: ``per_image.csv`` (one row per pair), ``summary.md`` (the Table 1 row: dataset | PSNR |
SSIM | LPIPS, means over the processed pairs) and ``summary.json`` (settings, means, every image, problems). A pair
that cannot be scored (no partner, unreadable, sizes that differ) is reported by file name and the rest still
run; the exit status is 0 when at least one pair was scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path, PurePosixPath

import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from desra_jax.data.image_io import list_images, read_image, write_bytes_atomic
from desra_jax.metrics.image_quality import psnr, ssim
from experiments.detect import csv_text

METRICS = ("psnr", "ssim", "lpips")
NO_WEIGHTS = "n/a (no weights)"

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined when run as a program, not at import, so that tests and other CLIs can import this module."""
    flags.DEFINE_string("pred", None, "Folder of derained images.", required=True)
    flags.DEFINE_string("gt", None, "Folder of clean ground truth (the released test folder).", required=True)
    flags.DEFINE_string("out", None, "Folder for per_image.csv, summary.md and summary.json.", required=True)
    flags.DEFINE_list("metrics", list(METRICS), "Any of psnr, ssim, lpips.")
    flags.DEFINE_enum("color", "y", ["y", "rgb"], "PSNR/SSIM on BT.601 Y (deraining papers) or RGB.")
    flags.DEFINE_integer("crop_border", 0, "Pixels dropped on each side before PSNR/SSIM.")
    flags.DEFINE_string("dataset", None, "Name in the summary table; default: the --gt folder's name.")
    flags.DEFINE_string("lpips_weights", None, "The lpips package's weights/v0.1/<net>.pth.")
    flags.DEFINE_string("lpips_backbone", None, "torchvision's alexnet-owt-*.pth or vgg16-*.pth.")
    flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone (the package's default: alex).")


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


def _keyed(folder: Path, skip_rainy: bool, problems: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    try:
        relatives = list_images(folder)
    except ValueError as error:
        problems.append(str(error))
        return found
    for relative in relatives:
        key, role = pairing_key(relative)
        if skip_rainy and role == "rainy":
            continue
        if key in found:
            problems.append(f"{folder / relative}: pairs as {key!r} like {found[key]}; skipped")
        else:
            found[key] = folder / relative
    return found


def pair_files(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[Pair], list[str]]:
    """Pairs derained images with ground truth by ``pairing_key``; returns (sorted pairs, problems by file name).

    Rainy inputs inside ``gt_dir`` (role 'rainy') are not ground truth and are ignored.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    problems: list[str] = []
    preds, gts = _keyed(pred_dir, False, problems), _keyed(gt_dir, True, problems)
    problems += [f"{preds[k]}: no ground truth pairs with it in {gt_dir}" for k in sorted(preds.keys() - gts.keys())]
    problems += [f"{gts[k]}: no derained image pairs with it in {pred_dir}" for k in sorted(gts.keys() - preds.keys())]
    return [Pair(k, preds[k], gts[k]) for k in sorted(preds.keys() & gts.keys())], problems


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
    out_dir, dataset = Path(out_dir), dataset or Path(gt_dir).resolve().name
    lpips_fn = lpips_function(lpips_weights, lpips_backbone, lpips_net) if "lpips" in metrics else None
    pairs, problems = pair_files(pred_dir, gt_dir)
    records = []
    for pair in tqdm(pairs, desc="evaluate", unit="pair"):
        try:
            pred, gt = load_pair(pair)
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        values = score(pred, gt, metrics, color == "y", crop_border, lpips_fn)
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
    write_bytes_atomic(out_dir / "per_image.csv", csv_text(records, columns).encode("utf-8"))
    write_bytes_atomic(out_dir / "summary.md", table_row(dataset, means, metrics).encode("utf-8"))
    write_bytes_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode("utf-8"))
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if "lpips" in FLAGS.metrics and not (FLAGS.lpips_weights and FLAGS.lpips_backbone):
        logging.warning("LPIPS needs --lpips_weights and --lpips_backbone; its column will read %r", NO_WEIGHTS)
    summary = run(FLAGS.pred, FLAGS.gt, FLAGS.out, FLAGS.metrics, FLAGS.color, FLAGS.crop_border, FLAGS.dataset,
                  FLAGS.lpips_weights, FLAGS.lpips_backbone, FLAGS.lpips_net)
    for problem in summary["problems"]:
        logging.warning("%s", problem)
    out_dir = Path(FLAGS.out)
    print((out_dir / "summary.md").read_text(), end="")
    logging.info("scored %d of %d pairs, %d problem(s); per image: %s", summary["processed"], summary["pairs"],
                 len(summary["problems"]), out_dir / "per_image.csv")
    return 0 if summary["processed"] else 1


if __name__ == "__main__":
    _define_flags()
    app.run(main)
