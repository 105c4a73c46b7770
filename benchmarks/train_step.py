"""The headline `ragp_fft` GAN training step in JAX against the same step written in PyTorch, in one run.

One step is what `experiments.main` runs for `configs/ragp_fft.py`: `desra_jax.training.steps.gan_step` under
`jax.jit` with donated states, i.e. a generator update (L1 1e-2 + VGG19 conv5_4 perceptual 1.0 + FFT 0.3 +
RaGAN 5e-3, Adam, EMA 0.999 of the weights) then a discriminator update (RaGAN + gradient penalty 10 on random
interpolates, Adam), RRDBNet x4 and ESRGAN's VGG-style discriminator with BatchNorm in train mode. The PyTorch
twin (references/gan_step_torch.py, checked against `gan_step` by tests/test_gan_step.py) does the same
arithmetic in NCHW the way BasicSR's ESRGANModel does it.

Both start from the same weights (PyTorch's random initialisation, VGG19 random too since no weights are
downloaded, converted with `desra_jax.convert`), see the same batch (crops of the bundled photographs) and the
same penalty interpolation weights (drawn from the JAX key exactly as `gradient_penalty` draws them). The
warm-up steps double as the sanity check: the loss values of every warm-up step must agree within a tolerance
(strict for the first step, looser after Adam's first update, see `main`). Timed steps run
back to back and synchronise once at the end (`jax.block_until_ready`, `torch.cuda.synchronize`).

    python -m benchmarks.train_step                  # the ragp_fft sizes: 23 blocks, batch 16, HR patch 128
    python -m benchmarks.train_step --quick          # 4 blocks, 32 features, batch 4, HR patch 64
    python -m benchmarks.train_step --steps 10 --warmup 3 --tf32

JAX picks the GPU when it has one and PyTorch runs on CUDA when available; no code change. By default both run
full float32 (TF32 off in both); `--tf32` lets both use TF32 tensor cores on an Ampere or newer GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.timing import torch_sync
from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch, vgg19_from_torch
from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from desra_jax.training.state import adam, create_state
from desra_jax.training.steps import GanLosses, gan_step
from references.discriminators_torch import VGGStyleDiscriminator
from references.gan_step_torch import TorchGanStep
from references.rrdbnet_torch import RRDBNetTorch
from references.vgg_torch import VGG19

SCALE = 4
LEARNING_RATE = 1e-4  # configs/common.py; the milestones of the decay lie far beyond a benchmark's steps
#: configs/ragp_fft.py: common.py's ESRGAN losses plus the gradient penalty and the FFT loss.
LOSSES = GanLosses(gradient_penalty_weight=10.0, fft_weight=0.3)


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_block: int
    num_feat: int
    num_grow_ch: int
    d_num_feat: int
    batch: int
    hr_patch: int

    def describe(self) -> str:
        return (f"RRDBNet x{SCALE} {self.num_block} blocks / {self.num_feat} feat / grow {self.num_grow_ch}, "
                f"VGG-style D {self.d_num_feat} feat, VGG19 conv5_4, batch {self.batch}, "
                f"HR {self.hr_patch}x{self.hr_patch} (LR {self.hr_patch // SCALE})")


#: configs/common.py + configs/ragp_fft.py.
DEFAULT_SIZES = Sizes(num_block=23, num_feat=64, num_grow_ch=32, d_num_feat=64, batch=16, hr_patch=128)
QUICK_SIZES = Sizes(num_block=4, num_feat=32, num_grow_ch=16, d_num_feat=32, batch=4, hr_patch=64)


def photo_pairs(batch: int, hr_patch: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR (batch, p/4, p/4, 3), HR (batch, p, p, 3)) float32 NHWC in [0, 1]: HR crops of the bundled
    photographs (cycled, each crop further down and right than the last), LR their 4x4 box averages."""
    photos = [bundled_photograph(name) for name in PHOTOGRAPH_NAMES]
    crops = []
    for index in range(batch):
        photo = photos[index % len(photos)]
        shift = 37 * (index // len(photos))
        top = min(photo.shape[0] - hr_patch, 40 + shift)
        left = min(photo.shape[1] - hr_patch, 60 + shift)
        crops.append(photo[top : top + hr_patch, left : left + hr_patch])
    hr = np.stack(crops).astype(np.float32)
    lr_patch = hr_patch // SCALE
    lr = hr.reshape(batch, lr_patch, SCALE, lr_patch, SCALE, 3).mean(axis=(2, 4))
    return lr, hr


def penalty_weights(key: jax.Array, batch: int) -> np.ndarray:
    """The interpolation weights eps (batch, 1, 1, 1) that `gradient_penalty` draws from `key` for NHWC images."""
    return np.array(jax.random.uniform(key, (batch, 1, 1, 1), dtype=jnp.float32))  # a writable copy for torch


def nchw(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2))).to(device)


