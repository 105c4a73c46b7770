"""Real-ESRGAN's degradation of one training batch: ``realesrgan_degrade`` under ``jax.jit`` on JAX's default
device against the same pipeline in PyTorch on the CPU, in one run.

The PyTorch side is the twin in references/degradations_torch.py, which follows BasicSR's functions and
Real-ESRGAN's ``feed_data`` (what tests/test_realesrgan_degradation.py checks ours against): the kernels drawn
per image with numpy (Real-ESRGAN's dataset does it in the data-loader workers; here it is timed with the rest),
USM sharpening, the two stages and the final step, one draw per batch. The JAX side draws everything per image
on the device. Both degrade the same batch of crops of the bundled photographs.

    python -m benchmarks.degradations                   # batch 16, HR 256 x 256 (Real-ESRGAN's gt_size)
    python -m benchmarks.degradations --batch 4 --size 128 --repeats 3

The time of a training step with the degradation inside it is the step's time plus ``realesrgan_degrade``'s
(XLA may overlap a little); ``benchmarks/train_step.py`` times the step alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.timing import median_seconds
from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from desra_jax.data.degradations import realesrgan_degrade, realesrgan_settings
from references import degradations_torch


def hr_batch(batch: int, size: int) -> np.ndarray:
    """(batch, size, size, 3) float32 crops of the bundled photographs, at spread-out offsets."""
    crops = []
    for i in range(batch):
        image = bundled_photograph(PHOTOGRAPH_NAMES[i % 4])
        h, w = image.shape[:2]
        top, left = (37 * i) % (h - size + 1), (53 * i) % (w - size + 1)
        crops.append(image[top : top + size, left : left + size])
    return np.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    hr = hr_batch(args.batch, args.size)
    print(f"batch {args.batch} HR {args.size}x{args.size}; JAX on {jax.devices()[0].device_kind} "
          f"({jax.default_backend()}), PyTorch on the CPU with {torch.get_num_threads()} threads")

    degrade = jax.jit(realesrgan_degrade)
    hr_device = jax.device_put(jnp.asarray(hr))
    start = time.perf_counter()
    degrade(jax.random.key(0), hr_device).block_until_ready()
    print(f"JAX compile + first run: {time.perf_counter() - start:.1f} s")
    keys = iter(jax.random.split(jax.random.key(1), 1000))
    jax_seconds = median_seconds(lambda: degrade(next(keys), hr_device).block_until_ready(), args.repeats)

    opt = dataclasses.asdict(realesrgan_settings())
    rng = np.random.default_rng(0)
    hr_torch = degradations_torch.to_torch(hr)
    with torch.no_grad():
        torch_seconds = median_seconds(lambda: degradations_torch.degrade(rng, hr_torch, opt), args.repeats)
        lr = degradations_torch.degrade(rng, hr_torch, opt)
    ours = np.asarray(degrade(next(keys), hr_device))
    assert ours.shape == degradations_torch.to_numpy(lr).shape == (args.batch, args.size // 4, args.size // 4, 3)

    print(f"JAX realesrgan_degrade: {jax_seconds * 1e3:.1f} ms per batch")
    print(f"PyTorch (CPU) twin:     {torch_seconds * 1e3:.1f} ms per batch")
    print(f"ratio PyTorch / JAX:    {torch_seconds / jax_seconds:.2f}x")


if __name__ == "__main__":
    main()
