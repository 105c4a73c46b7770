r"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs (DeSRA, section 3.2 and appendix A.2).

    python -m experiments.detect --gan_dir A --mse_dir B --out_dir C [--gt_dir M] [--threshold 0.7] \
        [--min_area 4000] [--batch_size 4] [--alpha error]

Files are paired by their path relative to the folder, without the extension (``A/sub/x.png`` with
``B/sub/x.jpg``), as in the authors' layout of one sub-folder per model. Ground-truth masks, when given, are
``M/<same path>.png`` (nonzero = artifact) or ``M/<same path>.json`` (labelme). Detection is the semantics-free
variant (``labels=None``: Table 4, third row), since no segmentation weights are read here.

Writes into ``C``: ``masks/<name>.png`` (0 / 255), ``overlays/<name>.png`` (mask on the GAN-SR image),
``d_maps/<name>.png`` (D in colour, viridis: dark = low D = artifact-like), ``summary.csv``, ``summary.json``
(artifact area per image; mean IoU, precision and recall with ``--gt_dir``) and ``index.html``, a gallery
(MSE-SR | GAN-SR | D | mask overlay) whose thumbnails lie in ``gallery/``. Every file appears atomically.

A pair that cannot be processed (no partner, unreadable, alpha channel under ``--alpha error``, sizes that
differ) is logged by file name, listed in ``summary.json`` and at the top of the gallery, and the rest of the
set still runs. 16-bit images are accepted (scaled by 65535: no precision is lost). The exit status is 0 when
at least one pair was processed, 1 otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from desra_jax.data.image_io import IMAGE_EXTENSIONS, list_images, read_image, write_bytes_atomic, write_image
from desra_jax.data.masks import LABELME_EXTENSION, read_mask
from desra_jax.detection import detect_artifacts
from desra_jax.metrics.detection import evaluate_detection, label_regions
from experiments import report

_GAN_DIR = flags.DEFINE_string("gan_dir", None, "Folder of GAN-SR results.", required=True)
_MSE_DIR = flags.DEFINE_string("mse_dir", None, "Folder of MSE-SR results, same relative names.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder for masks, D maps, summaries and the gallery.", required=True)
_GT_DIR = flags.DEFINE_string("gt_dir", None, "Optional folder of ground-truth masks (PNG or labelme JSON).")
_THRESHOLD = flags.DEFINE_float("threshold", 0.7, "Artifact where clip(D / A, 0, 1) < threshold (eq. 9/14).")
_MIN_AREA = flags.DEFINE_integer("min_area", 4000, "Keep 8-connected regions of more than this many pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Pairs of equal size detected together on the device.")
_ALPHA = flags.DEFINE_enum("alpha", "error", ["error", "drop"], "Images with an alpha channel: skip or drop it.")

#: Ground-truth extensions tried in this order for each pair (the first file that exists is used).
GT_EXTENSIONS = (".png", LABELME_EXTENSION) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One GAN-SR / MSE-SR pair: ``name`` is the relative path without extension, e.g. 'sub/0001'."""

    name: str
    gan: Path
    mse: Path
    gt: Path | None = None


def _by_name(folder: Path, problems: list[str]) -> dict[str, Path]:
    """The images of ``folder`` by relative path without extension; two files with one name are a problem."""
    found: dict[str, Path] = {}
    try:
        relatives = list_images(folder)
    except ValueError as error:
        problems.append(str(error))
        return found
    for relative in relatives:
        name = str(Path(relative).with_suffix("").as_posix())
        if name in found:
            problems.append(f"{folder / relative}: same name as {found[name]}; skipped")
        else:
            found[name] = folder / relative
    return found


def pair_files(gan_dir: Path, mse_dir: Path, gt_dir: Path | None = None) -> tuple[list[Pair], list[str]]:
    """Pairs GAN-SR and MSE-SR files by relative name; returns (sorted pairs, problems found on the way).

    ``Pair.gt`` is None when ``gt_dir`` has no mask of that name.
    """
    problems: list[str] = []
    gans, mses = _by_name(gan_dir, problems), _by_name(mse_dir, problems)
    problems += [f"{gans[n]}: no MSE-SR file of the same name in {mse_dir}" for n in sorted(gans.keys() - mses.keys())]
    problems += [f"{mses[n]}: no GAN-SR file of the same name in {gan_dir}" for n in sorted(mses.keys() - gans.keys())]
    pairs = []
    for name in sorted(gans.keys() & mses.keys()):
        gt = None
        if gt_dir is not None:
            gt = next((gt_dir / f"{name}{ext}" for ext in GT_EXTENSIONS if (gt_dir / f"{name}{ext}").is_file()), None)
        pairs.append(Pair(name, gans[name], mses[name], gt))
    return pairs, problems


def load_pair(pair: Pair, alpha: str) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair, float32 RGB (H, W, 3); ValueError naming the files when the sizes differ."""
    gan, mse = read_image(pair.gan, alpha=alpha), read_image(pair.mse, alpha=alpha)
    if gan.shape != mse.shape:
        raise ValueError(f"{pair.gan}: size {gan.shape[:2]} differs from {pair.mse}: {mse.shape[:2]}")
    return gan, mse


