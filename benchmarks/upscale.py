"""``python -m experiments.upscale``'s path against the ncnn runtime and PyTorch with the same weights, in one run.

For Real-ESRGAN x4plus and SPAN x4 (the ncnn files the registry packages ship) on whole photographs (the bundled
astronaut and immunohistochemistry images, bicubic-downscaled to 128x128 LR): images per second of
  * desra-jax: `desra_jax.tools.upscale.load_upscaler` as the command builds it (tiles of 256 with 16 pixels of
    context, batched on every local device, float32), called on one whole LR image at a time;
  * the ncnn runtime (CPU, fp32, every thread), the reference the converters are tested against;
  * PyTorch (x4plus only: the RRDBNet twin in references/ with the converted weights), run as Real-ESRGAN's
    ``RealESRGANer`` runs it by default (tile 0, i.e. the whole image; at 128x128 its ``--tile 400`` would also
    be one tile). SPAN has no PyTorch twin here, so it is compared with ncnn only.
Prints each time and the ratios desra-jax / ncnn and desra-jax / PyTorch (> 1: desra-jax is faster), after
checking that all agree on the first image.

    python -m benchmarks.upscale [--repeats 3] [--size 128]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from benchmarks.timing import median_seconds
from desra_jax.convert import resolve_model
from desra_jax.data.bundled import bundled_photograph
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.tools.upscale import load_upscaler
from references.ncnn_runtime import load_net, run_net
from references.rrdbnet_torch import RRDBNetTorch

MODELS = ("realesrgan-x4plus", "spanx4_ch48")


def photographs(size: int) -> list[np.ndarray]:
    """(size, size, 3) LR images: bundled photographs cropped to 4 * size square and bicubic-downscaled by 4."""
    images = []
    for name in ("astronaut", "immunohistochemistry"):
        hr = bundled_photograph(name)[: 4 * size, : 4 * size]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="LR side of the photographs")
    args = parser.parse_args()
    images = photographs(args.size)
    threads = os.cpu_count()
    print(f"{len(images)} photographs of {args.size}x{args.size} LR -> x4; {threads} CPU threads for each runtime")
    for name in MODELS:
        upscaler, path, _ = load_upscaler(name, "float32", tile=256, tile_pad=16, batch_size=4)
        net = load_net(resolve_model(name), num_threads=threads)
        runs = {"desra-jax": lambda image: upscaler(image),
                "ncnn": lambda image: np.clip(run_net(net, image[None])[0], 0, 1)}
        if name == "realesrgan-x4plus":
            twin = torch_rrdbnet(upscaler.module, upscaler.params)

            def run_torch(image):
                with torch.no_grad():
                    out = twin(torch.from_numpy(image).permute(2, 0, 1)[None])
                return out[0].permute(1, 2, 0).clamp_(0, 1).numpy()

            runs["pytorch"] = run_torch
        first = {runtime: run(images[0]) for runtime, run in runs.items()}
        for runtime, result in first.items():
            difference = np.abs(result - first["ncnn"]).max()
            assert difference < 1e-3, f"{name}: {runtime} differs from ncnn by {difference}"
        seconds = {runtime: median_seconds(lambda: [run(image) for image in images], args.repeats)
                   for runtime, run in runs.items()}
        rates = {runtime: len(images) / s for runtime, s in seconds.items()}
        print(f"{name} ({path}):")
        for runtime, rate in rates.items():
            print(f"  {runtime:10s} {rate:7.3f} images/s")
        for runtime in runs:
            if runtime != "desra-jax":
                print(f"  desra-jax / {runtime}: {rates['desra-jax'] / rates[runtime]:.2f}x")


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count())
    main()
