"""DeSRA detection with its settings, on numpy images as the commands hold them: batches of one size padded to a
fixed batch (one compilation per image size), with the optional semantic adjustment."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from desra_jax.data.folder_pairs import stack_padded
from desra_jax.detection.pipeline import detect_artifacts
from desra_jax.detection.segmenter import Segmenter


@dataclasses.dataclass(frozen=True)
class Detector:
    """`detect_artifacts` with `threshold` and `min_area` (eq. 9/14 and the released morphology), its `indicator`
    (the released eq. 7 by default; the Table 4 ablations) and `window_method` (None: the backend's), and, with a
    `segmenter`, D adjusted per class by `class_adjustment` (K,)."""

    threshold: float = 0.7
    min_area: int = 4000
    segmenter: Segmenter | None = None
    class_adjustment: np.ndarray | None = None
    indicator: str = "relative"
    window_method: str | None = None

    def batch(self, gans: list[np.ndarray], mses: list[np.ndarray], batch_size: int):
        """Masks (bool), D maps (float32) and labels (int32, or None without a segmenter), (H, W) each, of up to
        `batch_size` (GAN-SR, MSE-SR) pairs of one size, (H, W, 3) each."""
        gan_batch, mse_batch = stack_padded(gans, batch_size), stack_padded(mses, batch_size)
        # detect_artifacts is jitted with its settings static: one compilation per image size and setting
        detect = functools.partial(detect_artifacts, threshold=self.threshold, min_area=self.min_area,
                                   indicator=self.indicator, window_method=self.window_method)
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
