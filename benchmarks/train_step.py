"""The headline `ragp_fft` GAN training step in JAX against the same step written in PyTorch, in one run.

One step is what `experiments.main` runs for `configs/ragp_fft.py`: `desra_jax.training.steps.gan_step` under
`jax.jit` with donated states, i.e. a generator update (L1 1e-2 + VGG19 conv5_4 perceptual 1.0 + FFT 0.3 +
RaGAN 5e-3, Adam, EMA 0.999 of the weights) then a discriminator update (RaGAN + gradient penalty 10 on random
interpolates, Adam), RRDBNet x4 and ESRGAN's VGG-style discriminator with BatchNorm in train mode. The PyTorch
twin (`TorchGanStep`) does the same arithmetic in NCHW the way BasicSR's ESRGANModel does it: the discriminator's
parameters frozen during the generator update, the other side's mean *not* detached in the relativistic losses
(as `desra_jax.losses.adversarial`), the penalty's input gradient by `torch.autograd.grad(create_graph=True)`.

Both start from the same weights (PyTorch's random initialisation, VGG19 random too since no weights are
downloaded, converted with `desra_jax.convert`), see the same batch (crops of the bundled photographs) and the
same penalty interpolation weights (drawn from the JAX key exactly as `gradient_penalty` draws them). The
warm-up steps double as the sanity check: the loss values of every warm-up step must agree within a tolerance,
which from the second step on also checks the gradients, Adam and the EMA of the first. Timed steps run
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
from torch.nn import functional as F

from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch, vgg19_from_torch
from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from desra_jax.training.state import adam, create_state
from desra_jax.training.steps import GanLosses, gan_step
from tests.references.discriminators_torch import VGGStyleDiscriminator
from tests.references.rrdbnet_torch import RRDBNetTorch
from tests.references.vgg_torch import NAMES as VGG19_NAMES
from tests.references.vgg_torch import VGG19

SCALE = 4
LEARNING_RATE = 1e-4  # configs/common.py; the milestones of the decay lie far beyond a benchmark's steps
#: configs/ragp_fft.py: common.py's ESRGAN losses plus the gradient penalty and the FFT loss.
LOSSES = GanLosses(gradient_penalty_weight=10.0, fft_weight=0.3)
#: ImageNet statistics of VGG19Features(use_input_norm=True) and BasicSR's VGGFeatureExtractor.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def torch_fft_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """`desra_jax.losses.frequency.fft_loss(norm='fro')` on NCHW: ||F(SR) - F(HR)|| / max(||F(SR)||, ||F(HR)||),
    Frobenius norms over each image's channels and frequencies, averaged over the batch."""
    spectrum_sr, spectrum_hr = torch.fft.fft2(sr), torch.fft.fft2(hr)

    def image_norm(z: torch.Tensor) -> torch.Tensor:
        return z.abs().square().sum(dim=(1, 2, 3)).sqrt()

    difference = image_norm(spectrum_sr - spectrum_hr)
    scale = torch.maximum(image_norm(spectrum_sr), image_norm(spectrum_hr))
    return torch.where(scale > 0, difference / scale.clamp_min(torch.finfo(scale.dtype).tiny), 0.0).mean()


def relativistic_average_loss(real: torch.Tensor, fake: torch.Tensor, real_sign: float) -> torch.Tensor:
    """`desra_jax.losses.adversarial`'s 'rasgan' loss: (E softplus(-s r) + E softplus(s f)) / 2 with
    r = C(x_r) - E C(x_f), f = C(x_f) - E C(x_r); s = +1 for the discriminator, -1 for the generator."""
    real_relative, fake_relative = real - fake.mean(), fake - real.mean()
    return (F.softplus(-real_sign * real_relative).mean() + F.softplus(real_sign * fake_relative).mean()) / 2


