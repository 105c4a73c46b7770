"""Super-resolves an image file or a folder of them with one SR model and, given an MSE-SR partner, deletes the
GAN-SR artifacts at inference time (DeSRA's detection, then eq. 10): the work of ``python -m experiments.upscale``
(its docstring describes the options and the files).

The image handling is Real-ESRGAN's ``RealESRGANer.enhance``: gray files are run as RGB and written back as gray
(``cv2`` RGB -> gray weights), 16-bit files are written as 16-bit, an alpha channel is either run through the model
as a gray image (``'realesrgan'``) or interpolated, and a final scale other than the network's is a Lanczos
resize of the network's output (``cv2.INTER_LANCZOS4``). Two departures, for precision: the resize is done on
the float result, before rounding to the file's levels; and ``'bicubic'`` alpha is bicubic (``cv2.INTER_CUBIC``),
where Real-ESRGAN's option of that name resizes bilinearly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import cv2
import jax
from absl import logging
import jax.numpy as jnp
import numpy as np

from desra_jax.convert import load_sr_model
from desra_jax.convert.registry import model_scale
from desra_jax.data.matching import batches_by_size, images_by_name
from desra_jax.data.image_io import WRITABLE_DEPTHS, ImageFormat, read_image, read_image_and_format, write_image
from desra_jax.files import output_folder, write_json
from desra_jax.detection.partner import MISMATCH_BLOCKINESS, partner_blockiness, partner_mismatch
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.fusion.pseudo_gt import pseudo_gt
from desra_jax.inference import Upscaler
from desra_jax.metrics.image_quality import psnr
from desra_jax.report import (UPSCALE_COLUMNS, detection_gallery_row, mask_record, write_detection,
                              write_detection_summaries, write_thumbnails)

ALPHA_POLICIES = ("realesrgan", "bicubic", "drop", "error")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file: ``name`` is its path relative to the input folder without the extension ('sub/x'),
    ``target`` the output file, ``fallback`` the PNG written instead when ``target``'s type cannot hold the result
    (alpha or 16 bits in a JPEG), as Real-ESRGAN writes RGBA results as PNG."""

    name: str
    source: Path
    target: Path
    fallback: Path

    def finished(self) -> bool:
        return self.target.exists() or self.fallback.exists()


def output_name(name: str, source_suffix: str, suffix: str = "out", ext: str = "auto") -> str:
    """``<name>_<suffix>.<ext>`` (``<name>.<ext>`` for an empty suffix), as Real-ESRGAN names results; ``ext``
    'auto' keeps the input's type where `write_image` writes it, else PNG."""
    if ext == "auto":
        ext = source_suffix.lower().lstrip(".")
        ext = ext if f".{ext}" in WRITABLE_DEPTHS else "png"
    return f"{name}_{suffix}.{ext}" if suffix else f"{name}.{ext}"


def list_jobs(input_path: str | os.PathLike, output: Path, suffix: str, ext: str,
              problems: list[str]) -> list[Job]:
    """The jobs of a file or a folder (recursive, `images_by_name`), sorted by name. Files inside ``output``
    (when it lies inside the input folder) are results, not inputs, and are left out."""
    input_path = Path(input_path)
    if input_path.is_file():
        files = {input_path.stem: input_path}
    elif input_path.is_dir():
        inside = output.resolve()
        files = {name: path for name, path in images_by_name(input_path, problems).items()
                 if inside not in path.resolve().parents}
    else:
        problems.append(f"{input_path}: no such file or folder")
        files = {}
    jobs = []
    for name, source in sorted(files.items()):
        target = output / output_name(name, source.suffix, suffix, ext)
        jobs.append(Job(name, source, target, target.with_suffix(".png")))
    return jobs


def load_upscaler(spec: str, dtype: str, tile: int, tile_pad: int, batch_size: int) -> tuple[Upscaler, str, float]:
    """(`Upscaler` on every local device, the file the spec named, the model's scale) of a model spec
    (`load_sr_model`). ``tile`` 0: whole images; ``tile_pad``: LR context kept on each side of a tile's cut,
    so adjacent tiles overlap by 2 * tile_pad."""
    module, variables, path = load_sr_model(spec)
    variables = dict(variables)
    params = variables.pop("params")
    scale = model_scale(module, {"params": params, **variables})
    upscaler = Upscaler(module.clone(dtype=DTYPES[dtype]), params, tile or 2**31, 2 * tile_pad, batch_size,
                        variables, tuple(jax.local_devices()))
    return upscaler, path, scale


def load_job(job: Job, alpha: str) -> tuple[np.ndarray, np.ndarray | None, ImageFormat]:
    """(RGB (H, W, 3), alpha (H, W) or None, the file's format) in [0, 1]; alpha is None under 'drop'."""
    image, found = read_image_and_format(job.source, alpha="error" if alpha == "error" else "keep")
    keep = found.alpha and alpha != "drop"
    return image[:, :, :3], image[:, :, 3] if keep else None, found


