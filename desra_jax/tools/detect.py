"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs and writes masks, D maps, summaries and a
gallery: the work of ``python -m experiments.detect`` (its docstring describes the files and the options)."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np

from desra_jax import report
from desra_jax.data.folder_pairs import batches_by_size, pair_by_name
from desra_jax.data.image_io import read_image, write_image
from desra_jax.files import output_folder, write_csv, write_json
from desra_jax.data.masks import find_mask, read_mask
from desra_jax.detection.detector import Detector
from desra_jax.detection.segmenter import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, load_semantics
from desra_jax.metrics.detection import evaluate_detection, label_regions


@dataclasses.dataclass(frozen=True)
class Pair:
    """One GAN-SR / MSE-SR pair: ``name`` is the relative path without extension, e.g. 'sub/0001'."""

    name: str
    gan: Path
    mse: Path
    gt: Path | None = None


def pair_files(gan_dir: Path, mse_dir: Path, gt_dir: Path | None = None) -> tuple[list[Pair], list[str]]:
    """Pairs GAN-SR and MSE-SR files by relative name (`pair_by_name`); returns (sorted pairs, problems found on
    the way). ``Pair.gt`` is None when ``gt_dir`` has no mask of that name."""
    problems: list[str] = []
    matched = pair_by_name((("GAN-SR", gan_dir), ("MSE-SR", mse_dir)), problems)
    pairs = [Pair(name, gan, mse, find_mask(gt_dir, name) if gt_dir is not None else None)
             for name, (gan, mse) in matched]
    return pairs, problems


def load_pair(pair: Pair, alpha: str) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair, float32 RGB (H, W, 3); ValueError naming the files when the sizes differ."""
    gan, mse = read_image(pair.gan, alpha=alpha), read_image(pair.mse, alpha=alpha)
    if gan.shape != mse.shape:
        raise ValueError(f"{pair.gan}: size {gan.shape[:2]} differs from {pair.mse}: {mse.shape[:2]}")
    return gan, mse


def load_ground_truth(pair: Pair, gt_dir: Path | None, shape: tuple[int, int], problems: list[str],
                      convention: str = "released"):
    """The pair's ground-truth mask, (H, W) bool, or None (no ``gt_dir``; missing or bad mask: a problem). PNG
    labels: only 255 is an artifact in the released convention, any nonzero value in the paper's."""
    if gt_dir is None:
        return None
    if pair.gt is None:
        problems.append(f"{gt_dir / pair.name}.*: no ground-truth mask for {pair.gan}; no metrics for it")
        return None
    try:
        return read_mask(pair.gt, shape=shape, artifact_value=255 if convention == "released" else None)
    except ValueError as error:
        problems.append(f"{error}; no metrics for {pair.gan}")
        return None


def write_outputs(out_dir: Path, name: str, gan: np.ndarray, mse: np.ndarray, mask: np.ndarray, d: np.ndarray,
                  labels: np.ndarray | None = None, num_classes: int = 0):
    """The per-image files: full-size mask, overlay, D map (and segmentation), and the gallery thumbnails."""
    overlay, d_colour = report.overlay_mask(gan, mask), report.colorize_d(d)
    write_image(out_dir / "masks" / f"{name}.png", mask)
    write_image(out_dir / "overlays" / f"{name}.png", overlay)
    write_image(out_dir / "d_maps" / f"{name}.png", d_colour)
    thumbnails = {"mse": mse, "gan": gan, "d": d_colour, "overlay": overlay}
    if labels is not None:
        thumbnails["segmentation"] = report.colorize_labels(labels, num_classes)
        write_image(out_dir / "segmentation" / f"{name}.png", thumbnails["segmentation"])
    for key, image in thumbnails.items():
        write_image(out_dir / "gallery" / f"{name}_{key}.png", report.thumbnail(image))
    return gallery_row(name, labels is not None)


def gallery_row(name: str, segmentation: bool = False) -> dict:
    """The gallery thumbnails of image ``name`` that `write_outputs` writes, relative to the output folder."""
    keys = ("mse", "gan", "d", "overlay") + (("segmentation",) if segmentation else ())
    return {key: f"gallery/{name}_{key}.png" for key in keys}


def mask_record(mask: np.ndarray) -> dict:
    """A detection's numbers for the summaries: size, artifact pixels and fraction, 8-connected regions."""
    return {"height": mask.shape[0], "width": mask.shape[1], "artifact_pixels": int(mask.sum()),
            "artifact_fraction": float(mask.mean()), "regions": label_regions(mask)[1]}


