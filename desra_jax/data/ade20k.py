"""The ADE20K label set that DeSRA's SegFormer predicts: 150 classes in mmseg order (0 = wall), the names read
from the bundled table of the authors' per-class adjustment (third_party/ade20k, with its source and licence)."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

#: The authors' per-class adjustment table (index, name, bin, A), shipped in third_party/ade20k/.
ADE20K_ADJUSTMENT_TSV = Path(__file__).resolve().parents[2] / "third_party" / "ade20k" / "desra_ade20k_adjustment.tsv"

#: Number of ADE20K classes the SegFormer of the paper predicts (K of eq. 8).
NUM_ADE20K_CLASSES = 150


@functools.cache
def ade20k_class_names() -> tuple[str, ...]:
    """The 150 ADE20K class names in label order (0 = wall), from the bundled table's ``name`` column."""
    lines = [line for line in ADE20K_ADJUSTMENT_TSV.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    return tuple(row["name"] for row in sorted(rows, key=lambda row: int(row["index"])))