def build(sizes: Sizes, device: str):
    """Random PyTorch networks and the same weights in Flax; returns (TorchGanStep, JAX states, vgg, vgg params)."""
    torch.manual_seed(0)
    generator = RRDBNetTorch(scale=SCALE, num_feat=sizes.num_feat, num_block=sizes.num_block,
                             num_grow_ch=sizes.num_grow_ch)
    discriminator = VGGStyleDiscriminator(num_in_ch=3, num_feat=sizes.d_num_feat, input_size=sizes.hr_patch)
    vgg19 = VGG19()
    g_module, g_params = rrdbnet_from_torch(generator.state_dict())
    d_module, d_variables = discriminator_from_torch(discriminator.state_dict())
    vgg, vgg_params = vgg19_from_torch(vgg19.state_dict(), layer_names=("conv5_4",))
    tx = adam(LEARNING_RATE)
    states = (create_state(g_module, {"params": g_params}, tx, ema=True),
              create_state(d_module, d_variables, tx, ema=False))
    torch_step = TorchGanStep(generator, discriminator, vgg19, device, LOSSES,
                              lambda params: torch.optim.Adam(params, lr=LEARNING_RATE, betas=(0.9, 0.99)))
    return torch_step, jax.device_put(states), vgg, jax.device_put(vgg_params)


