"""Visual reports for people: D maps and segmentations in colour, mask overlays, thumbnails and HTML galleries
(detection, DeSRA fine-tuning, the localizer's sample grids), and the detection outputs they show (per-image
masks, records and thumbnails, the summaries). Images are float32 RGB in [0, 1], (H, W, 3).
"""

from __future__ import annotations

import colorsys
import html
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from desra_jax.data.image_io import write_image
from desra_jax.files import write_bytes_atomic, write_csv, write_json
from desra_jax.metrics.detection import label_regions

#: Longest side of the gallery thumbnails: four columns of this fit a laptop screen.
THUMBNAIL_SIDE = 384

#: Columns of the gallery, in order: (key of a row's image paths, heading).
GALLERY_COLUMNS = (
    ("mse", "MSE-SR"),
    ("gan", "GAN-SR"),
    ("d", "D (dark = low = artifact-like)"),
    ("overlay", "mask overlay"),
)

#: Columns of the gallery of DeSRA at inference (experiments.upscale): the input, both models, the merged result
#: (eq. 10) and, where an HR image was given, the HR beside it; then the detection.
UPSCALE_COLUMNS = (
    ("lr", "LR input (nearest)"),
    ("gan", "GAN-SR"),
    ("mse", "MSE-SR"),
    ("merged", "merged (DeSRA at inference)"),
    ("hr", "HR"),
    ("d", "D (dark = low = artifact-like)"),
    ("overlay", "mask overlay"),
)

#: The column added with the semantic adjustment; its cells carry a legend of the classes present.
SEGMENTATION_COLUMN = ("segmentation", "segmentation (classes)")

#: Classes listed in a legend: the largest ones, so a cluttered segmentation stays readable.
LEGEND_CLASSES = 12


def colorize_d(d: np.ndarray) -> np.ndarray:
    """The indicator D, (H, W) in [0, 1] (clipped), as an RGB viridis image (H, W, 3) in [0, 1].

    Viridis is monotonic in lightness, so low D (artifact-like texture) is dark in colour and in grey print.
    """
    levels = np.round(np.clip(np.nan_to_num(d), 0.0, 1.0) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def label_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) float32 RGB colours, one per class, in [0, 1].

    Hues step by the golden ratio of a turn, so classes with neighbouring indices get far-apart hues; saturation
    and value alternate as well, which separates classes whose hues come close again after many steps.
    """
    index = np.arange(num_classes)
    hues = (index * 0.6180339887) % 1.0
    saturations = 0.5 + 0.2 * (index % 3)
    values = 0.95 - 0.25 * (index % 2)
    return np.array([colorsys.hsv_to_rgb(*hsv) for hsv in zip(hues, saturations, values)], np.float32).reshape(-1, 3)


def colorize_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class labels (H, W) int as an RGB image (H, W, 3) float32 in [0, 1]; labels outside [0, K) are black."""
    palette = np.concatenate([label_palette(num_classes), np.zeros((1, 3), np.float32)])
    return palette[np.where((labels >= 0) & (labels < num_classes), labels, num_classes)]


def label_legend(labels: np.ndarray, names: Sequence[str]) -> list[dict]:
    """The classes present in (H, W) labels, largest first: [{'name', 'colour' ('#rrggbb'), 'fraction'}]."""
    counts = np.bincount(labels[(labels >= 0) & (labels < len(names))].ravel(), minlength=len(names))
    palette = np.round(label_palette(len(names)) * 255).astype(int)
    return [
        {"name": names[k], "colour": "#{:02x}{:02x}{:02x}".format(*palette[k]),
         "fraction": round(float(counts[k]) / labels.size, 6)}
        for k in np.argsort(-counts, kind="stable") if counts[k]
    ]


