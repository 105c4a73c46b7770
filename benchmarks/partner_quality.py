"""The MSE-SR partner of Real-ESRGAN x4plus, measured against HR on photographs it never trained on.

For each held-out bundled photograph (`configs/realesrnet.py`'s PARTNER_HELD_OUT: chelsea, motorcycle) and
several draws of Real-ESRGAN's degradation (`desra_jax.data.bundled.lr_photograph`, seeds `--seeds`), the
384-px centre crop is made LR at x4 and super-resolved by x4plus (GAN-SR), SPAN x4 (trained on bicubic LR) and
each partner given. Printed per model, as the mean over photographs and draws:

- PSNR / SSIM (RGB, crop 4) against the HR crop;
- blockiness: the luma jump across the LR's 8x8 JPEG grid (32x32 after x4) over the jump elsewhere
  (`desra_jax.metrics.no_reference.blockiness`; 1 = no grid), for the LR too;
- DeSRA at inference with that partner (released detection, min_area 1000): artifact area and regions of
  x4plus, PSNR of the merged result (eq. 10) against HR minus x4plus's, its worst photograph, and the
  partner's blockiness inside the masks over x4plus's there (the sign that the partner comes from another
  input domain: above 1 it pastes JPEG blocks into the result).

    python -m benchmarks.partner_quality --partner realesrnet-span-x4 [--seeds 1 2 3 4]
"""

from __future__ import annotations

import argparse
import collections

import jax.numpy as jnp
import numpy as np

from configs.realesrnet import PARTNER_HELD_OUT
from desra_jax.convert.registry import load_generator
from desra_jax.data.bundled import bundled_photograph, centre_crop, lr_photograph
from desra_jax.detection import detect_artifacts
from desra_jax.fusion import pseudo_gt
from desra_jax.inference import Upscaler
from desra_jax.metrics import psnr, ssim
from desra_jax.metrics.detection import label_regions
from desra_jax.metrics.no_reference import JPEG_BLOCK, blockiness

GAN_MODEL = "realesrgan-x4plus"
SCALE = 4


def fidelity(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float]:
    """(PSNR, SSIM) of one (H, W, 3) result against its HR, RGB, crop 4 (BasicSR's SR convention)."""
    pair = jnp.asarray(sr[None]), jnp.asarray(hr[None])
    return float(psnr(*pair, crop_border=SCALE)[0]), float(ssim(*pair, crop_border=SCALE)[0])


def draws(names, seeds, crop: int):
    """(name, seed, lr, hr) of every held-out photograph under every degradation draw."""
    for name in names:
        hr = centre_crop(bundled_photograph(name), crop, SCALE)
        for seed in seeds:
            yield name, seed, lr_photograph(name, hr, SCALE, "realesrgan", seed), hr


def measure(models: dict[str, Upscaler], names, seeds, crop: int, min_area: int) -> dict:
    """{row: {figure: [values over draws]}} for the LR, every model, and DeSRA at inference per partner."""
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for name, seed, lr, hr in draws(names, seeds, crop):
        rows["LR"]["blockiness"].append(blockiness(lr, JPEG_BLOCK))
        results = {model: upscale(lr) for model, upscale in models.items()}
        gan = results[GAN_MODEL]
        for model, sr in results.items():
            row = rows[model]
            psnr_value, ssim_value = fidelity(sr, hr)
            row["psnr"].append(psnr_value)
            row["ssim"].append(ssim_value)
            row["blockiness"].append(blockiness(sr, JPEG_BLOCK * SCALE))
            if model == GAN_MODEL:
                continue
            mask = np.asarray(detect_artifacts(gan[None], sr[None], min_area=min_area)[0])[0]
            merged = np.asarray(pseudo_gt(gan[None], sr[None], mask[None]))[0]
            merged_psnr = fidelity(merged, hr)[0]
            desra = rows[f"  DeSRA x4plus + {model}"]
            desra["area %"].append(100 * mask.mean())
            desra["regions"].append(label_regions(mask)[1])
            desra["merged - x4plus dB"].append(merged_psnr - fidelity(gan, hr)[0])
            if mask.any():
                desra["blockiness in masks / x4plus"].append(
                    blockiness(sr, JPEG_BLOCK * SCALE, mask) / blockiness(gan, JPEG_BLOCK * SCALE, mask))
    return rows


def print_table(rows: dict) -> None:
    for row, figures in rows.items():
        cells = [f"{figure} {np.nanmean(values):.3f}" for figure, values in figures.items()]
        if "merged - x4plus dB" in figures:
            cells.append(f"worst draw {min(figures['merged - x4plus dB']):.3f}")
        print(f"{row:<40}" + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partner", nargs="+", default=["realesrnet-span-x4"], help="MSE-SR partners (model specs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4], help="Real-ESRGAN degradation draws")
    parser.add_argument("--crop", type=int, default=384, help="HR centre crop side")
    parser.add_argument("--min_area", type=int, default=1000, help="the morphology's min_area")
    args = parser.parse_args()
    specs = [GAN_MODEL, "spanx4_ch48", *args.partner]
    models = {spec: Upscaler(*load_generator(spec, scale=SCALE), tile=128, overlap=16) for spec in specs}
    print(f"held-out {', '.join(PARTNER_HELD_OUT)}: {args.crop}-px HR crops, LR x4 by Real-ESRGAN's degradation, "
          f"seeds {args.seeds}; means over {len(PARTNER_HELD_OUT) * len(args.seeds)} draws")
    print_table(measure(models, PARTNER_HELD_OUT, args.seeds, args.crop, args.min_area))


if __name__ == "__main__":
    main()
