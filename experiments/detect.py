r"""Detects GAN-SR artifacts in a folder of GAN-SR / MSE-SR result pairs (DeSRA, section 3.2 and appendix A.2).

    python -m experiments.detect --gan_dir A --mse_dir B --out_dir C [--gt_dir M] [--threshold 0.7] \
        [--min_area 4000] [--batch_size 4] [--alpha error] \
        [--segformer DIR [--class_adjustment FILE] [--segment gan|mse] [--segformer_size 512]]

Files are paired by their path relative to the folder, without the extension (``A/sub/x.png`` with
``B/sub/x.jpg``), as in the authors' layout of one sub-folder per model. Ground-truth masks, when given, are
``M/<same path>.png`` (nonzero = artifact) or ``M/<same path>.json`` (labelme).

Without ``--segformer`` detection is the semantics-free variant (``labels=None``: Table 4, third row). With
``--segformer DIR`` (a Hugging Face SegFormer directory or an mmseg checkpoint, `desra_jax.convert.load_segformer`)
each pair is segmented and D is adjusted per class (eq. 9/14) by the table of ``--class_adjustment`` (the authors'
published ADE20K table by default; also their ``name--bin`` text file or a JSON from ``experiments.calibrate``).
``--segment gan`` (default) segments the GAN-SR image, as the authors' released detection script does; the
paper's text (appendix A.2) says the MSE-SR image: ``--segment mse``.

Writes into ``C``: ``masks/<name>.png`` (0 / 255), ``overlays/<name>.png`` (mask on the GAN-SR image),
``d_maps/<name>.png`` (D in colour, viridis: dark = low D = artifact-like), with ``--segformer`` also
``segmentation/<name>.png`` (class labels in colour), ``summary.csv``, ``summary.json`` (artifact area per image;
the classes present with ``--segformer``; mean IoU, precision and recall with ``--gt_dir``) and ``index.html``, a
gallery (MSE-SR | GAN-SR | D | mask overlay [| segmentation with a legend of class names]) whose thumbnails lie in
``gallery/``. Every file appears atomically.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from desra_jax.convert import load_segformer
from desra_jax.data.image_io import list_images, read_image, write_bytes_atomic, write_image
from desra_jax.data.masks import find_mask, read_mask
from desra_jax.detection import detect_artifacts, load_class_adjustment, segment
from desra_jax.detection.semantic import ADE20K_ADJUSTMENT_TSV
from desra_jax.metrics.detection import evaluate_detection, label_regions
from experiments import report

FLAGS = flags.FLAGS

#: Which image of a pair SegFormer segments by default: the GAN-SR one, as the authors' released script does.
DEFAULT_SEGMENT = "gan"

#: SegFormer's input size by default: that of the published ``nvidia/segformer-*-finetuned-ade-512-512`` models.
DEFAULT_SEGFORMER_SIZE = 512


def define_pair_flags() -> None:
    """The flags that this CLI and experiments.calibrate share: folders, batching, alpha policy, SegFormer.

    Defined on demand rather than at import, so that calibrate can import this module's functions.
    """
    flags.DEFINE_string("gan_dir", None, "Folder of GAN-SR results.", required=True)
    flags.DEFINE_string("mse_dir", None, "Folder of MSE-SR results, same relative names.", required=True)
    flags.DEFINE_integer("batch_size", 4, "Pairs of equal size processed together on the device.")
    flags.DEFINE_enum("alpha", "error", ["error", "drop"], "Images with an alpha channel: skip or drop it.")
    flags.DEFINE_string("segformer", None, "SegFormer for the semantic adjustment: a Hugging Face directory "
                        "(config.json + weights) or an mmseg checkpoint (desra_jax.convert.load_segformer).")
    flags.DEFINE_enum("segment", DEFAULT_SEGMENT, ["gan", "mse"],
                      "Which image of a pair SegFormer segments: 'gan' (default) as the authors' released detection "
                      "script does; 'mse' as the paper's text says (appendix A.2).")
    flags.DEFINE_integer("segformer_size", DEFAULT_SEGFORMER_SIZE, "SegFormer's input size (512 for the "
                         "*-512-512 models, 640 for the authors' MiT-B5 640x640); larger images are segmented in "
                         "sliding windows at their own resolution (desra_jax.detection.segment); 0: whole images.")


def _define_detect_flags() -> None:
    define_pair_flags()
    flags.DEFINE_string("out_dir", None, "Folder for masks, D maps, summaries and the gallery.", required=True)
    flags.DEFINE_string("gt_dir", None, "Optional folder of ground-truth masks (PNG or labelme JSON).")
    flags.DEFINE_float("threshold", 0.7, "Artifact where clip(D / A, 0, 1) < threshold (eq. 9/14).")
    flags.DEFINE_integer("min_area", 4000, "Keep 8-connected regions of more than this many pixels.")
    flags.DEFINE_string("class_adjustment", None, "With --segformer: the per-class A_k table, the authors' "
                        "'name--bin' text file, their table as TSV or a JSON from experiments.calibrate "
                        f"(default: the published ADE20K table, {ADE20K_ADJUSTMENT_TSV.name}).")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One GAN-SR / MSE-SR pair: ``name`` is the relative path without extension, e.g. 'sub/0001'."""

    name: str
    gan: Path
    mse: Path
    gt: Path | None = None


