"""The report of DeSRA at inference (``experiments.upscale --mse_model --report``): the gallery's LR, merged and
HR images with PSNR against the HR, the check that the MSE-SR partner suits the GAN-SR model, and the summaries
and gallery of every process's images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import jax.numpy as jnp
import numpy as np
from absl import logging

from desra_jax.data.image_io import read_image
from desra_jax.detection.partner import MISMATCH_BLOCKINESS, partner_mismatch
from desra_jax.detection.settings import Detector
from desra_jax.files import write_json
from desra_jax.metrics.image_quality import psnr
from desra_jax.report import (UPSCALE_COLUMNS, detection_gallery_row, mask_record, write_detection_summaries,
                              write_thumbnails)

if TYPE_CHECKING:
    from desra_jax.tools.upscale import Job, UpscaleOptions


def report_images(output: Path, name: str, lr: np.ndarray, merged: np.ndarray, gan: np.ndarray,
                   hr_path: Path | None, record: dict, row: dict, problems: list[str]) -> None:
    """Adds the gallery's LR (nearest-upscaled), merged and HR thumbnails to ``row`` and PSNR against the HR
    (RGB, crop border = the scale, BasicSR's convention) of the GAN-SR and the merged result to ``record``. An HR
    image that cannot be read or is not of the result's size is a line in ``problems`` and left out."""
    height, width = merged.shape[:2]
    images = {"lr": cv2.resize(lr, (width, height), interpolation=cv2.INTER_NEAREST), "merged": merged}
    if hr_path is not None:
        try:
            hr = read_image(hr_path, alpha="drop")
        except ValueError as error:
            hr = None
            problems.append(f"{error}; no HR for {name}")
        if hr is not None and hr.shape[:2] != (height, width):
            problems.append(f"{hr_path}: HR image of {hr.shape[0]}x{hr.shape[1]}, expected {height}x{width} (the "
                            f"network's result for {name}); no HR for it")
        elif hr is not None:
            images["hr"] = hr
            border = round(height / lr.shape[0])
            for key, sr in (("psnr_gan", gan), ("psnr_merged", merged)):
                record[key] = float(psnr(jnp.asarray(sr[None]), jnp.asarray(hr[None]), crop_border=border)[0])
    row.update(write_thumbnails(output, name, images))


def check_partner(summary: dict, ratios: list[float], gan_model: str, mse_model: str) -> None:
    """Logs `partner_mismatch`'s warning when the MSE-SR results of this run are blockier than the GAN-SR ones
    inside the masks (a partner trained on another degradation); the summary keeps the mean ratio and the
    warning."""
    finite = [r for r in ratios if np.isfinite(r)]
    summary["partner_blockiness"] = float(np.mean(finite)) if finite else None
    summary["warnings"] = []
    if (warning := partner_mismatch(finite, gan_model, mse_model)) is not None:
        logging.warning("%s", warning)
        summary["warnings"].append(warning)


def write_report(options: UpscaleOptions, summary: dict, jobs: list[Job], records: dict, gallery_rows: dict,
                  detector: Detector) -> None:
    """The detection summaries and gallery of all ``jobs`` (every process's); images detected in an earlier run
    or by another process are read back from their masks. With several processes each writes its problems
    (``.problems-<index>.json``) and process 0, after all have finished, the report."""
    output, count = Path(options.output), options.process_count
    if count > 1:
        write_json(output / f".problems-{options.process_index}.json", summary["problems"])
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("upscale: all results written")
        if options.process_index:
            return
    problems = summary["problems"]
    if count > 1:  # the listing's problems, seen by every process, once
        problems = list(dict.fromkeys(p for i in range(count)
                                      for p in json.loads((output / f".problems-{i}.json").read_text())))
    images = []
    for job in jobs:
        if job.name not in records:
            mask_path = output / "masks" / f"{job.name}.png"
            if not mask_path.exists():
                continue
            records[job.name] = {"name": job.name, "input": str(job.source),
                                 **mask_record(read_image(mask_path)[:, :, 0] > 0.5)}
            gallery_rows[job.name] = detection_gallery_row(job.name, detector.segmenter is not None)
            gallery_rows[job.name].update({key: f"gallery/{job.name}_{key}.png" for key in ("lr", "merged", "hr")
                                           if (output / "gallery" / f"{job.name}_{key}.png").exists()})
        images.append(records[job.name])
    settings = {"model": summary["model"], "mse_model": summary["mse_model"],
                "threshold": options.detection.threshold, "min_area": options.detection.min_area,
                "semantics": detector.semantics_record()}
    notes = [("MSE-SR blockiness in the masks / GAN-SR's", "n/a" if summary["partner_blockiness"] is None else
              f"{summary['partner_blockiness']:.2f} (mean over this run's images; above {MISMATCH_BLOCKINESS:g} "
              "the partner keeps JPEG blocks that the GAN-SR model removes: trained on another degradation)")]
    notes += [("warning", warning) for warning in summary["warnings"]]
    report_summary = {"settings": settings, "pairs": len(jobs), "processed": len(images), "problems": problems,
                      "metrics": None, "images": images, "notes": notes}
    write_detection_summaries(output, report_summary, gallery_rows,
                              "DeSRA at inference: artifacts replaced by MSE-SR", "images", UPSCALE_COLUMNS)
