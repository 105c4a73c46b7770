"""DeSRA detection's settings as one frozen value (`DetectionSettings`, holding the `SemanticSettings`), built once
from a command's flags or a config's ``detection`` section, and detection with them on numpy images as the
commands hold them (`Detector`): batches of one size padded to a fixed batch (one compilation per image size),
with the optional semantic adjustment.

Each setting has one name from flag to config key to field: ``threshold``, ``min_area``, ``indicator``,
``window_method``, ``segformer``, ``class_adjustment``, ``segment``, ``segformer_size``, ``segformer_resize``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from absl import logging

from desra_jax.checks import check_number
from desra_jax.data.ade20k import ADE20K_ADJUSTMENT_TSV
from desra_jax.data.matching import stack_padded
from desra_jax.detection.adjustment import load_class_adjustment
from desra_jax.detection.indicator import INDICATOR_ALIASES, INDICATORS
from desra_jax.detection.pipeline import detect_artifacts
from desra_jax.detection.semantic_model import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, Segmenter, load_segmenter


@dataclasses.dataclass(frozen=True)
class SemanticSettings:
    """The semantic adjustment (eq. 8/9): the SegFormer at ``segformer`` (a Hugging Face directory or an mmseg
    checkpoint) segments the ``segment`` image of a pair ('gan', as the released script; 'mse', as the paper's
    text), at input ``segformer_size`` (None: whole images) resized as ``segformer_resize`` ('auto': the
    checkpoint's own pipeline); A_k from ``class_adjustment`` (None: the authors' published ADE20K table)."""

    segformer: str
    class_adjustment: str | None = None
    segment: str = DEFAULT_SEGMENT
    segformer_size: int | None = DEFAULT_SEGFORMER_SIZE
    segformer_resize: str = "auto"

    def segmenter(self) -> Segmenter:
        """The SegFormer read from ``segformer`` (`load_segmenter`: ValueError naming the file, or the setting
        that is not one of its choices)."""
        return load_segmenter(self.segformer, self.segment, self.segformer_size, self.segformer_resize)

    @property
    def table(self) -> Path:
        """The A_k table's file."""
        return Path(self.class_adjustment) if self.class_adjustment else ADE20K_ADJUSTMENT_TSV


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """`detect_artifacts`'s settings: ``threshold`` and ``min_area`` (eq. 9/14 and the released morphology),
    ``indicator`` (one of `INDICATORS`: 'released' is eq. 7 as released; 'relative' is read as 'released'),
    ``window_method`` (None: the backend's), and ``semantics`` (None: the semantics-free variant, Table 4)."""

    threshold: float = 0.7
    min_area: int = 4000
    indicator: str = "released"
    window_method: str | None = None
    semantics: SemanticSettings | None = None

    def __post_init__(self):
        object.__setattr__(self, "indicator", INDICATOR_ALIASES.get(self.indicator, self.indicator))
        if self.indicator not in INDICATORS:
            raise ValueError(f"indicator: expected one of {INDICATORS}, got {self.indicator!r}")
        check_number("--threshold", self.threshold, 0, 1)
        check_number("--min_area", self.min_area, 0, whole=True)

    @classmethod
    def from_values(cls, values: Mapping) -> DetectionSettings:
        """The settings from flags (``FLAGS.flag_values_dict()``) or a config's ``detection`` section, each read
        by its name; a name that is absent keeps its default. An empty ``segformer`` means no semantics (then a
        ``class_adjustment`` is an error), an empty ``class_adjustment`` the published table, a
        ``segformer_size`` of 0 whole images."""
        get = functools.partial(_get, values)
        segformer, table = get("segformer", None), get("class_adjustment", None)
        if not segformer and table:
            raise ValueError(f"{table}: a class adjustment table needs --segformer")
        semantics = SemanticSettings(str(segformer), str(table) if table else None, get("segment", DEFAULT_SEGMENT),
                                     get("segformer_size", DEFAULT_SEGFORMER_SIZE) or None,
                                     get("segformer_resize", "auto")) if segformer else None
        return cls(get("threshold", 0.7), get("min_area", 4000), get("indicator", "released"),
                   get("window_method", None), semantics)


def _get(values: Mapping, key: str, default):
    return values[key] if key in values else default


@dataclasses.dataclass(frozen=True)
class Detector:
    """`detect_artifacts` with its ``settings`` and, with a ``segmenter``, D adjusted per class by
    ``class_adjustment`` (K,)."""

    settings: DetectionSettings = DetectionSettings()
    segmenter: Segmenter | None = None
    class_adjustment: np.ndarray | None = None

    @classmethod
    def from_settings(cls, settings: DetectionSettings) -> Detector:
        """Reads the SegFormer and the A_k table that ``settings.semantics`` name. ValueError naming the file when
        either cannot be read or they disagree on the class count; names that differ are logged (the table is
        applied by index)."""
        semantics = settings.semantics
        if semantics is None:
            return cls(settings)
        segmenter = semantics.segmenter()
        adjustment, table_names = load_class_adjustment(semantics.table)
        if len(adjustment) != len(segmenter.names):
            raise ValueError(f"{semantics.table}: {len(adjustment)} classes, but the SegFormer {semantics.segformer} "
                             f"predicts {len(segmenter.names)}")
        differing = [(k, a, b) for k, (a, b) in enumerate(zip(table_names, segmenter.names)) if a != b]
        if differing:  # the table is applied by index; different names suggest it was made for another label set
            logging.warning("%s: %d class name(s) differ from the SegFormer's labels, e.g. %d: %r vs %r",
                            semantics.table, len(differing), *differing[0])
        return cls(settings, segmenter, adjustment)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The segmenter's class names in label order; () without semantics."""
        return () if self.segmenter is None else self.segmenter.names

    def semantics_record(self) -> dict | None:
        """The semantic settings as a summary reports them (the resize and the table resolved), or None."""
        semantics = self.settings.semantics
        if semantics is None:
            return None
        return {"segformer": semantics.segformer, "segment": semantics.segment,
                "segformer_size": semantics.segformer_size, "segformer_resize": self.segmenter.resize,
                "class_adjustment": str(semantics.table)}

    def batch(self, gans: list[np.ndarray], mses: list[np.ndarray], batch_size: int):
        """Masks (bool), D maps (float32) and labels (int32, or None without a segmenter), (H, W) each, of up to
        `batch_size` (GAN-SR, MSE-SR) pairs of one size, (H, W, 3) each."""
        gan_batch, mse_batch = stack_padded(gans, batch_size), stack_padded(mses, batch_size)
        settings = self.settings
        # detect_artifacts is jitted with its settings static: one compilation per image size and setting
        detect = functools.partial(detect_artifacts, threshold=settings.threshold, min_area=settings.min_area,
                                   indicator=settings.indicator, window_method=settings.window_method)
        count = len(gans)
        if self.segmenter is None:
            mask, d = detect(gan_batch, mse_batch)
            return np.asarray(mask)[:count], np.asarray(d)[:count], None
        labels = self.segmenter(gan_batch, mse_batch)
        mask, d = detect(gan_batch, mse_batch, labels=labels, class_adjustment=self.class_adjustment)
        return np.asarray(mask)[:count], np.asarray(d)[:count], np.asarray(labels)[:count]

    def __call__(self, gan: np.ndarray, mse: np.ndarray) -> np.ndarray:
        """The (H, W) bool artifact mask of one (GAN-SR, MSE-SR) pair, (H, W, 3) each."""
        return self.batch([gan], [mse], 1)[0][0]
