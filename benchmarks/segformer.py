"""SegFormer forward in JAX (jitted Flax) against transformers' PyTorch SegformerForSemanticSegmentation, in one run.

MiT-b0 and MiT-b2 with 150 ADE20K labels and random weights (transformers' initialisation, converted through
``save_pretrained`` + desra_jax.convert.load_segformer), batch 1 at 512x512, a crop of a bundled photograph
normalised as SegformerImageProcessor does. The script checks that both give the same logits before timing, and
prints per model the median seconds of each and the JAX/PyTorch ratio (below 1: JAX is faster).

    python -m benchmarks.segformer           # b0 and b2, 5 timed repeats
    python -m benchmarks.segformer --quick   # 2 timed repeats
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import numpy as np
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from benchmarks.timing import median_seconds, torch_sync
from desra_jax.convert import load_segformer
from desra_jax.data.bundled import bundled_photograph
from desra_jax.models.layers import imagenet_normalize

#: transformers' SegformerConfig fields of the published sizes (b0 is the config's default).
SIZES = {
    "b0": {},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768, "depths": [3, 4, 6, 3]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed repeats (a smoke run)")
    parser.add_argument("--size", type=int, default=512, help="input height and width")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as XLA does on CPU

    image = bundled_photograph("astronaut")[: args.size, : args.size][None]
    pixels = np.array(imagenet_normalize(image), np.float32)
    x_torch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(torch_device)
    x_jax = jax.device_put(pixels)
    print(f"device: JAX {jax.devices()[0].device_kind} ({jax.default_backend()}), PyTorch {torch_device}; "
          f"batch 1 at {args.size}x{args.size}, float32; median of {repeats}")
    print(f"{'model':<8}{'JAX s':>10}{'PyTorch s':>11}{'JAX/PT':>8}{'max |diff|':>12}")
    for name, fields in SIZES.items():
        reference = SegformerForSemanticSegmentation(SegformerConfig(num_labels=150, **fields)).eval()
        with tempfile.TemporaryDirectory() as directory:
            reference.save_pretrained(directory)
            model, params, _ = load_segformer(directory)
        reference = reference.to(torch_device)
        params = jax.device_put(params)
        forward = jax.jit(lambda p, x: model.apply({"params": p}, x))

        def run_torch():
            with torch.inference_mode():
                logits = reference(pixel_values=x_torch).logits
            torch_sync(torch_device)
            return logits

        expected = run_torch().permute(0, 2, 3, 1).cpu().numpy()
        difference = np.abs(np.asarray(forward(params, x_jax)) - expected).max()
        jax_s = median_seconds(lambda: forward(params, x_jax).block_until_ready(), repeats)
        torch_s = median_seconds(run_torch, repeats)
        print(f"{name:<8}{jax_s:>10.4f}{torch_s:>11.4f}{jax_s / torch_s:>8.2f}{difference:>12.2e}")


if __name__ == "__main__":
    main()