def overlay_mask(image: np.ndarray, mask: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The mask (H, W) bool tinted red over the image (H, W, 3), with a solid red outline so that thin or
    pale regions stay visible in a thumbnail. Returns (H, W, 3) float32 in [0, 1]."""
    red = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    tinted = np.where(mask[:, :, None], (1 - opacity) * image + opacity * red, image).astype(np.float32)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(mask.shape) / 400))
    return cv2.drawContours(np.ascontiguousarray(tinted), contours, -1, tuple(map(float, red)), thickness)


def thumbnail(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The image shrunk (area averaging) so that its longest side is at most ``side``; smaller ones unchanged."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def mask_record(mask: np.ndarray) -> dict:
    """A detection's numbers for the summaries: size, artifact pixels and fraction, 8-connected regions."""
    return {"height": mask.shape[0], "width": mask.shape[1], "artifact_pixels": int(mask.sum()),
            "artifact_fraction": float(mask.mean()), "regions": label_regions(mask)[1]}


def detection_gallery_row(name: str, segmentation: bool = False) -> dict:
    """The gallery thumbnails of image ``name`` that `write_detection` writes, relative to the output folder."""
    keys = ("mse", "gan", "d", "overlay") + (("segmentation",) if segmentation else ())
    return {key: f"gallery/{name}_{key}.png" for key in keys}


def detection_files(name: str, gallery: bool = True, segmentation: bool = False) -> list[str]:
    """The image files `write_detection` writes for image ``name``, relative to the output folder."""
    folders = ("masks", "overlays", "d_maps") + (("segmentation",) if segmentation else ()) if gallery else ("masks",)
    thumbnails = list(detection_gallery_row(name, segmentation).values()) if gallery else []
    return [f"{folder}/{name}.png" for folder in folders] + thumbnails


def write_thumbnails(out_dir: Path, name: str, images: dict[str, np.ndarray], folder: str = "gallery") -> dict:
    """Writes `thumbnail` of each image to ``<folder>/<name>_<key>.png``; returns {key: that path relative to
    ``out_dir``}, the cells of a gallery row."""
    for key, image in images.items():
        write_image(Path(out_dir) / folder / f"{name}_{key}.png", thumbnail(image))
    return {key: f"{folder}/{name}_{key}.png" for key in images}


def write_detection(out_dir: Path, name: str, sources: dict, images: tuple, class_names: Sequence[str] = (),
                    gallery: bool = True) -> tuple[dict, dict | None]:
    """Writes one image's detection and returns its (record, gallery row): ``masks/<name>.png`` always; with
    ``gallery`` also ``overlays/``, ``d_maps/`` (and ``segmentation/``) and the gallery's thumbnails.

    ``sources``: the files the record names (e.g. {'gan': ..., 'mse': ...}); ``images``: (GAN-SR, MSE-SR
    (H, W, 3), mask (H, W) bool, D (H, W), labels (H, W) int or None); ``class_names``: the labels' classes.
    The record is ``name``, the sources, `mask_record` and, with labels, the classes' fractions.
    """
    gan, mse, mask, d, labels = images
    record = {"name": name, **sources, **mask_record(mask)}
    write_image(out_dir / "masks" / f"{name}.png", mask)
    if not gallery:
        return record, None
    overlay, d_colour = overlay_mask(gan, mask), colorize_d(d)
    write_image(out_dir / "overlays" / f"{name}.png", overlay)
    write_image(out_dir / "d_maps" / f"{name}.png", d_colour)
    thumbnails = {"mse": mse, "gan": gan, "d": d_colour, "overlay": overlay}
    if labels is not None:
        thumbnails["segmentation"] = colorize_labels(labels, len(class_names))
        write_image(out_dir / "segmentation" / f"{name}.png", thumbnails["segmentation"])
    write_thumbnails(out_dir, name, thumbnails)
    row = detection_gallery_row(name, labels is not None)
    if labels is not None:
        row["legend"] = label_legend(labels, class_names)
        record["classes"] = {entry["name"]: entry["fraction"] for entry in row["legend"]}
    return record, row


#: Per-image figures against an HR image that a detection record may carry: (key, caption label).
HR_FIGURES = (("psnr_gan", "PSNR vs HR: GAN-SR"), ("psnr_merged", "merged"))


def write_detection_summaries(out_dir: Path, summary: dict, gallery_rows: dict,
                              title: str = "DeSRA artifact detection", counted: str = "pairs",
                              columns: Sequence[tuple[str, str]] = GALLERY_COLUMNS) -> None:
    """``summary.csv``, ``summary.json`` and the gallery ``index.html`` of a detection ``summary`` (``settings``
    with threshold, min_area and semantics; ``images``, one record of `write_detection` each, with `HR_FIGURES`
    where measured; ``processed``, ``pairs``, ``problems``, ``metrics``; optional ``notes``: (label, value) lines
    shown at the top), ``gallery_rows`` by name; ``counted`` names what ``pairs`` counts; ``columns`` those of
    the gallery (a column no row has is left out)."""
    fields = ["name", "height", "width", "artifact_pixels", "artifact_fraction", "regions"]
    fields += [key for key, _ in HR_FIGURES if any(key in record for record in summary["images"])]
    if summary["metrics"] is not None:
        fields += ["iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r"]
    write_csv(out_dir / "summary.csv", summary["images"], fields)
    write_json(out_dir / "summary.json", summary)
    rows = []
    for record in summary["images"]:
        caption = f"{record['artifact_fraction']:.2%} artifact, {record['regions']} region(s)"
        if record.get("iou") is not None:
            caption += f", IoU {record['iou']:.3f}"
        caption += "".join(f", {label} {record[key]:.2f} dB" for key, label in HR_FIGURES if key in record)
        rows.append({"name": record["name"], "caption": caption, **gallery_rows[record["name"]]})
    columns = tuple(columns) + ((SEGMENTATION_COLUMN,) if summary["settings"]["semantics"] else ())
    columns = tuple(c for c in columns if not rows or any(c[0] in row for row in rows))
    numbers = _detection_numbers(summary, counted) + list(summary.get("notes", ()))
    write_gallery(out_dir / "index.html", out_dir, title, numbers, rows, summary["problems"], columns)


def _detection_numbers(summary: dict, counted: str) -> list[tuple[str, str]]:
    """The (label, value) lines at the top of a detection gallery."""
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
    return numbers


def _figure(out_dir: Path, page_dir: Path, relative: str, caption: str) -> str:
    # percent-encoded: a '#' or '?' in a file name would otherwise cut the link short
    source = html.escape(quote(Path(os.path.relpath(out_dir / relative, page_dir)).as_posix()), quote=True)
    return f'<a href="{source}"><img src="{source}" alt="{html.escape(caption, quote=True)}"></a>'


def _legend(entries: Sequence[dict]) -> str:
    """A list of colour swatches and class names with their share of the image."""
    items = "".join(
        f'<li><span class=swatch style="background:{html.escape(e["colour"])}"></span>'
        f'{html.escape(e["name"])} {e["fraction"]:.1%}</li>'
        for e in entries[:LEGEND_CLASSES]
    )
    more = f"<li>and {len(entries) - LEGEND_CLASSES} more</li>" if len(entries) > LEGEND_CLASSES else ""
    return f"<ul class=legend>{items}{more}</ul>"


def write_gallery(path: str | os.PathLike, out_dir: str | os.PathLike, title: str, summary: Sequence[tuple[str, str]],
                  rows: Sequence[dict], problems: Sequence[str],
                  columns: Sequence[tuple[str, str]] = GALLERY_COLUMNS) -> None:
    """Writes the HTML gallery: summary numbers and problems at the top, then one row per image pair.

    Args:
      path: the HTML file (written atomically).
      out_dir: folder that the images of ``rows`` are relative to; the page links them relatively, so the
        folder can be moved or archived as a whole.
      summary: (label, value) pairs shown at the top.
      rows: {"name", "caption"} and an image path relative to ``out_dir`` for each column key ("mse", "gan",
        "d", "overlay"; "segmentation"); with the segmentation column also "legend" (`label_legend`).
      problems: one line per file that could not be processed.
      columns: (row key, heading) of the images shown side by side; `SEGMENTATION_COLUMN` may be added.
    """
    path, out_dir = Path(path), Path(out_dir)
    summary_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary)
    problems_html = (
        "<h2>Problems</h2><ul class=problems>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
        if problems
        else ""
    )
    header = "".join(f"<th>{html.escape(heading)}</th>" for _, heading in columns)

    def cell(row, key, heading):
        if key not in row:
            return "<td></td>"
        legend = _legend(row["legend"]) if key == SEGMENTATION_COLUMN[0] else ""
        figure = _figure(out_dir, path.parent, row[key], f"{row['name']} {heading}")
        return f"<td>{figure}{legend}</td>"

    body = "".join(
        f"<tr><th colspan={len(columns)} class=name>{html.escape(row['name'])} "
        f"<span>{html.escape(row['caption'])}</span></th></tr><tr>"
        + "".join(cell(row, key, heading) for key, heading in columns)
        + "</tr>"
        for row in rows
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table.summary th {{ text-align: left; padding-right: 1em; }}
table.gallery {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
table.gallery td {{ padding: 3px; vertical-align: top; }}
table.gallery img {{ width: 100%; height: auto; display: block; }}
th.name {{ text-align: left; padding-top: 1em; }} th.name span {{ font-weight: normal; color: #555; }}
ul.problems {{ color: #a00; }}
ul.legend {{ list-style: none; padding: 0; margin: 4px 0; font-size: 85%; columns: 2; }}
span.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: middle;
  border: 1px solid #888; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table class=summary>{summary_html}</table>
{problems_html}
<table class=gallery><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
</body></html>
"""
    write_bytes_atomic(path, page.encode("utf-8"))


#: Columns of the DeSRA fine-tuning report, in order (HR only where the held-out images have it).
FINETUNE_COLUMNS = (("lr", "LR input (nearest)"), ("before", "GAN-SR before (detected artifacts)"),
                    ("after", "fine-tuned (detected artifacts)"), ("mse", "MSE-SR"), ("hr", "HR"))

#: What each figure of the fine-tuning report counts, one line each: a removal rate of 1.0 beside an addition rate
#: of 1.0 reads as a contradiction without them.
FIGURE_MEANINGS = {
    "removal_rate": "share of the artifact regions before (B) that are gone: no pixel of them detected after",
    "addition_rate": "share of the regions detected after that reach outside B, by even one pixel: one region "
                     "left that grows gives 1.0",
    "new_artifact_fraction": "the area behind the addition rate: share of the pixels detected after but not before",
    "artifact_fraction_before": "share of the pixels detected as artifacts in the original model's results",
    "artifact_fraction_after": "the same in the fine-tuned model's results",
    "change_outside_artifacts": "mean absolute change of the result where nothing was detected before ([0, 1])",
    "change_in_artifacts": "the same where something was",
    "sharpness_outside_artifacts": "mean luma gradient after over before where neither detection found anything "
                                   "(1: detail kept; below: blurred)",
}


def finetune_numbers(summary: dict, rates_against: str) -> list[tuple[str, str]]:
    """The (label, value) lines at the top of the fine-tuning report: B, then each figure with what it counts."""
    numbers = [("removal / addition rates against (B)", rates_against)]
    for key, value in summary.items():
        meaning = FIGURE_MEANINGS.get(key)
        numbers.append((key, f"{value:.4f}" + (f"  ({meaning})" if meaning else "")))
    return numbers


def write_finetune_report(out_dir: str, names: Sequence[str], before, after, mse_results: Sequence[np.ndarray],
                          summary: dict, rates_against: str, lrs: Sequence[np.ndarray] = (),
                          hrs: Sequence[np.ndarray | None] = ()) -> None:
    """`out_dir/index.html` of a DeSRA fine-tuning: the summary (`finetune_numbers`), and per held-out image
    `names`, LR | before | after (detected masks overlaid) | MSE-SR | HR. before, after: (SR results (H, W, 3),
    masks (H, W)) of the original and the fine-tuned model; lrs: the LR inputs (shown nearest-upscaled); hrs:
    their HR images or None (left out when empty)."""
    rows = []
    for i, (name, gan_before, mask_before, gan_after, mask_after, mse_sr) in enumerate(
            zip(names, *before, *after, mse_results)):
        cells = {"before": overlay_mask(gan_before, mask_before), "after": overlay_mask(gan_after, mask_after),
                 "mse": mse_sr}
        if i < len(lrs):
            cells["lr"] = cv2.resize(lrs[i], mse_sr.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if i < len(hrs) and hrs[i] is not None:
            cells["hr"] = hrs[i]
        caption = f"{100 * mask_before.mean():.2f} % -> {100 * mask_after.mean():.2f} % artifact"  # after the name
        rows.append({"name": name, "caption": caption, **write_thumbnails(Path(out_dir), name, cells, "images")})
    columns = [c for c in FINETUNE_COLUMNS if any(c[0] in row for row in rows)]
    write_gallery(os.path.join(out_dir, "index.html"), out_dir, "DeSRA fine-tuning",
                  finetune_numbers(summary, rates_against), rows, [], columns)
