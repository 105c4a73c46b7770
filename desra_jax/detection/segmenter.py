"""The semantic side of detection with a real model: a converted SegFormer that segments one image of each
GAN-SR / MSE-SR pair (`Segmenter`), read from a checkpoint with its per-class adjustment table (`load_semantics`).

`load_semantics` is the one way every command (detection, calibration, fine-tuning) reads these: the table's
class count must be the SegFormer's, and names that differ are logged (the table is applied by index).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from desra_jax.convert import load_segformer
from desra_jax.detection.segmentation import RESIZE_MODES, default_resize, segment
from desra_jax.detection.semantic import ADE20K_ADJUSTMENT_TSV, load_class_adjustment

#: Which image of a pair SegFormer segments by default: the GAN-SR one, as the authors' released script does.
DEFAULT_SEGMENT = "gan"

#: SegFormer's input size by default: that of the published ``nvidia/segformer-*-finetuned-ade-512-512`` models.
DEFAULT_SEGFORMER_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Segmenter:
    """A converted SegFormer (`desra_jax.convert.load_segformer`) and which image of a pair it segments."""

    model: Any
    params: Any
    names: tuple[str, ...]
    source: str = DEFAULT_SEGMENT
    size: int | None = DEFAULT_SEGFORMER_SIZE
    resize: str = "square"

    def __call__(self, gans: np.ndarray, mses: np.ndarray) -> jax.Array:
        """(N, H, W) int32 class labels (on the device) of the ``source`` images, (N, H, W, 3) each."""
        images = gans if self.source == "gan" else mses
        return segment(images, self.model, self.params, size=self.size, resize=self.resize)


def load_segmenter(path: str | Path, source: str = DEFAULT_SEGMENT, size: int | None = DEFAULT_SEGFORMER_SIZE,
                   resize: str = "auto") -> Segmenter:
    """Reads a SegFormer that segments the ``source`` image, resized as ``resize`` says (`segment`: 'square' at
    input ``size``, or mmseg's 'keep_ratio'; 'auto': the checkpoint's own pipeline, `default_resize`); ValueError
    naming ``path`` when it cannot be read."""
    if resize not in ("auto", *RESIZE_MODES):
        raise ValueError(f"segformer resize: expected 'auto' or one of {RESIZE_MODES}, got {resize!r}")
    if source not in ("gan", "mse"):
        raise ValueError(f"segment: expected 'gan' or 'mse', got {source!r}")
    try:
        model, params, id2label = load_segformer(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: cannot read the SegFormer ({error})") from error
    id2label = {int(key): str(value).strip() for key, value in id2label.items()}
    resize = default_resize(model) if resize == "auto" else resize
    return Segmenter(model, params, tuple(id2label[i] for i in range(len(id2label))), source, size, resize)




def load_semantics(segformer: str | Path | None, class_adjustment: str | Path | None = None,
                   segment_source: str = DEFAULT_SEGMENT, segformer_size: int | None = DEFAULT_SEGFORMER_SIZE,
                   segformer_resize: str = "auto") -> tuple[Segmenter | None, np.ndarray | None, dict | None]:
    """(segmenter, A (K,), settings to report) of the SegFormer at ``segformer`` and the A_k table at
    ``class_adjustment`` (None: the authors' published ADE20K table), or (None, None, None) without a SegFormer.
    ValueError naming the file when either cannot be read or they disagree on the class count."""
    if not segformer:
        if class_adjustment:
            raise ValueError(f"{class_adjustment}: a class adjustment table needs --segformer")
        return None, None, None
    table = Path(class_adjustment) if class_adjustment else ADE20K_ADJUSTMENT_TSV
    segmenter = load_segmenter(segformer, segment_source, segformer_size, segformer_resize)
    adjustment, table_names = load_class_adjustment(table)
    if len(adjustment) != len(segmenter.names):
        raise ValueError(f"{table}: {len(adjustment)} classes, but the SegFormer {segformer} predicts "
                         f"{len(segmenter.names)}")
    differing = [(k, a, b) for k, (a, b) in enumerate(zip(table_names, segmenter.names)) if a != b]
    if differing:  # the table is applied by index; different names suggest it was made for another label set
        logging.warning("%s: %d class name(s) differ from the SegFormer's labels, e.g. %d: %r vs %r", table,
                        len(differing), *differing[0])
    settings = {"segformer": str(segformer), "segment": segment_source, "segformer_size": segformer_size,
                "segformer_resize": segmenter.resize, "class_adjustment": str(table)}
    return segmenter, adjustment, settings