def _finite_or_none(value):
    """JSON has no NaN: undefined ratios (no regions) become null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def run(gan_dir, mse_dir, out_dir, gt_dir=None, threshold=0.7, min_area=4000, batch_size=4, alpha="error",
        segformer=None, class_adjustment=None, segment_source=DEFAULT_SEGMENT,
        segformer_size=DEFAULT_SEGFORMER_SIZE, segformer_resize="auto", indicator="relative", window_method=None,
        metric_convention="released") -> dict:
    """Detects every pair, writes the per-image files, the summaries and the gallery; returns the summary.

    ``segformer``: path of a SegFormer for the semantic adjustment (None: semantics-free); ``class_adjustment``:
    path of its A_k table (None: the published ADE20K table); ``segment_source``: 'gan' or 'mse', the image that
    is segmented; ``segformer_size`` and ``segformer_resize``: how it is resized (`desra_jax.detection.segment`;
    'auto': the checkpoint's own pipeline). ``indicator``, ``window_method``: of `detect_artifacts`;
    ``metric_convention``: 'released' or 'paper' (`desra_jax.metrics.detection`). A SegFormer or table that cannot
    be read raises ValueError naming the file.
    """
    gan_dir, mse_dir, out_dir = Path(gan_dir), Path(mse_dir), Path(out_dir)
    output_folder(out_dir)
    gt_dir = Path(gt_dir) if gt_dir else None
    segmenter, adjustment, semantics = load_semantics(segformer, class_adjustment, segment_source, segformer_size,
                                                      segformer_resize)
    pairs, problems = pair_files(gan_dir, mse_dir, gt_dir)
    records, gallery_rows, preds, gts = [], {}, {}, {}
    detector = Detector(threshold, min_area, segmenter, adjustment, indicator, window_method)
    load = functools.partial(load_pair, alpha=alpha)
    for batch in batches_by_size(pairs, batch_size, load, problems, desc="detect"):
        gans, mses = [b[1] for b in batch], [b[2] for b in batch]
        try:
            masks, ds, labels = detector.batch(gans, mses, batch_size)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            problems += [f"{pair.gan}: {error}; skipped" for pair, _, _ in batch]
            continue
        for i, ((pair, gan, mse), mask, d) in enumerate(zip(batch, masks, ds)):
            image_labels = None if labels is None else labels[i]
            num_classes = 0 if segmenter is None else len(segmenter.names)
            row = write_outputs(out_dir, pair.name, gan, mse, mask, d, image_labels, num_classes)
            record = {"name": pair.name, "gan": str(pair.gan), "mse": str(pair.mse), **mask_record(mask)}
            if image_labels is not None:
                row["legend"] = report.label_legend(image_labels, segmenter.names)
                record["classes"] = {entry["name"]: entry["fraction"] for entry in row["legend"]}
            gallery_rows[pair.name] = row
            records.append(record)
            gt = load_ground_truth(pair, gt_dir, gan.shape[:2], problems, metric_convention)
            if gt is not None:
                preds[pair.name], gts[pair.name] = mask, gt

    records.sort(key=lambda r: r["name"])
    metrics = None
    if preds:
        names = sorted(preds)
        metrics = evaluate_detection([preds[n] for n in names], [gts[n] for n in names],
                                     convention=metric_convention)
        by_name = dict(zip(names, metrics.pop("per_image")))
        for record in records:
            record.update(by_name.get(record["name"], {}))
        metrics = {key: _finite_or_none(value) for key, value in metrics.items()}
    summary = {
        "settings": {"gan_dir": str(gan_dir), "mse_dir": str(mse_dir), "gt_dir": str(gt_dir) if gt_dir else None,
                     "threshold": threshold, "min_area": min_area, "batch_size": batch_size, "alpha": alpha,
                     "indicator": indicator, "metric_convention": metric_convention, "semantics": semantics},
        "pairs": len(pairs), "processed": len(records), "problems": problems, "metrics": metrics,
        "images": [{key: _finite_or_none(value) for key, value in record.items()} for record in records],
    }
    write_summaries(out_dir, summary, gallery_rows)
    return summary


def write_summaries(out_dir: Path, summary: dict, gallery_rows: dict, title: str = "DeSRA artifact detection",
                    counted: str = "pairs") -> None:
    """``summary.csv``, ``summary.json`` and the gallery ``index.html`` of a detection ``summary`` (as `run`
    returns it: ``settings`` with threshold, min_area and semantics; ``images``, one `mask_record` and ``name``
    each; ``processed``, ``pairs``, ``problems``, ``metrics``), ``gallery_rows`` by name (`gallery_row`);
    ``counted`` names what ``pairs`` counts in the page."""
    columns = ["name", "height", "width", "artifact_pixels", "artifact_fraction", "regions"]
    if summary["metrics"] is not None:
        columns += ["iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r"]
    write_csv(out_dir / "summary.csv", summary["images"], columns)
    write_json(out_dir / "summary.json", summary)
    settings = summary["settings"]
    numbers = [(f"{counted} processed", f"{summary['processed']} of {summary['pairs']}"),
               ("problems", str(len(summary["problems"]))),
               ("threshold / min_area", f"{settings['threshold']} / {settings['min_area']}")]
    if settings["semantics"] is not None:
        semantics = settings["semantics"]
        numbers += [("semantic adjustment", f"SegFormer {semantics['segformer']} on the "
                     f"{semantics['segment'].upper()}-SR image, A_k from {semantics['class_adjustment']}")]
    if summary["metrics"] is not None:
        numbers += [(key, "n/a" if summary["metrics"][key] is None else f"{summary['metrics'][key]:.4f}")
                    for key in ("mean_iou", "precision", "recall")]
    rows = []
    for record in summary["images"]:
        caption = f"{record['artifact_fraction']:.2%} artifact, {record['regions']} region(s)"
        if record.get("iou") is not None:
            caption += f", IoU {record['iou']:.3f}"
        rows.append({"name": record["name"], "caption": caption, **gallery_rows[record["name"]]})
    columns = report.GALLERY_COLUMNS + ((report.SEGMENTATION_COLUMN,) if settings["semantics"] else ())
    report.write_gallery(out_dir / "index.html", out_dir, title, numbers, rows, summary["problems"], columns)