def load_ground_truth(pair: Pair, gt_dir: Path | None, shape: tuple[int, int], problems: list[str]):
    """The pair's ground-truth mask, (H, W) bool, or None (no ``gt_dir``; missing or bad mask: a problem)."""
    if gt_dir is None:
        return None
    if pair.gt is None:
        problems.append(f"{gt_dir / pair.name}.*: no ground-truth mask for {pair.gan}; no metrics for it")
        return None
    try:
        return read_mask(pair.gt, shape=shape)
    except ValueError as error:
        problems.append(f"{error}; no metrics for {pair.gan}")
        return None


@functools.cache
def _jitted_detector(threshold: float, min_area: int):
    return jax.jit(functools.partial(detect_artifacts, threshold=threshold, min_area=min_area))


def detect_batch(gans: list[np.ndarray], mses: list[np.ndarray], batch_size: int, threshold: float, min_area: int):
    """Masks (bool) and D maps (float32), (H, W) each, for up to ``batch_size`` pairs of one size.

    A short batch is padded to ``batch_size`` by repeating its last pair, so each image size compiles once.
    """
    padding = [gans[-1]] * (batch_size - len(gans)), [mses[-1]] * (batch_size - len(mses))
    detector = _jitted_detector(threshold, min_area)
    mask, d = detector(np.stack(gans + padding[0]), np.stack(mses + padding[1]))
    return np.asarray(mask)[: len(gans)], np.asarray(d)[: len(gans)]


def write_outputs(out_dir: Path, name: str, gan: np.ndarray, mse: np.ndarray, mask: np.ndarray, d: np.ndarray):
    """The per-image files: full-size mask, overlay and D map, and the four gallery thumbnails."""
    overlay, d_colour = report.overlay_mask(gan, mask), report.colorize_d(d)
    write_image(out_dir / "masks" / f"{name}.png", mask)
    write_image(out_dir / "overlays" / f"{name}.png", overlay)
    write_image(out_dir / "d_maps" / f"{name}.png", d_colour)
    thumbnails = {"mse": mse, "gan": gan, "d": d_colour, "overlay": overlay}
    for key, image in thumbnails.items():
        write_image(out_dir / "gallery" / f"{name}_{key}.png", report.thumbnail(image))
    return {key: f"gallery/{name}_{key}.png" for key in thumbnails}


