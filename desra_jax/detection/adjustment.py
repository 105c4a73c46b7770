"""Semantic-aware adjustment of DeSRA (eq. 8/9, 14/15): per-class weights A_k on a segmentation label map.

The published table (third_party/ade20k/desra_ade20k_adjustment.tsv, from TencentARC/DeSRA) gives for each of
the 150 ADE20K classes (mmseg order, 0 = wall) a bin index b_k of 20 equal bins of [0, 1]; A_k = 1 - b_k / 20
(A_sky = 1, A_tree = 0.75, A_building = 0.80, as the paper states).

Three file formats hold such a table; `load_class_adjustment` tells them apart by their content:

- the bundled TSV (``index, name, bin, A`` columns, ``#`` comments);
- the authors' text file (``SSIM_MSE_GAN_threshold.txt``: one ``name--bin`` line per class, any order; their
  script reads it as weight 20 / (20 - bin)); names are matched to the ADE20K class order;
- ours, JSON (`save_class_adjustment`), written by the calibration (eq. 15): per class its index, name, A exact,
  A binned, bin, pixel count and whether the class was seen at all.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from desra_jax.data.ade20k import ADE20K_ADJUSTMENT_TSV, ade20k_class_names
from desra_jax.files import write_bytes_atomic

#: The same table in the authors' own text format, as their repository ships it.
ADE20K_ADJUSTMENT_AUTHORS_TXT = ADE20K_ADJUSTMENT_TSV.parent / "SSIM_MSE_GAN_threshold.txt"

#: Equal bins of [0, 1] in which the authors publish A_k: A_k = 1 - bin / ADJUSTMENT_BINS.
ADJUSTMENT_BINS = 20

#: The "format" field of our JSON files.
JSON_FORMAT = "desra_jax.class_adjustment.v1"


@dataclasses.dataclass(frozen=True)
class ClassAdjustment:
    """A calibrated table of eq. 15, one entry per class (K classes), as `save_class_adjustment` writes it.

    Attributes:
      names: (K,) class names in label order.
      exact: (K,) A_k at the histogram's resolution (see `calibration.class_adjustment_from_histograms`).
      bins: (K,) int bin index b_k in 0..19 of the authors' quantisation.
      pixels: (K,) int number of pixels of each class that the calibration saw.
      percentile: P of eq. 15 (85): at least P % of a class's pixels have D >= A_k.
      resolution: width of the histogram bins the exact values come from (1 / number of bins).
    """

    names: tuple[str, ...]
    exact: np.ndarray
    bins: np.ndarray
    pixels: np.ndarray
    percentile: float
    resolution: float

    @property
    def binned(self) -> np.ndarray:
        """(K,) A_k = 1 - b_k / 20, the values the released script uses."""
        return adjustment_from_bins(self.bins)

    @property
    def seen(self) -> np.ndarray:
        """(K,) bool: the class had pixels; unseen classes have A = 1 (no adjustment)."""
        return self.pixels > 0


def adjustment_from_bins(bins) -> np.ndarray:
    """The released rule A_k = 1 - b_k / 20 for bin indices (K,) in 0..19; (K,) float32 in [0.05, 1]."""
    return (1.0 - np.asarray(bins) / ADJUSTMENT_BINS).astype(np.float32)


def load_class_adjustment(path: str | Path = ADE20K_ADJUSTMENT_TSV, *, exact: bool = False
                          ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Reads a per-class adjustment table: (A (K,) float32 in (0, 1], class names), in label order.

    Accepts the bundled TSV, the authors' ``name--bin`` text file (K = 150 ADE20K classes, names matched to the
    ADE20K order) and our JSON. For the TSV and the authors' file A is 1 - bin / 20 (the released code's rule),
    not the rounded A column. For our JSON, ``exact=False`` gives the binned values (as released) and
    ``exact=True`` the exact percentiles; ``exact=True`` is an error for the other formats, which have none.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the class adjustment table ({error})") from error
    if text.lstrip().startswith("{"):
        return _parse_json(path, text, exact)
    if exact:
        raise ValueError(f"{path}: exact=True needs our JSON format (with exact percentiles); this is a bin table")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if lines and lines[0].split("\t")[:3] == ["index", "name", "bin"]:
        return _parse_tsv(path, lines)
    return _parse_authors(path, lines)


def _parse_tsv(path: Path, lines: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    rows = list(csv.reader(lines, delimiter="\t"))
    body = rows[1:]
    if [int(r[0]) for r in body] != list(range(len(body))):
        raise ValueError(f"{path}: expected rows with indices 0..K-1 in order, got {[r[0] for r in body][:5]}...")
    return _checked_bins(path, [int(r[2]) for r in body]), tuple(r[1] for r in body)


def _parse_authors(path: Path, lines: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    names = ade20k_class_names()
    bins: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        name, separator, value = line.strip().rpartition("--")
        if not separator or not value.strip().isdigit():
            raise ValueError(f"{path}: line {number}: expected 'name--bin' (the authors' format), got {line!r}")
        if name not in names:
            raise ValueError(f"{path}: line {number}: {name!r} is not an ADE20K class name")
        bins[name] = int(value)
    missing = [name for name in names if name not in bins]
    if missing:
        raise ValueError(f"{path}: no bin for {len(missing)} ADE20K class(es): {', '.join(missing[:5])}")
    return _checked_bins(path, [bins[name] for name in names]), names


def _parse_json(path: Path, text: str, exact: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        table = json.loads(text)
        classes = table["classes"]
        if table.get("format") != JSON_FORMAT:
            raise ValueError(f"format {table.get('format')!r} is not {JSON_FORMAT!r}")
        if [c["index"] for c in classes] != list(range(len(classes))):
            raise ValueError("class indices are not 0..K-1 in order")
        values = np.array([c["A_exact" if exact else "A_binned"] for c in classes], np.float32)
        names = tuple(c["name"] for c in classes)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a class adjustment JSON file ({error})") from error
    if not np.all((values > 0) & (values <= 1)):
        worst = names[int(np.argmin(np.where((values > 0) & (values <= 1), 2.0, values)))]
        raise ValueError(f"{path}: expected A in (0, 1] for every class, got {values.min()} (e.g. {worst!r})")
    return values, names


def _checked_bins(path: Path, bins: Sequence[int]) -> np.ndarray:
    bins = np.asarray(bins)
    if bins.min() < 0 or bins.max() >= ADJUSTMENT_BINS:
        raise ValueError(f"{path}: expected bin indices in 0..{ADJUSTMENT_BINS - 1}, got {bins.min()}..{bins.max()}")
    return adjustment_from_bins(bins)


def save_class_adjustment(path: str | Path, adjustment: ClassAdjustment, calibrated_on: dict | None = None) -> None:
    """Writes a calibrated table as our JSON (atomically); `load_class_adjustment` reads it back. ``calibrated_on``
    (e.g. the pairs used and the files refused, by name) is kept in the file for the reader, not read back."""
    classes = [
        {"index": index, "name": name, "A_exact": float(exact), "A_binned": float(binned), "bin": int(bin_),
         "pixels": int(pixels), "seen": bool(pixels > 0)}
        for index, (name, exact, binned, bin_, pixels) in enumerate(
            zip(adjustment.names, adjustment.exact, adjustment.binned, adjustment.bins, adjustment.pixels))
    ]
    table = {
        "format": JSON_FORMAT,
        "rule": (f"eq. 15 of DeSRA: at least {adjustment.percentile:g} % of a class's pixels have D >= A_exact "
                 f"(largest such value, to a resolution of {adjustment.resolution:g}); "
                 f"A_binned = 1 - bin / {ADJUSTMENT_BINS}, the upper edge of the 1/{ADJUSTMENT_BINS} interval "
                 "holding A_exact; unseen classes: A = 1"),
        "percentile": adjustment.percentile,
        "resolution": adjustment.resolution,
        "classes": classes,
    }
    if calibrated_on is not None:
        table["calibrated_on"] = calibrated_on
    write_bytes_atomic(path, (json.dumps(table, indent=1) + "\n").encode("utf-8"))


def semantic_weights(labels: jnp.ndarray, class_adjustment) -> jnp.ndarray:
    """Per-pixel weights 1 / A_k of eq. 9/14 (the released script multiplies D by them).

    Args:
      labels: (N, H, W) integer class indices in [0, K) (ADE20K: K = 150, 0 = wall). Out-of-range labels
        (e.g. an ignore index 255) get weight 1, i.e. no adjustment.
      class_adjustment: (K,) A_k in (0, 1].

    Returns:
      (N, H, W) float32 >= 1.
    """
    if labels.ndim != 3:
        raise ValueError(f"semantic_weights: expected (N, H, W) class labels, got shape {labels.shape}")
    reciprocal = 1.0 / jnp.asarray(class_adjustment, jnp.float32)
    return jnp.take(reciprocal, labels.astype(jnp.int32), mode="fill", fill_value=1.0)