def images_by_name(folder: Path, problems: list[str]) -> dict[str, Path]:
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
    gans, mses = images_by_name(gan_dir, problems), images_by_name(mse_dir, problems)
    problems += [f"{gans[n]}: no MSE-SR file of the same name in {mse_dir}" for n in sorted(gans.keys() - mses.keys())]
    problems += [f"{mses[n]}: no GAN-SR file of the same name in {gan_dir}" for n in sorted(mses.keys() - gans.keys())]
    pairs = []
    for name in sorted(gans.keys() & mses.keys()):
        gt = None
        if gt_dir is not None:
            gt = find_mask(gt_dir, name)
        pairs.append(Pair(name, gans[name], mses[name], gt))
    return pairs, problems


def load_pair(pair: Pair, alpha: str) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair, float32 RGB (H, W, 3); ValueError naming the files when the sizes differ."""
    gan, mse = read_image(pair.gan, alpha=alpha), read_image(pair.mse, alpha=alpha)
    if gan.shape != mse.shape:
        raise ValueError(f"{pair.gan}: size {gan.shape[:2]} differs from {pair.mse}: {mse.shape[:2]}")
    return gan, mse


def batches_by_size(pairs: list[Pair], batch_size: int, alpha: str, problems: list[str], desc: str
                    ) -> Iterator[list[tuple[Pair, np.ndarray, np.ndarray]]]:
    """The pairs loaded and grouped by image size: lists of up to ``batch_size`` (pair, gan, mse), each list of
    one size; a full batch comes as soon as it is complete, the incomplete ones at the end. A pair that cannot
    be loaded becomes a line in ``problems``. Shows a progress bar named ``desc``."""
    pending = defaultdict(list)
    for pair in tqdm(pairs, desc=desc, unit="pair"):
        try:
            gan, mse = load_pair(pair, alpha)
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        pending[gan.shape].append((pair, gan, mse))
        if len(pending[gan.shape]) == batch_size:
            yield pending.pop(gan.shape)
    yield from pending.values()


def stack_padded(images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(batch_size, ...) stack of ``images``, a short list padded by repeating its last image, so that each image
    size compiles once; the caller drops (or ignores) the rows past ``len(images)``."""
    return np.stack(images + [images[-1]] * (batch_size - len(images)))


@dataclasses.dataclass(frozen=True)
class Segmenter:
    """A converted SegFormer (`desra_jax.convert.load_segformer`) and which image of a pair it segments."""

    model: Any
    params: Any
    names: tuple[str, ...]
    source: str = DEFAULT_SEGMENT
    size: int | None = DEFAULT_SEGFORMER_SIZE

    def __call__(self, gans: np.ndarray, mses: np.ndarray) -> jax.Array:
        """(N, H, W) int32 class labels (on the device) of the ``source`` images, (N, H, W, 3) each."""
        images = gans if self.source == "gan" else mses
        return segment(images, self.model, self.params, size=self.size)