def _finite_or_none(value):
    """JSON has no NaN: undefined ratios (no regions) become null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _csv_text(records: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def run(gan_dir, mse_dir, out_dir, gt_dir=None, threshold=0.7, min_area=4000, batch_size=4, alpha="error") -> dict:
    """Detects every pair, writes the per-image files, the summaries and the gallery; returns the summary."""
    gan_dir, mse_dir, out_dir = Path(gan_dir), Path(mse_dir), Path(out_dir)
    gt_dir = Path(gt_dir) if gt_dir else None
    pairs, problems = pair_files(gan_dir, mse_dir, gt_dir)
    records, gallery_rows, preds, gts = [], {}, {}, {}
    pending = defaultdict(list)  # image size -> pairs waiting for a full batch

    def flush(size):
        batch = pending.pop(size)
        masks, ds = detect_batch([b[1] for b in batch], [b[2] for b in batch], batch_size, threshold, min_area)
        for (pair, gan, mse, gt), mask, d in zip(batch, masks, ds):
            gallery_rows[pair.name] = write_outputs(out_dir, pair.name, gan, mse, mask, d)
            records.append(
                {
                    "name": pair.name, "gan": str(pair.gan), "mse": str(pair.mse), "height": mask.shape[0],
                    "width": mask.shape[1], "artifact_pixels": int(mask.sum()),
                    "artifact_fraction": float(mask.mean()), "regions": label_regions(mask)[1],
                }
            )
            if gt is not None:
                preds[pair.name], gts[pair.name] = mask, gt

    for pair in tqdm(pairs, desc="detect", unit="pair"):
        try:
            gan, mse = load_pair(pair, alpha)
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        gt = load_ground_truth(pair, gt_dir, gan.shape[:2], problems)
        pending[gan.shape].append((pair, gan, mse, gt))
        if len(pending[gan.shape]) == batch_size:
            flush(gan.shape)
    for size in list(pending):
        flush(size)

    records.sort(key=lambda r: r["name"])
    metrics = None
    if preds:
        names = sorted(preds)
        metrics = evaluate_detection([preds[n] for n in names], [gts[n] for n in names])
        by_name = dict(zip(names, metrics.pop("per_image")))
        for record in records:
            record.update(by_name.get(record["name"], {}))
        metrics = {key: _finite_or_none(value) for key, value in metrics.items()}
    summary = {
        "settings": {"gan_dir": str(gan_dir), "mse_dir": str(mse_dir), "gt_dir": str(gt_dir) if gt_dir else None,
                     "threshold": threshold, "min_area": min_area, "batch_size": batch_size, "alpha": alpha,
                     "semantics": None},
        "pairs": len(pairs), "processed": len(records), "problems": problems, "metrics": metrics,
        "images": [{key: _finite_or_none(value) for key, value in record.items()} for record in records],
    }
    _write_summaries(out_dir, summary, gallery_rows)
    return summary


def _write_summaries(out_dir: Path, summary: dict, gallery_rows: dict) -> None:
    columns = ["name", "height", "width", "artifact_pixels", "artifact_fraction", "regions"]
    if summary["metrics"] is not None:
        columns += ["iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r"]
    write_bytes_atomic(out_dir / "summary.csv", _csv_text(summary["images"], columns).encode("utf-8"))
    write_bytes_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode("utf-8"))
    numbers = [("pairs processed", f"{summary['processed']} of {summary['pairs']}"),
               ("problems", str(len(summary["problems"]))),
               ("threshold / min_area", f"{summary['settings']['threshold']} / {summary['settings']['min_area']}")]
    if summary["metrics"] is not None:
        numbers += [(key, "n/a" if summary["metrics"][key] is None else f"{summary['metrics'][key]:.4f}")
                    for key in ("mean_iou", "precision", "recall")]
    rows = []
    for record in summary["images"]:
        caption = f"{record['artifact_fraction']:.2%} artifact, {record['regions']} region(s)"
        if record.get("iou") is not None:
            caption += f", IoU {record['iou']:.3f}"
        rows.append({"name": record["name"], "caption": caption, **gallery_rows[record["name"]]})
    report.write_gallery(out_dir / "index.html", out_dir, "DeSRA artifact detection", numbers, rows,
                         summary["problems"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _BATCH_SIZE.value < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {_BATCH_SIZE.value}")
    summary = run(_GAN_DIR.value, _MSE_DIR.value, _OUT_DIR.value, _GT_DIR.value, _THRESHOLD.value,
                  _MIN_AREA.value, _BATCH_SIZE.value, _ALPHA.value)
    out_dir = Path(_OUT_DIR.value)
    for problem in summary["problems"]:
        logging.warning("%s", problem)
    logging.info("processed %d of %d pairs, %d problem(s); gallery: %s, summary: %s", summary["processed"],
                 summary["pairs"], len(summary["problems"]), out_dir / "index.html", out_dir / "summary.json")
    return 0 if summary["processed"] else 1


if __name__ == "__main__":
    app.run(main)