class TorchGanStep:
    """`gan_step` with `LOSSES` in PyTorch (NCHW): one generator update, then one discriminator update."""

    def __init__(self, generator, discriminator, vgg19, device: str):
        self.generator, self.discriminator = generator.to(device).train(), discriminator.to(device).train()
        # VGG19Features(('conv5_4',)): the convs up to conv5_4, before its ReLU, on ImageNet-standardised input.
        self.vgg = vgg19.features[: VGG19_NAMES.index("conv5_4") + 1].to(device).eval().requires_grad_(False)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.99))
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.99))
        self.ema = [p.detach().clone() for p in self.generator.parameters()]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.vgg((images - self.mean) / self.std)

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step on NCHW `lr`, `hr`; `eps` (N, 1, 1, 1) are the penalty's interpolation weights."""
        # Generator update, the discriminator fixed (BasicSR freezes its parameters).
        self.discriminator.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        sr = self.generator(lr)
        with torch.no_grad():
            hr_features = self.features(hr)
            real_logits = self.discriminator(hr)
        metrics = {
            "l_pix": LOSSES.pixel_weight * (sr - hr).abs().mean(),
            "l_percep": LOSSES.perceptual_weight * (self.features(sr) - hr_features).abs().mean(),
            "l_fft": LOSSES.fft_weight * torch_fft_loss(sr, hr),
            "l_g_gan": LOSSES.gan_weight * relativistic_average_loss(real_logits, self.discriminator(sr), -1.0),
        }
        metrics["l_g_total"] = sum(metrics.values())
        metrics["l_g_total"].backward()
        self.g_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, list(self.generator.parameters()), 1.0 - LOSSES.ema_decay)

        # Discriminator update on real HR and the fixed SR output, plus the gradient penalty.
        self.discriminator.requires_grad_(True)
        self.d_optimizer.zero_grad(set_to_none=True)
        sr = sr.detach()
        real_logits, fake_logits = self.discriminator(hr), self.discriminator(sr)
        interpolates = (eps * hr + (1.0 - eps) * sr).requires_grad_(True)
        (grads,) = torch.autograd.grad(self.discriminator(interpolates).sum(), interpolates, create_graph=True)
        norms = grads.square().sum(dim=(1, 2, 3)).sqrt()
        d_terms = {
            "l_d_gan": relativistic_average_loss(real_logits, fake_logits, 1.0),
            "l_d_gp": LOSSES.gradient_penalty_weight * (norms - 1.0).square().mean(),
        }
        d_total = sum(d_terms.values())
        d_total.backward()
        self.d_optimizer.step()
        return {**metrics, **d_terms, "out_d_real": real_logits.mean(), "out_d_fake": fake_logits.mean(),
                "l_d_total": d_total}


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
    return TorchGanStep(generator, discriminator, vgg19, device), jax.device_put(states), vgg, jax.device_put(vgg_params)


def compare(step: int, jax_metrics: dict, torch_metrics: dict, rtol: float, atol: float) -> bool:
    """Print the loss values of both frameworks for one step; True when all agree within rtol/atol."""
    agree = True
    print(f"  step {step}: {'loss':<11}{'JAX':>14}{'PyTorch':>14}{'rel. diff':>11}")
    for name, value in jax_metrics.items():
        got, expected = float(value), float(torch_metrics[name])
        ok = abs(got - expected) <= atol + rtol * abs(expected)
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
        lambda g, d, b, key, vp: gan_step(g, d, b, key, vp, losses=LOSSES, vgg=vgg), donate_argnums=(0, 1)
    )

    def run_jax(i):
        nonlocal g_state, d_state
        g_state, d_state, metrics = jax_step(g_state, d_state, batch, keys[i], vgg_params)
        return metrics

    def sync_torch():
        if device == "cuda":
            torch.cuda.synchronize()

    # Warm-up, one step of each framework in turn so that step i of both starts from the same weights.
    rtol, atol = (2e-2, 1e-5) if args.tf32 else (1e-3, 1e-6)
    print(f"sanity check, tolerance |JAX - PyTorch| <= {atol:g} + {rtol:g} |PyTorch|:")
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
        agree &= compare(i + 1, jax_metrics, torch_metrics, rtol, atol)
    print("  losses agree" if agree else "  LOSSES DISAGREE: the two steps do not compute the same thing")

    start = time.perf_counter()
    for i in range(args.warmup, total):
        metrics = run_jax(i)
    jax.block_until_ready((g_state, d_state, metrics))
    jax_s = (time.perf_counter() - start) / steps

    sync_torch()
    start = time.perf_counter()
    for i in range(args.warmup, total):
        torch_step(lr_torch, hr_torch, eps_torch[i])
    sync_torch()
    torch_s = (time.perf_counter() - start) / steps

    print(f"JAX:     {1 / jax_s:8.3f} steps/s ({jax_s:.3f} s/step)")
    print(f"PyTorch: {1 / torch_s:8.3f} steps/s ({torch_s:.3f} s/step)")
    print(f"time per step JAX / PyTorch: {jax_s / torch_s:.2f} (below 1: JAX faster)")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
