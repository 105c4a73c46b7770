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
import os
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.checks import check_number
from desra_jax.convert import load_sr_model
from desra_jax.convert.ncnn_checks import MAX_FACTOR
from desra_jax.convert.registry import model_scale
from desra_jax.data.image_header import MAX_PIXELS
from desra_jax.data.matching import batches_by_size, images_by_name, relative_name
from desra_jax.data.image_io import WRITABLE_DEPTHS, ImageFormat, read_image_and_format, write_image
from desra_jax.files import check_collisions, check_options_record, output_folder, same_path
from desra_jax.detection.partner import partner_blockiness
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.fusion.pseudo_gt import pseudo_gt
from desra_jax.inference import MAX_BATCH_BYTES, Upscaler
from desra_jax.report import detection_files, write_detection
from desra_jax.tools.upscale_report import check_partner, report_images, write_report

ALPHA_POLICIES = ("realesrgan", "bicubic", "drop", "error")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
#: Sides shorter than a tile run padded to a multiple of this (at most 15 LR pixels more, at most tile / 16 sizes
#: per side), so that a folder of small images of many sizes compiles a few times.
DEFAULT_BUCKET = 16
#: `--max_batch_mib`: XLA's buffers of one device call of tiles (`desra_jax.inference.MAX_BATCH_BYTES`).
MAX_BATCH_MIB = MAX_BATCH_BYTES // 2**20
#: Default limit on a result's pixels (and on the network's output before ``outscale``): any image the reader
#: accepts (`MAX_PIXELS`) upscaled x4, 2.9 G pixels (34 GB as float32 RGB); ``outscale`` 1000 of a 54 x 54 image
#: is over it.
MAX_OUTPUT_PIXELS = 16 * MAX_PIXELS
#: The options record beside the results (`desra_jax.files.check_options_record`).
OPTIONS_RECORD = ".upscale-options.json"


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file: ``name`` is its path relative to the input folder without the extension ('sub/x'),
    ``target`` the output file, ``fallback`` the PNG written instead when ``target``'s type cannot hold the result
    (alpha or 16 bits in a JPEG under ``--ext jpg``), as Real-ESRGAN writes RGBA results as PNG; else ``target``."""

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
    """The jobs of a file or a folder (recursive, every image file: ``pic.bmp`` and ``pic.tif`` are two jobs),
    sorted by name. Files inside ``output`` (when it lies inside the input folder) are results, not inputs, and
    are left out; an output folder that is the input folder is refused (ValueError): its results would be inputs."""
    input_path = Path(input_path)
    if input_path.is_file():
        files = {input_path.name: input_path}
    elif input_path.is_dir():
        if same_path(input_path) == same_path(output):
            raise ValueError(f"{output}: is the input folder; give another output folder (one inside the input "
                             "folder is fine: its files are never read as inputs)")
        files = images_by_name(input_path, problems, key=str, exclude=output)
    else:
        problems.append(f"{input_path}: no such file or folder")
        files = {}
    jobs = []
    for relative, source in sorted(files.items(), key=lambda item: (relative_name(item[0]), item[0])):
        name = relative_name(relative)
        target = output / output_name(name, source.suffix, suffix, ext)
        jobs.append(Job(name, source, target, target.with_suffix(".png") if ext == "jpg" else target))
    return jobs


def planned_outputs(jobs: list[Job], output: Path, detection: bool, report: bool,
                    segmentation: bool) -> list[tuple[Path, str]]:
    """(file, what writes it) for every image file the ``jobs`` may write into ``output``: results, their PNG
    fallbacks and, with ``detection``, the DeSRA files of `write_detection` (for `check_collisions`)."""
    planned = []
    for job in jobs:
        planned += [(path, f"the result of {job.source}") for path in dict.fromkeys((job.target, job.fallback))]
        if detection:
            planned += [(output / relative, f"a DeSRA file of {job.source}")
                        for relative in detection_files(job.name, report, segmentation)]
    return planned


def load_upscaler(spec: str, dtype: str, tile: int, tile_pad: int, batch_size: int, bucket: int | None = None,
                  max_batch_mib: int = MAX_BATCH_MIB) -> tuple[Upscaler, str, float]:
    """(`Upscaler` on every local device, the file the spec named, the model's scale) of a model spec
    (`load_sr_model`). ``tile`` 0: whole images; ``tile_pad``: LR context kept on each side of a tile's cut,
    so adjacent tiles overlap by 2 * tile_pad; ``bucket``: sides shorter than a tile are padded to a multiple of
    it (`desra_jax.inference.pad_to_buckets`; None or 0: they run at their size); ``max_batch_mib``: XLA's
    buffers of one device call, which may hold fewer tiles than ``batch_size`` (`desra_jax.inference.upscale`)."""
    module, variables, path = load_sr_model(spec)
    variables = dict(variables)
    params = variables.pop("params")
    scale = model_scale(module, {"params": params, **variables})
    if not 0 < scale <= MAX_FACTOR:
        raise ValueError(f"{path}: scales images by {scale:g}; an SR model this runs scales by at most {MAX_FACTOR}")
    upscaler = Upscaler(module.clone(dtype=DTYPES[dtype]), params, tile or 2**31, 2 * tile_pad, batch_size,
                        variables, tuple(jax.local_devices()), bucket or None, max_batch_mib * 2**20)
    return upscaler, path, scale


def check_output_size(name: str | os.PathLike, shape: tuple[int, ...], factor: float, max_output_pixels: int) -> None:
    """ValueError naming the file, the sizes and the option when an (H, W) image upscaled by ``factor`` (the
    larger of the network's scale and ``outscale``) would have more than ``max_output_pixels`` pixels."""
    height, width = shape[0] * factor, shape[1] * factor  # floats: an outscale of 1e300 is refused, not overflowed
    if height * width > max_output_pixels:
        raise ValueError(f"{name}: {shape[1]} x {shape[0]} upscaled x{factor:g} would be {width:.0f} x {height:.0f} = "
                         f"{height * width:,.0f} pixels, more than the limit of {max_output_pixels:,} (raise it with "
                         "--max_output_pixels)")


def load_job(job: Job, alpha: str, max_pixels: int = MAX_PIXELS, factor: float = 1.0,
             max_output_pixels: int = MAX_OUTPUT_PIXELS) -> tuple[np.ndarray, np.ndarray | None, ImageFormat]:
    """(RGB (H, W, 3), alpha (H, W) or None, the file's format) in [0, 1]; alpha is None under 'drop'. ValueError
    naming the file when it declares over ``max_pixels`` or its result upscaled by ``factor`` would exceed
    ``max_output_pixels`` (`check_output_size`), before any work on it."""
    image, found = read_image_and_format(job.source, "error" if alpha == "error" else "keep", max_pixels)
    check_output_size(job.source, image.shape, factor, max_output_pixels)
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
    return np.clip(image, 0.0, 1.0, out=image if image.flags.writeable else None)


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
    and PSNR against it. This process takes every ``process_count``-th file from the ``process_index``-th. Images
    over ``max_pixels`` and results over ``max_output_pixels`` are refused by name; ``overwrite`` makes every
    result again, also where the options record beside them differs. ValueError naming the option (as the
    command's flag) when one is not among its choices or out of its range."""

    input: Path
    output: Path
    model: str
    mse_model: str | None = None
    outscale: float | None = None
    suffix: str = "out"
    ext: str = "auto"
    tile: int = 256
    tile_pad: int = 16
    bucket: int = DEFAULT_BUCKET
    dtype: str = "float32"
    alpha: str = "realesrgan"
    batch_size: int = 4
    max_batch_mib: int = MAX_BATCH_MIB
    detection: DetectionSettings = DetectionSettings()
    feather: float = 0.0
    report: bool = False
    process_index: int = 0
    process_count: int = 1
    max_pixels: int = MAX_PIXELS
    max_output_pixels: int = MAX_OUTPUT_PIXELS
    overwrite: bool = False
    hr_dir: Path | None = None

    def __post_init__(self):
        if self.alpha not in ALPHA_POLICIES:
            raise ValueError(f"alpha must be one of {ALPHA_POLICIES}, got {self.alpha!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.ext not in ("auto", "png", "jpg"):
            raise ValueError(f"ext must be auto, png or jpg, got {self.ext!r}")
        if self.outscale is not None:
            check_number("--outscale", self.outscale, 0, above=True)
        for name in ("tile", "tile_pad", "bucket", "batch_size", "max_batch_mib", "max_pixels", "max_output_pixels"):
            least = 0 if name in ("tile", "tile_pad", "bucket") else 1
            check_number(f"--{name}", getattr(self, name), least, whole=True)
        check_number("--feather", self.feather, 0)
        if self.hr_dir is not None and not (self.report and self.mse_model):
            raise ValueError(f"--hr_dir {self.hr_dir}: the HR images go into the report of DeSRA at inference; "
                             "give --mse_model and --report too")
        if self.tile and self.tile <= 2 * self.tile_pad:
            raise ValueError(f"tile ({self.tile}) must exceed twice tile_pad ({self.tile_pad}): adjacent tiles "
                             "overlap by 2 * tile_pad")


def run(options: UpscaleOptions) -> dict:
    """Upscales every image of ``options.input`` into ``options.output``; returns the summary. Files whose result
    exists are skipped (unless ``overwrite``). Raises ValueError (FileNotFoundError for a model spec) when nothing
    can run: a bad model, output folder, models of different scales, outputs that would land on an input or on
    each other (`check_collisions`), or results of other options in the folder (`check_options_record`)."""
    output = output_folder(options.output)
    gan, mse, detector, summary = _load_models(options)
    problems = summary["problems"]
    all_jobs = list_jobs(options.input, output, options.suffix, options.ext, problems)
    check_collisions(planned_outputs(all_jobs, output, mse is not None, options.report,
                                     options.detection.semantics is not None), [job.source for job in all_jobs])
    check_options_record(output / OPTIONS_RECORD, options_record(options, summary), options.overwrite)
    jobs = all_jobs[options.process_index::options.process_count]
    summary["images"] = len(jobs)
    summary["skipped"] = [str(job.source) for job in jobs if job.finished() and not options.overwrite]
    todo = [job for job in jobs if options.overwrite or not job.finished()]
    records, gallery_rows, blockiness_ratios = {}, {}, []
    hr_files = images_by_name(options.hr_dir, problems) if options.report and options.hr_dir else {}
    factor = max(summary["scale"], options.outscale or 0)
    load = functools.partial(load_job, alpha=options.alpha, max_pixels=options.max_pixels, factor=factor,
                             max_output_pixels=options.max_output_pixels)
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
                    report_images(output, job.name, rgb, image, detected[0], hr_files.get(job.name),
                                   records[job.name], gallery_rows[job.name], problems)
            final = finish(image, out_alpha, found, rgb.shape[:2], options.outscale, summary["scale"])
            summary["written"].append(str(write_result(job, final, found)))  # last: a result means a whole job
    if mse is not None:
        summary["replaced"] = {name: record["artifact_fraction"] for name, record in sorted(records.items())}
        check_partner(summary, blockiness_ratios, options.model, options.mse_model)
        if options.report:
            write_report(options, summary, all_jobs, records, gallery_rows, detector)
    return summary


def options_record(options: UpscaleOptions, summary: dict) -> dict:
    """The options that shape a result, as recorded beside the results (`OPTIONS_RECORD`): the models' files,
    the scale, dtype, tiling, alpha and naming and, with an MSE-SR model, the detection settings and feather."""
    record = {"model": os.path.abspath(summary["model"]), "outscale": options.outscale, "dtype": options.dtype,
              "tile": options.tile, "tile_pad": options.tile_pad, "bucket": options.bucket, "alpha": options.alpha,
              "ext": options.ext, "suffix": options.suffix, "mse_model": None}
    if summary["mse_model"] is not None:
        record.update(mse_model=os.path.abspath(summary["mse_model"]), feather=options.feather,
                      detection=dataclasses.asdict(options.detection))
    return record


def _load_models(options: UpscaleOptions) -> tuple[Upscaler, Upscaler | None, Detector | None, dict]:
    """(GAN-SR upscaler, MSE-SR upscaler or None, detector or None, the summary begun: models and scale)."""
    load = functools.partial(load_upscaler, dtype=options.dtype, tile=options.tile, tile_pad=options.tile_pad,
                             batch_size=options.batch_size, bucket=options.bucket,
                             max_batch_mib=options.max_batch_mib)
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
