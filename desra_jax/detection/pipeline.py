"""DeSRA's artifact-detection pipeline (appendix A.2, eq. 14) and the LDL* baseline of Tables 1-2, jitted.

detect_artifacts: D (or a Table-4 ablation indicator) -> semantic adjustment -> threshold -> erode (5x5, x1) ->
dilate (5x5, x3) -> fill holes (3x3) -> keep 8-connected regions of more than 4000 px, as the authors' released
script does. Inputs are NHWC float32 in [0, 1], GAN-SR and MSE-SR of the same LR image; everything is batched over
N and runs on device; the keyword arguments other than the arrays are static (one compilation per setting).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from desra_jax.detection import indicator as ind
from desra_jax.detection.morphology import dilate, erode, fill_holes, remove_small_regions
from desra_jax.detection.adjustment import semantic_weights

#: LDL* thresholds of DeSRA's Tables 1-2.
LDL_THRESHOLDS = (0.01, 0.005, 0.001)


def artifact_mask(d: jnp.ndarray, weights: jnp.ndarray | None = None, threshold: float = 0.7) -> jnp.ndarray:
    """Eq. 9/14 as released: clip(D * w, 0, 1) < threshold, w = 1 / A_k (`semantic_weights`) or 1.

    d, weights: (N, H, W) float32. Returns (N, H, W) bool, True = artifact.
    """
    adjusted = d if weights is None else d * weights
    return jnp.clip(adjusted, 0.0, 1.0) < threshold


def refine_mask(mask: jnp.ndarray, min_area: int = 4000, erode_iterations: int = 1, dilate_iterations: int = 3,
                size: int = 5, method: str | None = None) -> jnp.ndarray:
    """The released script's morphology on an (N, H, W) bool mask: erode, dilate, fill holes, drop small regions.

    size x size ones for erosion and dilation; 3x3 structure for the holes; 8-connected regions of more than
    min_area pixels are kept (min_area=0 keeps every region). ``method``: of erosion and dilation (`erode`).
    """
    mask = dilate(erode(mask, size, erode_iterations, method), size, dilate_iterations, method)
    return remove_small_regions(fill_holes(mask), min_area)


def _indicator_and_raw_mask(gan, mse, weights, *, indicator, threshold, window, kind, c, border, method):
    """(raw artifact mask, indicator map), both (N, H', W'), for one of ind.INDICATORS."""
    if indicator in ind.D_FORMS:
        d = ind.indicator_d(gan, mse, window, kind, c, border, method, indicator)
        return artifact_mask(d, weights, threshold), d
    if indicator == "absolute":
        d = ind.indicator_absolute(gan, mse, window, kind, border, method)
        return artifact_mask(d, weights, threshold), d
    if indicator == "unnormalized":
        # A distance (high = artifact): the ablation thresholds it directly, and the semantic adjustment
        # moves it the same way as for D (more tolerance where A_k < 1).
        d = ind.indicator_unnormalized(gan, mse, window, kind, c, border, method)
        return (d if weights is None else d / weights) > threshold, d
    raise ValueError(f"indicator: expected one of {ind.INDICATORS}, got {indicator!r}")


@functools.partial(
    jax.jit,
    static_argnames=("threshold", "min_area", "indicator", "window", "kind", "c", "border", "channels",
                     "erode_iterations", "dilate_iterations", "morphology_size", "window_method"),
)
def detect_artifacts(gan, mse, *, labels=None, class_adjustment=None, threshold: float = 0.7, min_area: int = 4000,
                     indicator: str = "released", window: int = 11, kind: str = "gaussian", c: float = 0.03**2,
                     border: str = "reflect", channels: str = "rgb", erode_iterations: int = 1,
                     dilate_iterations: int = 3, morphology_size: int = 5, window_method: str | None = None):
    """DeSRA artifact detection (appendix A.2): (mask, indicator map).

    Args:
      gan, mse: (N, H, W, 3) float32 in [0, 1], GAN-SR and MSE-SR results of the same inputs.
      labels: optional (N, H, W) int ADE20K class indices of the segmentation (the released script segments the
        GAN-SR image; the paper's text says MSE-SR - the caller chooses). None = the semantics-free variant
        (Table 4, third row).
      class_adjustment: (K,) A_k per class (`semantic.load_class_adjustment`), required with labels.
      threshold: 0.7 (Table 5).
      min_area: regions of at most this many pixels are dropped (4000 in the released script).
      indicator: 'released' = D of eq. 7 as released; Table 4 ablations: 'absolute' (no relative difference,
        `indicator_absolute`), 'unnormalized' (no normalisation, `indicator_unnormalized`, flagged where
        d' > threshold); 'printed' = D of eq. 7 as printed, without C in the numerator (`indicator_d`'s
        form='printed'), thresholded as D.
      window, kind, c, border: of the indicator (`indicator_d`). border='valid' returns masks of
        (H - 2 * (window // 2), W - ...), the released script's size; labels are cropped to match.
      channels: 'rgb' = per colour channel, averaged (released); 'luminance' = on BT.601 luma only (ablation).
      erode_iterations, dilate_iterations, morphology_size: the morphology (1, 3, 5 as released).
      window_method: formulation of the indicator's windows and of erosion/dilation, 'shifted' or
        'reduce_window' (same results); None = `sliding.window_method`'s choice for the default backend.

    Returns:
      mask: (N, H', W') bool, True = artifact. d: (N, H', W') float32 indicator map (before the adjustment).
    """
    if (labels is None) != (class_adjustment is None):
        raise ValueError("detect_artifacts: expected labels and class_adjustment together, got only one of them")
    if channels == "luminance":
        gan, mse = ind.luminance(gan), ind.luminance(mse)
    elif channels != "rgb":
        raise ValueError(f"channels: expected 'rgb' or 'luminance', got {channels!r}")
    weights = None
    if labels is not None:
        if border == "valid":
            half = window // 2
            labels = labels[:, half : labels.shape[1] - half, half : labels.shape[2] - half]
        weights = semantic_weights(labels, class_adjustment)
    raw, d = _indicator_and_raw_mask(gan, mse, weights, indicator=indicator, threshold=threshold, window=window,
                                     kind=kind, c=c, border=border, method=window_method)
    mask = refine_mask(raw, min_area, erode_iterations, dilate_iterations, morphology_size, window_method)
    return mask, d


@functools.partial(jax.jit, static_argnames=("threshold", "window", "morphology", "min_area"))
def ldl_detect(gan, mse, threshold: float = 0.01, *, window: int = 7, morphology: bool = False,
               min_area: int = 4000):
    """LDL* of DeSRA's Tables 1-2: LDL's artifact map (`ldl_artifact_map`, MSE-SR in place of GT) > threshold.

    DeSRA reports thresholds 0.01, 0.005 and 0.001 and does not say whether its morphology follows; by default
    it does not (LDL's map is used as LDL defines it); morphology=True applies `refine_mask` with min_area.

    gan, mse: (N, H, W, C) float32 in [0, 1]. Returns (mask (N, H, W) bool, map (N, H, W) float32).
    """
    artifact_map = ind.ldl_artifact_map(gan, mse, window)
    mask = artifact_map > threshold
    if morphology:
        mask = refine_mask(mask, min_area)
    return mask, artifact_map
