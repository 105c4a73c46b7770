"""``python -m experiments.upscale``'s path against the ncnn runtime and PyTorch with the same weights, in one run.

For Real-ESRGAN x4plus and SPAN x4 (the ncnn files the registry packages ship) on whole photographs (the bundled
astronaut and immunohistochemistry images, bicubic-downscaled to 128x128 and 512x512 LR): images per second of
  * desra-jax: `desra_jax.tools.upscale.load_upscaler` as the command builds it (tiles of 256 with 16 pixels of
    context, batched on every local device), float32, and bfloat16 (``--dtype bfloat16``, opt-in: its PSNR
    against the float32 result is printed), called on one whole LR image at a time;
  * the ncnn runtime (CPU, fp32, every thread), the reference the converters are tested against;
  * PyTorch (x4plus only: the RRDBNet twin in references/ with the converted weights), run as Real-ESRGAN's
    ``RealESRGANer`` runs it by default (tile 0, i.e. the whole image). SPAN has no PyTorch twin here, so it is
    compared with ncnn only.
The runtimes are timed interleaved (A B C A B C, median of the repeats after one warm-up round) so a busy machine
slows them alike. Prints each rate and the ratios desra-jax / ncnn and desra-jax / PyTorch (> 1: desra-jax is
faster), after checking that all agree on the first image (`compare`).

    python -m benchmarks.upscale [--repeats 3] [--sizes 128,512] [--models realesrgan-x4plus,spanx4_ch48]
    python -m benchmarks.upscale --tile 544      # tiles that hold a 512x512 LR image whole
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from benchmarks.timing import interleaved_seconds
from desra_jax.convert import resolve_model
from desra_jax.data.bundled import bundled_photograph
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.metrics import psnr
from desra_jax.tools.upscale import DEFAULT_BUCKET, load_upscaler
from references.ncnn_runtime import load_net, run_net
from references.rrdbnet_torch import RRDBNetTorch

MODELS = ("realesrgan-x4plus", "spanx4_ch48")


def photographs(size: int) -> list[np.ndarray]:
    """(size, size, 3) LR images: bundled photographs, mirrored beyond their borders where smaller than 4 * size,
    cropped to 4 * size square and bicubic-downscaled by 4."""
    images = []
    for name in ("astronaut", "immunohistochemistry"):
        photo = bundled_photograph(name)
        grow = [(0, max(0, 4 * size - side)) for side in photo.shape[:2]] + [(0, 0)]
        hr = np.pad(photo, grow, mode="symmetric")[: 4 * size, : 4 * size]
        images.append(np.clip(bicubic_downsample(hr, 4), 0, 1).astype(np.float32))
    return images


def torch_rrdbnet(module, params) -> torch.nn.Module:
    """The PyTorch twin of a converted RRDBNet holding its params (flax HWIO kernels -> torch OIHW)."""
    twin = RRDBNetTorch(scale=module.scale, num_feat=module.num_feat, num_block=module.num_block,
                        num_grow_ch=module.num_grow_ch).eval()
    state = {}

    def walk(tree, prefix):
        for key, value in tree.items():
            name = f"{prefix}{key.replace('body_', 'body.')}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                value = np.asarray(value)
                state[name[: -len("kernel")] + "weight" if key == "kernel" else name] = torch.from_numpy(
                    value.transpose(3, 2, 0, 1).copy() if key == "kernel" else value.copy())

    walk(params, "")
    twin.load_state_dict(state, strict=True)
    return twin


def runtimes(name: str, threads: int, tile: int) -> dict:
    """{runtime: function of one (H, W, 3) LR image in [0, 1] -> its clipped x4 result} for model `name`."""
    upscaler, _, _ = load_upscaler(name, "float32", tile=tile, tile_pad=16, batch_size=4, bucket=DEFAULT_BUCKET)
    upscaler_bf16, _, _ = load_upscaler(name, "bfloat16", tile=tile, tile_pad=16, batch_size=4,
                                      bucket=DEFAULT_BUCKET)
    net = load_net(resolve_model(name), num_threads=threads)
    runs = {"desra-jax": upscaler, "desra-jax bf16": upscaler_bf16,
            "ncnn": lambda image: np.clip(run_net(net, image[None])[0], 0, 1)}
    if name == "realesrgan-x4plus":
        twin = torch_rrdbnet(upscaler.module, upscaler.params)

        def run_torch(image):
            with torch.no_grad():
                out = twin(torch.from_numpy(image).permute(2, 0, 1)[None])
            return out[0].permute(1, 2, 0).clamp_(0, 1).numpy()

        runs["pytorch"] = run_torch
    return runs


def compare(name: str, size: int, runs: dict, images: list, repeats: int, tile: int) -> None:
    """Checks that the runtimes agree on the first image (each within 1e-3 of ncnn; desra-jax's tiles, where the
    image is larger than one, within 60 dB PSNR of ncnn's whole image: the seams of tiling), then times them."""
    first = {runtime: np.asarray(run(images[0]), np.float32) for runtime, run in runs.items()}
    tiles_psnr = float(psnr(first["desra-jax"][None], first["ncnn"][None])[0])
    for runtime, result in first.items():
        difference = np.abs(result - first["ncnn"]).max()
        if runtime == "desra-jax" and size > tile:
            assert tiles_psnr > 60, f"{name}: desra-jax's tiles are {tiles_psnr:.1f} dB from ncnn's whole image"
        elif runtime != "desra-jax bf16":
            assert difference < 1e-3, f"{name}: {runtime} differs from ncnn by {difference}"
    bf16_psnr = float(psnr(first["desra-jax bf16"][None], first["desra-jax"][None])[0])
    seconds = interleaved_seconds(
        {runtime: lambda run=run: [run(image) for image in images] for runtime, run in runs.items()}, repeats, 0)
    rates = {runtime: len(images) / s for runtime, s in seconds.items()}
    print(f"{name} at {size}x{size} LR ({len(images)} images, bf16 PSNR vs float32 {bf16_psnr:.1f} dB"
          + (f", tiles of {tile} vs ncnn's whole image {tiles_psnr:.1f} dB" if size > tile else "") + "):")
    for runtime, rate in rates.items():
        print(f"  {runtime:15s} {rate:8.3f} images/s")
    for runtime in runs:
        if not runtime.startswith("desra-jax"):
            print(f"  desra-jax / {runtime}: {rates['desra-jax'] / rates[runtime]:.2f}x, "
                  f"bf16 {rates['desra-jax bf16'] / rates[runtime]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="128,512", help="LR sides of the photographs, comma-separated")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tile", type=int, default=256, help="desra-jax's LR tile side (the command's default)")
    args = parser.parse_args()
    threads = os.cpu_count()
    print(f"{threads} CPU threads for each runtime; the first call of each (compilation) is not timed")
    for name in args.models.split(","):
        runs = runtimes(name, threads, args.tile)
        for size in (int(side) for side in args.sizes.split(",")):
            compare(name, size, runs, photographs(size), args.repeats, args.tile)


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count())
    main()