def finish(image: np.ndarray, alpha: np.ndarray | None, found: ImageFormat, lr_shape: tuple[int, int],
           outscale: float | None, scale: float) -> np.ndarray:
    """The result as the file gets it: gray again for a gray input, the alpha channel appended, resized to
    ``outscale`` (Lanczos, as Real-ESRGAN) when it differs from the network's ``scale``; clipped to [0, 1]."""
    if found.gray:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if alpha is not None:
        image = np.concatenate([image, alpha[:, :, None]], axis=2)
    if outscale is not None and outscale != scale:
        size = (int(lr_shape[1] * outscale), int(lr_shape[0] * outscale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
    return np.clip(image, 0.0, 1.0)


def upscale_alpha(alphas: list[np.ndarray], upscaled: np.ndarray, policy: str, scale: float) -> list[np.ndarray]:
    """The alpha channels (H, W) at the output size: the model's results for them (``upscaled``, run as gray RGB)
    converted to gray ('realesrgan'), or bicubic interpolation."""
    if policy == "realesrgan":
        return [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in upscaled]
    return [np.clip(cv2.resize(a, (round(a.shape[1] * scale), round(a.shape[0] * scale)),
                               interpolation=cv2.INTER_CUBIC), 0.0, 1.0) for a in alphas]


def write_result(job: Job, image: np.ndarray, found: ImageFormat) -> Path:
    """Writes ``image`` to ``job.target`` with the input's bit depth, or as the PNG fallback when the target's
    type cannot hold it; returns the path written."""
    path = job.target
    if found.bit_depth not in WRITABLE_DEPTHS[path.suffix.lower()] or (image.ndim == 3 and image.shape[2] == 4
                                                                          and path.suffix.lower() in (".jpg", ".jpeg")):
        path = job.fallback
    write_image(path, image, bit_depth=found.bit_depth)
    return path


@dataclasses.dataclass(frozen=True)
class UpscaleOptions:
    """What ``experiments.upscale`` does (its docstring describes each option): upscale ``input`` (a file or a
    folder) into ``output`` with ``model``; with ``mse_model``, detect ``model``'s artifacts against it with
    ``detection`` and replace them (eq. 10, ``feather`` as in `pseudo_gt`), with ``report`` also writing the
    detection gallery and summaries, with ``hr_dir`` (HR images by the inputs' relative names) the HR beside each
    and PSNR against it. This process takes every ``process_count``-th file from the
    ``process_index``-th. ValueError naming the option when one is not among its choices."""

    input: Path
    output: Path
    model: str
    mse_model: str | None = None
    outscale: float | None = None
    suffix: str = "out"
    ext: str = "auto"
    tile: int = 256
    tile_pad: int = 16
    dtype: str = "float32"
    alpha: str = "realesrgan"
    batch_size: int = 4
    detection: DetectionSettings = DetectionSettings()
    feather: float = 0.0
    report: bool = False
    process_index: int = 0
    process_count: int = 1
    hr_dir: Path | None = None

    def __post_init__(self):
        if self.alpha not in ALPHA_POLICIES:
            raise ValueError(f"alpha must be one of {ALPHA_POLICIES}, got {self.alpha!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.ext not in ("auto", "png", "jpg"):
            raise ValueError(f"ext must be auto, png or jpg, got {self.ext!r}")
        if self.hr_dir is not None and not (self.report and self.mse_model):
            raise ValueError(f"hr_dir {self.hr_dir}: the HR images go into the report of DeSRA at inference; "
                             "give --mse_model and --report too")
        if self.tile and self.tile <= 2 * self.tile_pad:
            raise ValueError(f"tile ({self.tile}) must exceed twice tile_pad ({self.tile_pad}): adjacent tiles "
                             "overlap by 2 * tile_pad")


def run(options: UpscaleOptions) -> dict:
    """Upscales every image of ``options.input`` into ``options.output``; returns the summary. Files whose result
    exists are skipped. Raises ValueError (FileNotFoundError for a model spec) when nothing can run: a bad model,
    output folder, or models of different scales."""
    output = output_folder(options.output)
    gan, mse, detector, summary = _load_models(options)
    problems = summary["problems"]
    all_jobs = list_jobs(options.input, output, options.suffix, options.ext, problems)
    jobs = all_jobs[options.process_index::options.process_count]
    summary["images"] = len(jobs)
    summary["skipped"] = [str(job.source) for job in jobs if job.finished()]
    todo = [job for job in jobs if not job.finished()]
    records, gallery_rows, blockiness_ratios = {}, {}, []
    hr_files = images_by_name(options.hr_dir, problems) if options.report and options.hr_dir else {}
    load = functools.partial(load_job, alpha=options.alpha)
    for batch in batches_by_size(todo, options.batch_size, load, problems, "upscale"):
        try:
            results = _upscale_batch(batch, gan, mse, detector, options.alpha, summary["scale"], options.feather)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            problems += [f"{item[0].source}: {error}; skipped" for item in batch]
            continue
        for (job, rgb, _, found), (image, out_alpha, detected) in zip(batch, results):
            if detected is not None:
                blockiness_ratios.append(partner_blockiness(*detected[:3], summary["scale"]))
                records[job.name], gallery_rows[job.name] = write_detection(
                    output, job.name, {"input": str(job.source)}, detected, detector.class_names, options.report)
                if options.report:
                    _report_images(output, job.name, rgb, image, detected[0], hr_files.get(job.name),
                                   records[job.name], gallery_rows[job.name], problems)
            final = finish(image, out_alpha, found, rgb.shape[:2], options.outscale, summary["scale"])
            summary["written"].append(str(write_result(job, final, found)))  # last: a result means a whole job
    if mse is not None:
        summary["replaced"] = {name: record["artifact_fraction"] for name, record in sorted(records.items())}
        _check_partner(summary, blockiness_ratios, options.model, options.mse_model)
        if options.report:
            _write_report(options, summary, all_jobs, records, gallery_rows, detector)
    return summary


def _report_images(output: Path, name: str, lr: np.ndarray, merged: np.ndarray, gan: np.ndarray,
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


def _check_partner(summary: dict, ratios: list[float], gan_model: str, mse_model: str) -> None:
    """Logs `partner_mismatch`'s warning when the MSE-SR results of this run are blockier than the GAN-SR ones
    inside the masks (a partner trained on another degradation); the summary keeps the mean ratio and the
    warning."""
    finite = [r for r in ratios if np.isfinite(r)]
    summary["partner_blockiness"] = float(np.mean(finite)) if finite else None
    summary["warnings"] = []
    if (warning := partner_mismatch(finite, gan_model, mse_model)) is not None:
        logging.warning("%s", warning)
        summary["warnings"].append(warning)


def _load_models(options: UpscaleOptions) -> tuple[Upscaler, Upscaler | None, Detector | None, dict]:
    """(GAN-SR upscaler, MSE-SR upscaler or None, detector or None, the summary begun: models and scale)."""
    load = functools.partial(load_upscaler, dtype=options.dtype, tile=options.tile, tile_pad=options.tile_pad,
                             batch_size=options.batch_size)
    gan, gan_path, scale = load(options.model)
    summary = {"model": gan_path, "scale": scale, "mse_model": None, "written": [], "skipped": [], "problems": []}
    if options.mse_model is None:
        return gan, None, None, summary
    mse, summary["mse_model"], mse_scale = load(options.mse_model)
    if mse_scale != scale:
        raise ValueError(f"{summary['mse_model']}: the MSE-SR model scales by {mse_scale:g}, the GAN-SR model "
                         f"{gan_path} by {scale:g}; DeSRA compares results of one size")
    return gan, mse, Detector.from_settings(options.detection), summary


def _upscale_batch(batch, gan: Upscaler, mse: Upscaler | None, detector: Detector | None, alpha: str,
                   scale: float, feather: float) -> list[tuple]:
    """(SR image (H', W', 3), alpha (H', W') or None, (GAN-SR, MSE-SR, mask, D, labels) or None) per item of a
    batch of one size; with an MSE-SR model the image is eq. 10's fusion."""
    rgbs = np.stack([item[1] for item in batch])
    alphas = [item[2] for item in batch if item[2] is not None]
    through_model = [np.repeat(a[:, :, None], 3, axis=2) for a in alphas] if alpha == "realesrgan" else []
    upscaled = gan(np.concatenate([rgbs, np.stack(through_model)]) if through_model else rgbs)
    images, alpha_out = upscaled[: len(rgbs)], iter(upscale_alpha(alphas, upscaled[len(rgbs) :], alpha, scale))
    detections = [None] * len(rgbs)
    if mse is not None:
        mse_images = mse(rgbs)
        masks, ds, labels = detector.batch(list(images), list(mse_images), len(rgbs))
        gan_images, images = images, np.asarray(pseudo_gt(images, mse_images, masks, feather))
        detections = [(gan_images[i], mse_images[i], masks[i], ds[i], None if labels is None else labels[i])
                      for i in range(len(rgbs))]
    return [(images[i], next(alpha_out) if item[2] is not None else None, detections[i])
            for i, item in enumerate(batch)]


def _write_report(options: UpscaleOptions, summary: dict, jobs: list[Job], records: dict, gallery_rows: dict,
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