def compare(step: int, jax_metrics: dict, torch_metrics: dict, rtol: float, atol: float, scales: dict) -> bool:
    """Print the loss values of both frameworks for one step; True when each agrees within
    atol + rtol * scales[name]."""
    agree = True
    print(f"  step {step}: {'loss':<11}{'JAX':>14}{'PyTorch':>14}{'rel. diff':>11}")
    for name, value in jax_metrics.items():
        got, expected = float(value), float(torch_metrics[name])
        ok = abs(got - expected) <= atol + rtol * scales[name]
        agree &= ok
        relative = abs(got - expected) / max(abs(expected), 1e-30)
        print(f"          {name:<11}{got:>14.7g}{expected:>14.7g}{relative:>11.1e}{'' if ok else '  MISMATCH'}")
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK_SIZES}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per framework (default 5, quick 3)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps per framework, the first compiles JAX; all are compared (at least 1)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on the GPU in both (default: full float32)")
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step is the sanity check")
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    steps = args.steps or (3 if args.quick else 5)

    jax.config.update("jax_default_matmul_precision", "default" if args.tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # XLA's CPU backend runs on one thread per core the process may use; give PyTorch the same number.
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    # XLA's CPU code flushes denormal floats to zero; PyTorch on CPU does not by default and then runs this
    # step (random weights, the penalty's double backward) about 15x slower on an x86 CPU, measured here.
    torch.set_flush_denormal(True)
    jax_device = jax.devices()[0]
    print(f"device: JAX {jax_device.device_kind} ({jax.default_backend()}), PyTorch {device}"
          f"{f' ({torch.cuda.get_device_name()})' if device == 'cuda' else ''}; "
          f"{cores} CPU cores, torch threads {torch.get_num_threads()}, denormals flushed to zero; "
          f"{'TF32 allowed' if args.tf32 else 'float32 (no TF32)'}")
    print(f"sizes: {sizes.describe()}")
    print(f"step: ragp_fft gan_step (G: L1 1e-2 + VGG 1.0 + FFT 0.3 + RaGAN 5e-3, EMA; D: RaGAN + GP 10; "
          f"Adam 1e-4 (0.9, 0.99)); {args.warmup} warm-up + {steps} timed steps each")

    torch_step, (g_state, d_state), vgg, vgg_params = build(sizes, device)
    lr, hr = photo_pairs(sizes.batch, sizes.hr_patch)
    batch = jax.device_put({"lr": lr, "hr": hr})
    lr_torch, hr_torch = nchw(lr, device), nchw(hr, device)
    total = args.warmup + steps
    keys = [jax.random.fold_in(jax.random.key(0), i) for i in range(total)]
    eps_torch = [torch.from_numpy(penalty_weights(key, sizes.batch)).to(device) for key in keys]

    jax_step = jax.jit(
        lambda g, d, b, key, vp: gan_step(g, d, b, key, vp, losses=LOSSES, perceptual_net=vgg), donate_argnums=(0, 1)
    )

    def run_jax(i):
        nonlocal g_state, d_state
        g_state, d_state, metrics = jax_step(g_state, d_state, batch, keys[i], vgg_params)
        return metrics

    # Warm-up, one step of each framework in turn so that step i of both starts from the same weights.
    # Step 1 starts from the same weights: each value to rtol of itself. Later steps carry Adam's first update,
    # lr * sign(gradient) per parameter, so float32 rounding in near-zero gradients flips whole lr-sized steps (in
    # JAX alone, a 1e-6 relative change of the penalty weight moves step 2's penalty by 1.6e-4 relative at the
    # quick sizes; at the default sizes the mean logits, near 0, differ by 1.2e-4): those are compared to 1% of the
    # value's size over the warm-up. tests/test_gan_step.py checks the gradients themselves against PyTorch.
    rtol, atol = (2e-2, 1e-5) if args.tf32 else (1e-3, 1e-6)
    later_rtol = max(rtol, 1e-2)
    print(f"sanity check: step 1 |JAX - PyTorch| <= {atol:g} + {rtol:g} |PyTorch|, later steps "
          f"<= {atol:g} + {later_rtol:g} max(|PyTorch at step 1|, |PyTorch|):")
    agree = True
    for i in range(args.warmup):
        start = time.perf_counter()
        jax_metrics = jax.device_get(run_jax(i))
        jax_first = time.perf_counter() - start
        start = time.perf_counter()
        torch_metrics = {k: v.item() for k, v in torch_step(lr_torch, hr_torch, eps_torch[i]).items()}
        torch_first = time.perf_counter() - start
        if i == 0:
            print(f"  first step (JAX: trace + compile + run): JAX {jax_first:.2f} s, PyTorch {torch_first:.2f} s")
            first = torch_metrics
            agree &= compare(1, jax_metrics, torch_metrics, rtol, atol, {k: abs(v) for k, v in first.items()})
        else:
            scales = {k: max(abs(v), abs(first[k])) for k, v in torch_metrics.items()}
            agree &= compare(i + 1, jax_metrics, torch_metrics, later_rtol, atol, scales)
    print("  losses agree" if agree else "  LOSSES DISAGREE: the two steps do not compute the same thing")

    start = time.perf_counter()
    for i in range(args.warmup, total):
        metrics = run_jax(i)
    jax.block_until_ready((g_state, d_state, metrics))
    jax_s = (time.perf_counter() - start) / steps

    torch_sync(device)
    start = time.perf_counter()
    for i in range(args.warmup, total):
        torch_step(lr_torch, hr_torch, eps_torch[i])
    torch_sync(device)
    torch_s = (time.perf_counter() - start) / steps

    print(f"JAX:     {1 / jax_s:8.3f} steps/s ({jax_s:.3f} s/step)")
    print(f"PyTorch: {1 / torch_s:8.3f} steps/s ({torch_s:.3f} s/step)")
    print(f"time per step JAX / PyTorch: {jax_s / torch_s:.2f} (below 1: JAX faster)")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
