"""DeSRA detection: the jitted JAX pipeline against the same pipeline in cv2/scipy, and its two formulations of the
window operations against each other, in one run.

Times, for batches of GAN-SR / MSE-SR pairs (synthetic GAN-like pairs made from the bundled photographs, see
desra_jax/data/synthetic.py):
  * the D map alone (desra_jax.detection.indicator_d vs cv2.GaussianBlur in float32, per image),
  * erosion (5x5, x1) then dilation (5x5, x3) of the raw mask (desra_jax.detection.erode/dilate vs cv2),
  * the whole released pipeline (D, threshold 0.7, erode, dilate, fill holes, regions > 4000 px:
    desra_jax.detection.detect_artifacts vs references/desra_numpy.py in float32, which is the authors'
    script as a cv2 user writes it: cv2.GaussianBlur, cv2.erode/dilate, scipy binary_fill_holes,
    cv2.connectedComponentsWithStats),
each JAX measurement once per formulation of the windows (``method`` / ``window_method``: 'shifted' slices and
'reduce_window'), and prints JAX / cv2 time ratios (below 1 = JAX faster), reduce_window / shifted ratios (below
1 = reduce_window faster: the rule of desra_jax.detection.window_method says which one a backend gets), the
compile time, and how far the results agree. JAX runs on its default device (CPU here, the GPU where there is
one); cv2/scipy always on the CPU.

    python -m benchmarks.detection_speed            # 1024x1024 and 2048x2048, batch 8
    python -m benchmarks.detection_speed --quick    # 256x256 and 512x512, batch 2 (a smoke run)
"""

from __future__ import annotations

import argparse
import functools
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
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        images.append(cv2.resize(square, (size, size), interpolation=interpolation))
    return images


def opened_mask(mask, method):
    """The released script's erosion (5x5, x1) then dilation (5x5, x3): (N, H, W) bool."""
    return detection.dilate(detection.erode(mask, 5, 1, method), 5, 3, method)


def pipeline_mask(gan, mse, window_method):
    """The released pipeline's mask (N, H, W) bool (`detect_artifacts`, jitted) with one formulation."""
    return detection.detect_artifacts(gan, mse, window_method=window_method)[0]


def time_jax(fn, args, repeats: int) -> tuple[np.ndarray, float, float] | str:
    """(result on the host, median seconds, first-call seconds incl. compilation) of a jitted fn(*args), or the
    first line of XLA's error where this backend cannot run it (variadic reduce-window on XLA:GPU)."""
    start = time.perf_counter()
    try:
        result = np.asarray(jax.block_until_ready(fn(*args)))
    except jax.errors.JaxRuntimeError as error:
        return str(error).splitlines()[0]
    first = time.perf_counter() - start
    return result, median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats), first


def report(name: str, timings: dict, cv2_s: float, agreement) -> None:
    """One row per formulation: seconds, JAX / cv2, reduce_window / shifted, compile seconds, agreement."""
    shifted_s = timings["shifted"][1]
    for method, timing in timings.items():
        if isinstance(timing, str):
            print(f"{f'{name} {method}':<36}  not run on this backend: {timing}")
            continue
        result, seconds, first = timing
        print(f"{f'{name} {method}':<36}{seconds:>9.3f}{cv2_s:>9.3f}{seconds / cv2_s:>9.2f}"
              f"{seconds / shifted_s:>9.2f}{first:>11.1f}  {agreement(result)}")


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

    rule = ", ".join(f"{op} {detection.window_method(None, op)!r}" for op in detection.WINDOW_OPERATIONS)
    print(f"JAX device: {jax.devices()[0].device_kind} ({jax.default_backend()}; window_method: {rule}); "
          f"cv2 {cv2.__version__} with {cv2.getNumThreads()} threads; batch {batch}; median of {repeats}")
    print(f"{'measurement':<36}{'JAX s':>9}{'cv2 s':>9}{'JAX/cv2':>9}{'/shifted':>9}{'compile s':>11}  agreement")
    for size in sizes:
        gan, mse, _ = synthetic_batch(square_photographs(batch, size), seed=size)
        gan_dev, mse_dev = jax.device_put(gan), jax.device_put(mse)

        d_cv2 = cv2_pipeline.indicator_d(gan, mse, dtype=np.float32)
        cv2_s = median_seconds(lambda: cv2_pipeline.indicator_d(gan, mse, dtype=np.float32), repeats)
        finite = np.isfinite(d_cv2)
        timings = {method: time_jax(jax.jit(functools.partial(detection.indicator_d, method=method)),
                                    (gan_dev, mse_dev), repeats) for method in detection.WINDOW_METHODS}
        report(f"D map {size}x{size}", timings, cv2_s,
               lambda d: (f"max |dD| {np.abs(d - d_cv2)[finite].max():.1e} vs float32 cv2 "
                          f"({np.count_nonzero(~finite)} NaN px there), "
                          f"{np.abs(d - timings['shifted'][0]).max():.1e} vs shifted"))

        raw = cv2_pipeline.artifact_mask(d_cv2)
        raw_dev = jax.device_put(raw)
        opened_cv2 = cv2_pipeline.dilate(cv2_pipeline.erode(raw))
        cv2_s = median_seconds(lambda: cv2_pipeline.dilate(cv2_pipeline.erode(raw)), repeats)
        timings = {method: time_jax(jax.jit(functools.partial(opened_mask, method=method)), (raw_dev,), repeats)
                   for method in detection.WINDOW_METHODS}
        report(f"erode+dilate {size}x{size}", timings, cv2_s,
               lambda mask: f"{np.mean(mask == opened_cv2):.6f} of mask px equal to cv2")

        mask_cv2 = cv2_pipeline.detect_artifacts(gan, mse, dtype=np.float32)[0]
        cv2_s = median_seconds(lambda: cv2_pipeline.detect_artifacts(gan, mse, dtype=np.float32), repeats)
        timings = {method: time_jax(functools.partial(pipeline_mask, window_method=method), (gan_dev, mse_dev), repeats)
                   for method in detection.WINDOW_METHODS}
        report(f"pipeline {size}x{size}", timings, cv2_s,
               lambda mask: f"{np.mean(mask == mask_cv2):.6f} of mask px equal to cv2")


if __name__ == "__main__":
    main()
