"""DeSRA detection: the jitted JAX pipeline against the same pipeline in cv2/scipy, in one run.

Times, for batches of GAN-SR / MSE-SR pairs (synthetic GAN-like pairs made from the bundled photographs, see
desra_jax/data/synthetic.py):
  * the D map alone (desra_jax.detection.indicator_d vs cv2.GaussianBlur in float32, per image),
  * the whole released pipeline (D, threshold 0.7, erode, dilate, fill holes, regions > 4000 px:
    desra_jax.detection.detect_artifacts vs references/desra_numpy.py in float32, which is the authors'
    script as a cv2 user writes it: cv2.GaussianBlur, cv2.erode/dilate, scipy binary_fill_holes,
    cv2.connectedComponentsWithStats),
and prints JAX / cv2 time ratios (below 1 = JAX faster), the compile time, and how far the two agree.
JAX runs on its default device (CPU here, the GPU where there is one); cv2/scipy always on the CPU.

    python -m benchmarks.detection_speed            # 1024x1024 and 2048x2048, batch 8
    python -m benchmarks.detection_speed --quick    # 256x256 and 512x512, batch 2 (a smoke run)
"""

from __future__ import annotations

import argparse
import time

import cv2
import jax
import numpy as np

from benchmarks.timing import median_seconds
from desra_jax import detection
from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from references import desra_numpy as cv2_pipeline
from desra_jax.data.synthetic import synthetic_batch



def square_photographs(count: int, size: int) -> list[np.ndarray]:
    """``count`` bundled photographs, centre-cropped square and resized to (size, size, 3) float32 in [0, 1]."""
    images = []
    for i in range(count):
        image = bundled_photograph(PHOTOGRAPH_NAMES[i % len(PHOTOGRAPH_NAMES)])
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        square = image[top : top + side, left : left + side]
        images.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 and 512 px, batch 2 (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="square image sizes to time")
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    sizes = args.sizes or ([256, 512] if args.quick else [1024, 2048])
    batch = args.batch or (2 if args.quick else 8)
    repeats = args.repeats or 3

    print(f"JAX device: {jax.devices()[0].device_kind} ({jax.default_backend()}); cv2 {cv2.__version__} with "
          f"{cv2.getNumThreads()} threads; batch {batch}; median of {repeats}")
    print(f"{'measurement':<28}{'JAX s':>9}{'cv2 s':>9}{'JAX/cv2':>9}{'compile s':>11}  agreement")
    d_map = jax.jit(detection.indicator_d)
    for size in sizes:
        gan, mse, _ = synthetic_batch(square_photographs(batch, size), seed=size)
        gan_dev, mse_dev = jax.device_put(gan), jax.device_put(mse)

        start = time.perf_counter()
        d_jax = np.asarray(d_map(gan_dev, mse_dev))
        compile_d = time.perf_counter() - start
        d_cv2 = cv2_pipeline.indicator_d(gan, mse, dtype=np.float32)
        finite = np.isfinite(d_cv2)
        jax_s = median_seconds(lambda: d_map(gan_dev, mse_dev).block_until_ready(), repeats)
        cv2_s = median_seconds(lambda: cv2_pipeline.indicator_d(gan, mse, dtype=np.float32), repeats)
        agreement = (f"max |dD| {np.abs(d_jax - d_cv2)[finite].max():.1e}; "
                     f"{np.count_nonzero(~finite)} NaN px in float32 cv2")
        print(f"{f'D map {size}x{size}':<28}{jax_s:>9.3f}{cv2_s:>9.3f}{jax_s / cv2_s:>9.2f}{compile_d:>11.1f}  "
              f"{agreement}")

        start = time.perf_counter()
        mask_jax = np.asarray(detection.detect_artifacts(gan_dev, mse_dev)[0])
        compile_all = time.perf_counter() - start
        mask_cv2 = cv2_pipeline.detect_artifacts(gan, mse, dtype=np.float32)[0]
        jax_s = median_seconds(lambda: detection.detect_artifacts(gan_dev, mse_dev)[0].block_until_ready(), repeats)
        cv2_s = median_seconds(lambda: cv2_pipeline.detect_artifacts(gan, mse, dtype=np.float32), repeats)
        agreement = f"{np.mean(mask_jax == mask_cv2):.6f} of mask px equal"
        print(f"{f'pipeline {size}x{size}':<28}{jax_s:>9.3f}{cv2_s:>9.3f}{jax_s / cv2_s:>9.2f}{compile_all:>11.1f}  "
              f"{agreement}")


if __name__ == "__main__":
    main()
