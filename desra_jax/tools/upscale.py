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
import jax.numpy as jnp
import numpy as np

from desra_jax.convert import load_sr_model
from desra_jax.convert.registry import model_scale
from desra_jax.data.folder_pairs import batches_by_size, images_by_name
from desra_jax.data.image_io import WRITABLE_DEPTHS, ImageFormat, read_image, read_image_and_format, write_image
from desra_jax.files import output_folder, write_json
from desra_jax.detection.detector import Detector
from desra_jax.detection.segmenter import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, load_semantics
from desra_jax.fusion.pseudo_gt import pseudo_gt
from desra_jax.inference import Upscaler
from desra_jax.report import label_legend
from desra_jax.tools.detect import gallery_row, mask_record, write_outputs, write_summaries

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


def run(input_path, output, model, mse_model=None, *, outscale=None, suffix="out", ext="auto", tile=256,
        tile_pad=16, dtype="float32", alpha="realesrgan", batch_size=4, threshold=0.7, min_area=4000,
        segformer=None, class_adjustment=None, segment_source=DEFAULT_SEGMENT,
        segformer_size=DEFAULT_SEGFORMER_SIZE, feather=0.0, report=False, process_index=0,
        process_count=1) -> dict:
    """Upscales every image of ``input_path`` (a file or a folder) into ``output``; returns the summary.

    model / mse_model: model specs (`desra_jax.convert.load_sr_model`); with ``mse_model`` the artifacts of
    ``model``'s results are detected against the MSE-SR results (`Detector` with ``threshold``, ``min_area`` and
    the optional SegFormer options of `load_semantics`) and replaced by them (eq. 10, ``feather`` as in
    `pseudo_gt`); the masks go to ``output/masks/<name>.png`` and, with ``report``, the detection gallery and
    summaries to ``output`` too. process_index / process_count: this process takes every process_count-th file
    of the sorted list, from the process_index-th. Files whose result exists are skipped. Raises ValueError
    (FileNotFoundError for a model spec) when nothing can run: a bad option, model, output folder, or models of
    different scales.
    """
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {ALPHA_POLICIES}, got {alpha!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if ext not in ("auto", "png", "jpg"):
        raise ValueError(f"ext must be auto, png or jpg, got {ext!r}")
    if tile and tile <= 2 * tile_pad:
        raise ValueError(f"tile ({tile}) must exceed twice tile_pad ({tile_pad}): adjacent tiles overlap by 2 * tile_pad")
    output = output_folder(output)
    gan, gan_path, scale = load_upscaler(model, dtype, tile, tile_pad, batch_size)
    summary = {"model": gan_path, "scale": scale, "mse_model": None, "written": [], "skipped": [], "problems": []}
    problems = summary["problems"]
    mse = detector = semantics = None
    if mse_model is not None:
        mse, summary["mse_model"], mse_scale = load_upscaler(mse_model, dtype, tile, tile_pad, batch_size)
        if mse_scale != scale:
            raise ValueError(f"{summary['mse_model']}: the MSE-SR model scales by {mse_scale:g}, the GAN-SR model "
                             f"{gan_path} by {scale:g}; DeSRA compares results of one size")
        segmenter, adjustment, semantics = load_semantics(segformer, class_adjustment, segment_source,
                                                          segformer_size)
        detector = Detector(threshold, min_area, segmenter, adjustment)
    all_jobs = list_jobs(input_path, output, suffix, ext, problems)
    jobs = all_jobs[process_index::process_count]
    summary["images"] = len(jobs)
    summary["skipped"] = [str(job.source) for job in jobs if job.finished()]
    todo = [job for job in jobs if not job.finished()]
    records, gallery_rows = {}, {}
    for batch in batches_by_size(todo, batch_size, functools.partial(load_job, alpha=alpha), problems, "upscale"):
        try:
            results = _upscale_batch(batch, gan, mse, detector, alpha, scale, feather)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            problems += [f"{item[0].source}: {error}; skipped" for item in batch]
            continue
        for (job, rgb, _, found), (image, out_alpha, detected) in zip(batch, results):
            if detected is not None:
                records[job.name], gallery_rows[job.name] = _write_detection(output, job, report, detector,
                                                                             *detected)
            final = finish(image, out_alpha, found, rgb.shape[:2], outscale, scale)
            summary["written"].append(str(write_result(job, final, found)))  # last: a result means a whole job
    if mse is not None:
        summary["replaced"] = {name: record["artifact_fraction"] for name, record in sorted(records.items())}
        if report:
            _write_report(output, summary, all_jobs, records, gallery_rows, semantics, threshold, min_area,
                          process_index, process_count)
    return summary


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


def _write_detection(output: Path, job: Job, report: bool, detector: Detector, gan, mse, mask, d, labels):
    """The mask (and with ``report`` the gallery's per-image files) of one job; returns its (record, gallery row)."""
    record = {"name": job.name, "input": str(job.source), **mask_record(mask)}
    if not report:
        write_image(output / "masks" / f"{job.name}.png", mask)
        return record, None
    names = detector.segmenter.names if detector.segmenter is not None else ()
    row = write_outputs(output, job.name, gan, mse, mask, d, labels, len(names))
    if labels is not None:
        row["legend"] = label_legend(labels, names)
        record["classes"] = {entry["name"]: entry["fraction"] for entry in row["legend"]}
    return record, row


def _write_report(output: Path, summary: dict, jobs: list[Job], records: dict, gallery_rows: dict, semantics,
                  threshold: float, min_area: int, process_index: int, process_count: int) -> None:
    """The detection summaries and gallery of all ``jobs`` (every process's); images detected in an earlier run
    or by another process are read back from their masks. With several processes each writes its problems
    (``.problems-<index>.json``) and process 0, after all have finished, the report."""
    if process_count > 1:
        write_json(output / f".problems-{process_index}.json", summary["problems"])
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("upscale: all results written")
        if process_index:
            return
    problems = summary["problems"]
    if process_count > 1:  # the listing's problems, seen by every process, once
        problems = list(dict.fromkeys(p for i in range(process_count)
                                      for p in json.loads((output / f".problems-{i}.json").read_text())))
    images = []
    for job in jobs:
        if job.name not in records:
            mask_path = output / "masks" / f"{job.name}.png"
            if not mask_path.exists():
                continue
            records[job.name] = {"name": job.name, "input": str(job.source),
                                 **mask_record(read_image(mask_path)[:, :, 0] > 0.5)}
            gallery_rows[job.name] = gallery_row(job.name, semantics is not None)
        images.append(records[job.name])
    report_summary = {
        "settings": {"model": summary["model"], "mse_model": summary["mse_model"], "threshold": threshold,
                     "min_area": min_area, "semantics": semantics},
        "pairs": len(jobs), "processed": len(images), "problems": problems, "metrics": None, "images": images,
    }
    write_summaries(output, report_summary, gallery_rows, "DeSRA at inference: artifacts replaced by MSE-SR",
                    counted="images")