def load_segmenter(path: str | Path, source: str = DEFAULT_SEGMENT, size: int | None = DEFAULT_SEGFORMER_SIZE
                   ) -> Segmenter:
    """Reads a SegFormer that segments the ``source`` image at input ``size`` (`segment`); ValueError naming
    ``path`` when it cannot be read."""
    if source not in ("gan", "mse"):
        raise ValueError(f"segment: expected 'gan' or 'mse', got {source!r}")
    try:
        model, params, id2label = load_segformer(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: cannot read the SegFormer ({error})") from error
    id2label = {int(key): str(value).strip() for key, value in id2label.items()}
    return Segmenter(model, params, tuple(id2label[i] for i in range(len(id2label))), source, size)


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


def detect_batch(gans: list[np.ndarray], mses: list[np.ndarray], batch_size: int, threshold: float, min_area: int,
                 segmenter: Segmenter | None = None, class_adjustment: np.ndarray | None = None):
    """Masks (bool), D maps (float32) and labels (int32, or None without ``segmenter``), (H, W) each, for up to
    ``batch_size`` pairs of one size. With a segmenter, D is adjusted by ``class_adjustment`` (K,) per class."""
    gan_batch, mse_batch = stack_padded(gans, batch_size), stack_padded(mses, batch_size)
    # detect_artifacts is jitted with its settings static: one compilation per image size and setting
    detector, count = functools.partial(detect_artifacts, threshold=threshold, min_area=min_area), len(gans)
    if segmenter is None:
        mask, d = detector(gan_batch, mse_batch)
        return np.asarray(mask)[:count], np.asarray(d)[:count], None
    labels = segmenter(gan_batch, mse_batch)
    mask, d = detector(gan_batch, mse_batch, labels=labels, class_adjustment=class_adjustment)
    return np.asarray(mask)[:count], np.asarray(d)[:count], np.asarray(labels)[:count]


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
    return {key: f"gallery/{name}_{key}.png" for key in thumbnails}


def _finite_or_none(value):
    """JSON has no NaN: undefined ratios (no regions) become null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def csv_text(records: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def load_semantics(segformer, class_adjustment, segment_source, segformer_size):
    """(segmenter, A (K,), settings) for ``--segformer``, or (None, None, None) without it."""
    if segformer is None:
        if class_adjustment is not None:
            raise ValueError(f"{class_adjustment}: a class adjustment table needs --segformer")
        return None, None, None
    table = Path(class_adjustment) if class_adjustment else ADE20K_ADJUSTMENT_TSV
    segmenter = load_segmenter(segformer, segment_source, segformer_size)
    adjustment, table_names = load_class_adjustment(table)
    if len(adjustment) != len(segmenter.names):
        raise ValueError(f"{table}: {len(adjustment)} classes, but the SegFormer {segformer} predicts "
                         f"{len(segmenter.names)}")
    differing = [(k, a, b) for k, (a, b) in enumerate(zip(table_names, segmenter.names)) if a != b]
    if differing:  # the table is applied by index; different names suggest it was made for another label set
        logging.warning("%s: %d class name(s) differ from the SegFormer's labels, e.g. %d: %r vs %r", table,
                        len(differing), *differing[0])
    settings = {"segformer": str(segformer), "segment": segment_source, "segformer_size": segformer_size,
                "class_adjustment": str(table)}
    return segmenter, adjustment, settings


def run(gan_dir, mse_dir, out_dir, gt_dir=None, threshold=0.7, min_area=4000, batch_size=4, alpha="error",
        segformer=None, class_adjustment=None, segment_source=DEFAULT_SEGMENT,
        segformer_size=DEFAULT_SEGFORMER_SIZE) -> dict:
    """Detects every pair, writes the per-image files, the summaries and the gallery; returns the summary.

    ``segformer``: path of a SegFormer for the semantic adjustment (None: semantics-free); ``class_adjustment``:
    path of its A_k table (None: the published ADE20K table); ``segment_source``: 'gan' or 'mse', the image that
    is segmented; ``segformer_size``: the model's input size (`desra_jax.detection.segment`; None: whole images). A SegFormer or table that cannot be read raises ValueError naming the file.
    """
    gan_dir, mse_dir, out_dir = Path(gan_dir), Path(mse_dir), Path(out_dir)
    gt_dir = Path(gt_dir) if gt_dir else None
    segmenter, adjustment, semantics = load_semantics(segformer, class_adjustment, segment_source, segformer_size)
    pairs, problems = pair_files(gan_dir, mse_dir, gt_dir)
    records, gallery_rows, preds, gts = [], {}, {}, {}
    for batch in batches_by_size(pairs, batch_size, alpha, problems, desc="detect"):
        gans, mses = [b[1] for b in batch], [b[2] for b in batch]
        masks, ds, labels = detect_batch(gans, mses, batch_size, threshold, min_area, segmenter, adjustment)
        for i, ((pair, gan, mse), mask, d) in enumerate(zip(batch, masks, ds)):
            image_labels = None if labels is None else labels[i]
            num_classes = 0 if segmenter is None else len(segmenter.names)
            row = write_outputs(out_dir, pair.name, gan, mse, mask, d, image_labels, num_classes)
            record = {
                "name": pair.name, "gan": str(pair.gan), "mse": str(pair.mse), "height": mask.shape[0],
                "width": mask.shape[1], "artifact_pixels": int(mask.sum()),
                "artifact_fraction": float(mask.mean()), "regions": label_regions(mask)[1],
            }
            if image_labels is not None:
                row["legend"] = report.label_legend(image_labels, segmenter.names)
                record["classes"] = {entry["name"]: entry["fraction"] for entry in row["legend"]}
            gallery_rows[pair.name] = row
            records.append(record)
            gt = load_ground_truth(pair, gt_dir, gan.shape[:2], problems)
            if gt is not None:
                preds[pair.name], gts[pair.name] = mask, gt

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
                     "semantics": semantics},
        "pairs": len(pairs), "processed": len(records), "problems": problems, "metrics": metrics,
        "images": [{key: _finite_or_none(value) for key, value in record.items()} for record in records],
    }
    _write_summaries(out_dir, summary, gallery_rows)
    return summary


def _write_summaries(out_dir: Path, summary: dict, gallery_rows: dict) -> None:
    columns = ["name", "height", "width", "artifact_pixels", "artifact_fraction", "regions"]
    if summary["metrics"] is not None:
        columns += ["iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r"]
    write_bytes_atomic(out_dir / "summary.csv", csv_text(summary["images"], columns).encode("utf-8"))
    write_bytes_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode("utf-8"))
    settings = summary["settings"]
    numbers = [("pairs processed", f"{summary['processed']} of {summary['pairs']}"),
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
    report.write_gallery(out_dir / "index.html", out_dir, "DeSRA artifact detection", numbers, rows,
                         summary["problems"], columns)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.batch_size < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    try:
        summary = run(FLAGS.gan_dir, FLAGS.mse_dir, FLAGS.out_dir, FLAGS.gt_dir, FLAGS.threshold, FLAGS.min_area,
                      FLAGS.batch_size, FLAGS.alpha, FLAGS.segformer, FLAGS.class_adjustment, FLAGS.segment,
                      FLAGS.segformer_size or None)
    except ValueError as error:  # an unreadable SegFormer or adjustment table: nothing can run
        logging.error("%s", error)
        return 1
    out_dir = Path(FLAGS.out_dir)
    for problem in summary["problems"]:
        logging.warning("%s", problem)
    logging.info("processed %d of %d pairs, %d problem(s); gallery: %s, summary: %s", summary["processed"],
                 summary["pairs"], len(summary["problems"]), out_dir / "index.html", out_dir / "summary.json")
    return 0 if summary["processed"] else 1


if __name__ == "__main__":
    _define_detect_flags()
    app.run(main)
