"""DeSRA artifact detection as pure, jitted JAX functions (NHWC float32 in [0, 1], batched over N)."""

from desra_jax.detection.indicator import (
    indicator_absolute,
    indicator_d,
    indicator_unnormalized,
    ldl_artifact_map,
    local_moments,
    luminance,
)
from desra_jax.detection.morphology import (
    dilate,
    erode,
    fill_holes,
    label_components,
    remove_small_regions,
)
from desra_jax.detection.pipeline import LDL_THRESHOLDS, artifact_mask, detect_artifacts, ldl_detect, refine_mask
from desra_jax.detection.adjustment import load_class_adjustment, semantic_weights
from desra_jax.detection.calibration import (
    accumulate,
    calibrate_class_adjustment,
    class_adjustment_from_histograms,
    init_histograms,
)
from desra_jax.detection.adjustment import ClassAdjustment, save_class_adjustment
from desra_jax.detection.semantic_model import default_resize, keep_ratio_size, segment
from desra_jax.detection.sliding import WINDOW_METHODS, WINDOW_OPERATIONS, window_method
