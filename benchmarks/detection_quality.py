"""DeSRA detection quality on a synthetic benchmark made from the bundled photographs: the released defaults, the
ablations of Table 4 and the LDL* baseline of Tables 1-2, with the paper's metrics (eq. 11-13).

Data: each bundled photograph, centre-cropped square and resized to 512x512, with two random seeds; MSE-SR
stand-in = the photograph smoothed, GAN-SR stand-in = the photograph with high-frequency artifact textures in
2-3 random ellipses, which are the ground-truth masks (desra_jax/data/synthetic.py). There is no
segmentation here, so every DeSRA row is the semantics-free variant (Table 4, third row). Prints mean IoU
(percent, as the paper), region precision and recall (p = 0.5) and the detected area per configuration.

    python -m benchmarks.detection_quality
    python -m benchmarks.detection_quality --quick   # 256x256, one seed
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from benchmarks.detection_speed import square_photographs
from desra_jax import detection
from desra_jax.data.bundled import PHOTOGRAPH_NAMES
from desra_jax.metrics.detection import evaluate_detection
from desra_jax.data.synthetic import synthetic_batch

#: (name, keyword arguments of detect_artifacts); the first row is the released default.
DESRA_CONFIGS = (
    ("DeSRA released (Gaussian 11, RGB, D)", {}),
    ("  box window (eq. 3 as written)", {"kind": "box"}),
    ("  luminance only", {"channels": "luminance"}),
    ("  no normalisation (d' > 0.7)", {"indicator": "unnormalized"}),
    ("  no relative difference (abs.)", {"indicator": "absolute"}),
    ("  eq. 7 as printed (no C on top)", {"indicator": "printed"}),
    ("  threshold 0.6", {"threshold": 0.6}),
    ("  threshold 0.8", {"threshold": 0.8}),
    ("  threshold 0.9", {"threshold": 0.9}),
)


def dataset(size: int, seeds: int, min_area: int):
    """(gan, mse, truth) batches over the bundled photographs and seeds; regions big enough for min_area."""
    images = square_photographs(len(PHOTOGRAPH_NAMES), size)
    batches = [synthetic_batch(images, seed=100 * s, regions=2 + s % 2) for s in range(seeds)]
    gan, mse, truth = (np.concatenate(parts) for parts in zip(*batches))
    areas = truth.reshape(len(truth), -1).sum(axis=1)
    assert areas.min() > min_area, f"ground-truth area {areas.min()} px is below min_area {min_area}"
    return gan, mse, truth


def report(name: str, masks, truth) -> None:
    masks = np.asarray(masks)
    scores = evaluate_detection(list(masks), list(truth))
    print(f"{name:<40}{100 * scores['mean_iou']:>7.1f}{scores['precision']:>11.4f}{scores['recall']:>9.4f}"
          f"{masks.mean():>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256x256 images, one seed, min_area 1000")
    args = parser.parse_args()
    size, seeds, min_area = (256, 1, 1000) if args.quick else (512, 2, 4000)
    gan, mse, truth = dataset(size, seeds, min_area)
    gan, mse = jax.device_put(gan), jax.device_put(mse)
    print(f"{len(truth)} synthetic pairs of {size}x{size} from {len(PHOTOGRAPH_NAMES)} bundled photographs; "
          f"min_area {min_area}; ground-truth area fraction {truth.mean():.3f}")
    print(f"{'detector':<40}{'IoU %':>7}{'precision':>11}{'recall':>9}{'area':>10}")
    for name, kwargs in DESRA_CONFIGS:
        report(name, detection.detect_artifacts(gan, mse, min_area=min_area, **kwargs)[0], truth)
    for threshold in detection.LDL_THRESHOLDS:
        report(f"LDL* {threshold} (no morphology)", detection.ldl_detect(gan, mse, threshold)[0], truth)
        report(f"LDL* {threshold} + DeSRA morphology",
               detection.ldl_detect(gan, mse, threshold, morphology=True, min_area=min_area)[0], truth)


if __name__ == "__main__":
    main()
