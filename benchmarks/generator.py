"""RRDBNet x4 (ESRGAN: 23 blocks, 64 features) in JAX against the same network in PyTorch, in one run.

Measures, on whatever device both frameworks see (CPU here; the same script on a GPU):
  * forward passes at 64x64 and 128x128 LR inputs (batch 1; outputs 256 and 512 pixels square),
  * one generator training step (forward + backward + Adam, L1 loss) at batch 4 of 32x32 LR patches (HR 128,
    the ESRGAN training size),
and prints for each the JAX/PyTorch time ratio and the achieved convolution GFLOP/s as a fraction of a float32
matrix product's GFLOP/s measured in the same run (the machine's practical limit). FLOPs count only the
convolutions, 2 * kh * kw * c_in * c_out per output pixel; a training step counts three forward passes'
worth (forward, gradient of the input, gradient of the weights).

Inputs are crops of the photographs bundled with scikit-image; both networks hold the same weights (the PyTorch
reference's random initialisation, converted with desra_jax.convert.rrdbnet_from_torch), and the script checks
that their outputs agree before timing anything.

    python -m benchmarks.generator                   # float32, the default sizes
    python -m benchmarks.generator --dtype bfloat16  # mixed precision: bf16 compute, f32 params (GPU)
    python -m benchmarks.generator --quick           # 4 blocks: a fast smoke run of the same code
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from benchmarks.timing import median_seconds, torch_sync
from desra_jax.convert import rrdbnet_from_torch
from desra_jax.data.bundled import bundled_photograph
from references.rrdbnet_torch import RRDBNetTorch



def conv_flops(model: nn.Module, params, input_shape: tuple[int, ...]) -> int:
    """FLOPs of every ``nn.Conv`` in one forward pass of ``model`` at ``input_shape`` (shapes only, no compute)."""
    total = 0

    def count(next_fun, args, kwargs, context):
        nonlocal total
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
            kh, kw, c_in, c_out = context.module.variables["params"]["kernel"].shape
            total += 2 * kh * kw * c_in * c_out * int(np.prod(out.shape[:-1]))
        return out

    with nn.intercept_methods(count):
        jax.eval_shape(model.apply, {"params": params}, jnp.zeros(input_shape, jnp.float32))
    return total


def photo_batch(batch: int, size: int) -> np.ndarray:
    """(batch, size, size, 3) float32 crops of bundled photographs, NHWC in [0, 1]."""
    image = bundled_photograph("hubble_deep_field")
    crops = [image[64 * i : 64 * i + size, 96 * i : 96 * i + size] for i in range(batch)]
    return np.stack(crops).astype(np.float32)


def matmul_gflops(torch_device: str, size: int = 4096) -> tuple[float, float]:
    """float32 GFLOP/s of a size^3 matrix product in JAX and in PyTorch on the benchmark's device."""
    flops = 2 * size**3
    a = jax.random.uniform(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda m: m @ m)
    jax_rate = flops / median_seconds(lambda: matmul(a).block_until_ready(), 5) / 1e9
    t = torch.rand(size, size, device=torch_device)
    torch_rate = flops / median_seconds(lambda: (t @ t, torch_sync(torch_device)), 5) / 1e9
    return jax_rate, torch_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--quick", action="store_true", help="4 RRDB blocks and fewer repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    args = parser.parse_args()

    num_block = 4 if args.quick else 23
    repeats = args.repeats or (2 if args.quick else 5)
    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = args.dtype == "bfloat16"
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    torch.set_flush_denormal(True)  # as XLA does on CPU; denormal arithmetic slows PyTorch's CPU steps many-fold

    reference = RRDBNetTorch(scale=4, num_feat=64, num_block=num_block, num_grow_ch=32).to(torch_device)
    model, params = rrdbnet_from_torch(reference.state_dict())
    model = model.clone(dtype=jnp.bfloat16 if bf16 else jnp.float32)
    params = jax.device_put(params)
    autocast = torch.autocast(device_type=torch_device, dtype=torch.bfloat16, enabled=bf16)

    print(f"device: JAX {jax.devices()[0].device_kind} ({jax.default_backend()}), PyTorch {torch_device}; "
          f"RRDBNet x4, {num_block} blocks, 64 features; {args.dtype}; median of {repeats}")
    jax_mm, torch_mm = matmul_gflops(torch_device)
    limit = max(jax_mm, torch_mm)
    print(f"float32 matmul 4096^3: JAX {jax_mm:.0f} GFLOP/s, PyTorch {torch_mm:.0f} GFLOP/s; limit {limit:.0f}")
    print(f"{'measurement':<34}{'JAX s':>10}{'PyTorch s':>11}{'JAX/PT':>8}{'JAX GF/s':>10}{'of limit':>9}")

    def report(name: str, flops: int, jax_s: float, torch_s: float) -> None:
        rate = flops / jax_s / 1e9
        print(f"{name:<34}{jax_s:>10.4f}{torch_s:>11.4f}{jax_s / torch_s:>8.2f}{rate:>10.0f}{rate / limit:>9.2f}")

    forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
    reference.eval()
    for size in (64, 128):
        x = photo_batch(1, size)
        x_jax, x_torch = jnp.asarray(x), torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(torch_device)
        with torch.no_grad(), autocast:
            expected = reference(x_torch).float().permute(0, 2, 3, 1).cpu().numpy()
        got = np.asarray(forward(params, x_jax), np.float32)
        print(f"  forward {size}x{size}: max |JAX - PyTorch| = {np.abs(got - expected).max():.2e}")

        def run_torch():
            with torch.no_grad(), autocast:
                reference(x_torch)
            torch_sync(torch_device)

        jax_s = median_seconds(lambda: forward(params, x_jax).block_until_ready(), repeats)
        torch_s = median_seconds(run_torch, repeats)
        report(f"forward {size}x{size} -> {4 * size}x{4 * size}", conv_flops(model, params, x.shape), jax_s, torch_s)

    # One training step: L1 loss, Adam(lr 1e-4, betas 0.9/0.99) as in ESRGAN's pixel-loss pretraining.
    lr_batch, hr_size = photo_batch(4, 32), 128
    hr_batch = np.asarray(jax.image.resize(lr_batch, (4, hr_size, hr_size, 3), "bicubic"), np.float32)
    optimizer = optax.adam(1e-4, b1=0.9, b2=0.99)

    @jax.jit
    def train_step(params, opt_state, lr, hr):
        def loss_fn(p):
            return jnp.mean(jnp.abs(model.apply({"params": p}, lr).astype(jnp.float32) - hr))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = {"params": params, "opt": optimizer.init(params)}
    lr_jax, hr_jax = jnp.asarray(lr_batch), jnp.asarray(hr_batch)

    def run_jax_step():
        state["params"], state["opt"], loss = train_step(state["params"], state["opt"], lr_jax, hr_jax)
        loss.block_until_ready()

    reference.train()
    torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-4, betas=(0.9, 0.99))
    lr_torch = torch.from_numpy(lr_batch).permute(0, 3, 1, 2).contiguous().to(torch_device)
    hr_torch = torch.from_numpy(hr_batch).permute(0, 3, 1, 2).contiguous().to(torch_device)

    def run_torch_step():
        torch_opt.zero_grad(set_to_none=True)
        with autocast:
            loss = (reference(lr_torch).float() - hr_torch).abs().mean()
        loss.backward()
        torch_opt.step()
        torch_sync(torch_device)

    jax_s = median_seconds(run_jax_step, repeats)
    torch_s = median_seconds(run_torch_step, repeats)
    report("train step 4x32x32 -> 128 (fwd+bwd+Adam)", 3 * conv_flops(model, params, lr_batch.shape), jax_s, torch_s)


if __name__ == "__main__":
    main()
