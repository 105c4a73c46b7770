"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs and writes masks, D maps, summaries and a
gallery: the work of ``python -m experiments.detect`` (its docstring describes the files and the options)."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

from desra_jax.checks import check_number
from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.masks import read_mask
from desra_jax.data.matching import batches_by_size
from desra_jax.data.result_pairs import ResultPair, load_result_pair, pair_results
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.files import check_collisions, output_folder, same_path
from desra_jax.metrics.detection import evaluate_detection
from desra_jax.report import detection_files, write_detection, write_detection_summaries


@dataclasses.dataclass(frozen=True)
class DetectOptions:
    """What ``experiments.detect`` does: detect the pairs of ``gan_dir`` and ``mse_dir`` (`pair_results`) with
    ``detection``, ``batch_size`` pairs of one size at a time, alpha channels as ``alpha`` says ('error' or
    'drop'), and write into ``out_dir``; with ``gt_dir``, the metrics against its masks in ``metric_convention``
    ('released' or 'paper', `desra_jax.metrics.detection`). Images that declare more than ``max_pixels`` are
    refused by name. ValueError naming the option (as the command's flag) when one is out of its range."""

    gan_dir: Path
    mse_dir: Path
    out_dir: Path
    gt_dir: Path | None = None
    detection: DetectionSettings = DetectionSettings()
    batch_size: int = 4
    alpha: str = "error"
    metric_convention: str = "released"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        check_number("--batch_size", self.batch_size, 1, whole=True)
        check_number("--max_pixels", self.max_pixels, 1, whole=True)
        if self.alpha not in ("error", "drop"):
            raise ValueError(f"--alpha: expected 'error' or 'drop', got {self.alpha!r}")


def load_ground_truth(pair: ResultPair, gt_dir: Path | None, shape: tuple[int, int], problems: list[str],
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


def _finite_or_none(value):
    """JSON has no NaN: undefined ratios (no regions) become null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def run(options: DetectOptions) -> dict:
    """Detects every pair, writes the per-image files, the summaries and the gallery; returns the summary. A
    SegFormer or table that cannot be read, or an unusable output folder, raises ValueError naming the file."""
    out_dir = output_folder(options.out_dir)
    detector = Detector.from_settings(options.detection)
    pairs, problems = list_pairs(options, detector.segmenter is not None)
    records, gallery_rows, truths = [], {}, {}
    load = functools.partial(load_result_pair, alpha=options.alpha, max_pixels=options.max_pixels)
    batch_size = max(1, min(options.batch_size, len(pairs)))  # memory follows the data, not the flag
    for batch in batches_by_size(pairs, batch_size, load, problems, desc="detect"):
        try:
            masks, ds, labels = detector.batch([b[1] for b in batch], [b[2] for b in batch], batch_size)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            problems += [f"{pair.gan}: {error}; skipped" for pair, _, _ in batch]
            continue
        for i, ((pair, gan, mse), mask, d) in enumerate(zip(batch, masks, ds)):
            images = (gan, mse, mask, d, None if labels is None else labels[i])
            record, gallery_rows[pair.name] = write_detection(out_dir, pair.name, {"gan": str(pair.gan),
                                                              "mse": str(pair.mse)}, images, detector.class_names)
            records.append(record)
            gt = load_ground_truth(pair, options.gt_dir, gan.shape[:2], problems, options.metric_convention)
            if gt is not None:
                truths[pair.name] = (mask, gt)
    records.sort(key=lambda r: r["name"])
    summary = {"settings": _settings_record(options, detector), "pairs": len(pairs), "processed": len(records),
               "problems": problems, "metrics": _metrics(records, truths, options.metric_convention),
               "images": [{key: _finite_or_none(value) for key, value in record.items()} for record in records]}
    write_detection_summaries(out_dir, summary, gallery_rows)
    return summary


def list_pairs(options: DetectOptions, segmentation: bool) -> tuple[list[ResultPair], list[str]]:
    """`pair_results` without ``out_dir``'s files (the command's own results are never read back), after refusing
    (ValueError naming both paths) an ``out_dir`` that is an input folder or outputs that would land on an input."""
    for role, folder in (("--gan_dir", options.gan_dir), ("--mse_dir", options.mse_dir), ("--gt_dir", options.gt_dir)):
        if folder is not None and same_path(folder) == same_path(options.out_dir):
            raise ValueError(f"{options.out_dir}: is the input folder {role}; give another --out_dir (one inside it is "
                             "fine: its files are never read as inputs)")
    pairs, problems = pair_results(Path(options.gan_dir), Path(options.mse_dir), options.gt_dir,
                                   exclude=Path(options.out_dir))
    outputs = [(Path(options.out_dir) / relative, f"a detection file of {pair.gan}") for pair in pairs
               for relative in detection_files(pair.name, True, segmentation)]
    check_collisions(outputs, [path for pair in pairs for path in (pair.gan, pair.mse, pair.gt) if path])
    return pairs, problems


def _metrics(records: list[dict], truths: dict, convention: str) -> dict | None:
    """The set's detection metrics over the (mask, ground truth) ``truths`` by name, or None without any; each
    image's own go into its record."""
    if not truths:
        return None
    names = sorted(truths)
    metrics = evaluate_detection([truths[n][0] for n in names], [truths[n][1] for n in names], convention=convention)
    by_name = dict(zip(names, metrics.pop("per_image")))
    for record in records:
        record.update(by_name.get(record["name"], {}))
    return {key: _finite_or_none(value) for key, value in metrics.items()}


def _settings_record(options: DetectOptions, detector: Detector) -> dict:
    """The options as ``summary.json`` records them."""
    detection = options.detection
    return {"gan_dir": str(options.gan_dir), "mse_dir": str(options.mse_dir),
            "gt_dir": str(options.gt_dir) if options.gt_dir else None, "threshold": detection.threshold,
            "min_area": detection.min_area, "batch_size": options.batch_size, "alpha": options.alpha,
            "indicator": detection.indicator, "metric_convention": options.metric_convention,
            "semantics": detector.semantics_record()}
