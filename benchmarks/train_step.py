"""The MSE and GAN training steps in JAX against the same steps written in PyTorch, in one run, with the
training pairs given or made inside the step by Real-ESRGAN's degradation.

Each step is what `experiments.main` runs: `desra_jax.training.steps.sr_train_step` (jitted, states donated).

- `mse`: the L1 pretraining step of configs/mse.py (`pixel_step`: L1, Adam 2e-4 (0.9, 0.99), EMA 0.999), against
  BasicSR's SRModel step (benchmarks/torch_twins.py's `TorchSRStep` without a discriminator).
- `gan`: the headline configs/ragp_fft.py step (`gan_step`): a generator update (L1 1e-2 + VGG19 conv5_4
  perceptual 1.0 + FFT 0.3 + RaGAN 5e-3, Adam 1e-4, EMA 0.999 of the weights) then a discriminator update (RaGAN +
  gradient penalty 10 on random interpolates, Adam), ESRGAN's VGG-style discriminator with BatchNorm in train
  mode, against references/gan_step_torch.py (checked against `gan_step` by tests/test_gan_step.py), which does
  the same arithmetic in NCHW the way BasicSR's ESRGANModel does it.

Both frameworks start from the same weights (PyTorch's random initialisation of RRDBNet x4, VGG19 random too since
no weights are downloaded, converted with `desra_jax.convert`) and see the same batch (crops of the bundled
photographs, LR their 4x4 box averages) and the same penalty interpolation weights (drawn from the JAX key
exactly as `gradient_penalty` draws them). The warm-up steps double as the sanity check: the loss values of every
warm-up step must agree within a tolerance (strict for the first step, looser after Adam's first update, see
`warm_up`). Timed steps alternate between the frameworks (JAX, PyTorch, JAX, ...), each waited for
(`jax.block_until_ready`, `torch.cuda.synchronize`), and the median of each is reported, so that a machine busy
with other work slows both alike. Still, PyTorch's OpenMP threads suffer far more than XLA's from a CPU that other
processes keep busy (measured on 2 shared cores: the quick MSE step 2.5 s in PyTorch on a busy machine, 66 ms on a
quiet one, JAX 150 ms and 81 ms): compare CPU figures taken on a quiet machine, the load average (printed first
and last) below the core count.

With `--degradation` each step first makes its LR from the HR batch with Real-ESRGAN's second-order degradation,
as configs/realesrnet.py and configs/realesrgan.py train: in JAX `steps.Degradation` inside the jitted step
(`realesrgan_degrade` of the released settings, the L1 and perceptual target the USM-sharpened GT); in PyTorch
the BasicSR-equivalent twin references/degradations_torch.py (what tests/test_realesrgan_degradation.py checks
ours against) the way Real-ESRGAN's `feed_data` runs it: USM-sharpen the GT once, degrade the sharpened GT, with
the kernels drawn by numpy inside the timed step (Real-ESRGAN's data-loader workers draw them). The random draws
of the two frameworks are not the same (JAX draws per image, the twin per batch as Real-ESRGAN); timing needs
no exact agreement of the draws, so the warm-up losses are shown side by side but not compared. The HR patch is
at least 96 then (`DEGRADATION_MIN_PATCH`; `--quick` uses 96). Neither side runs Real-ESRGAN's
training-pair pool (`pair_pool_update`, `queue_size`). The twin runs on the CPU (its constants and draws live
there) and its LR moves to the GPU when PyTorch has one, so on a GPU machine the PyTorch time includes a CPU
degradation that Real-ESRGAN would run on the GPU.

    python -m benchmarks.train_step                  # both steps at the released sizes: 23 blocks, batch 16, HR 128
    python -m benchmarks.train_step --quick          # 4 blocks, 32 features, batch 4, HR patch 64
    python -m benchmarks.train_step --step mse --degradation
    python -m benchmarks.train_step --steps 10 --warmup 3 --tf32

JAX picks the GPU when it has one and PyTorch runs on CUDA when available; no code change. By default both run
full float32 (TF32 off in both); `--tf32` lets both use TF32 tensor cores on an Ampere or newer GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.timing import interleaved_seconds, torch_sync
from benchmarks.torch_twins import TorchSRStep
from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch, vgg19_from_torch
from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from desra_jax.data.realesrgan_degradation import RealESRGANSettings
from desra_jax.sharding import batch_sharding, data_mesh, replicated
from desra_jax.training.state import adam, sr_states
from desra_jax.training.steps import Degradation, GanLosses, sr_train_step
from references import degradations_torch
from references.discriminators_torch import VGGStyleDiscriminator
from references.gan_step_torch import TorchGanStep
from references.rrdbnet_torch import RRDBNetTorch
from references.vgg_torch import VGG19

SCALE = 4
# configs/mse.py and configs/common.py; the milestones of the decay lie far beyond a benchmark's steps.
MSE_LEARNING_RATE, GAN_LEARNING_RATE = 2e-4, 1e-4
#: configs/ragp_fft.py: common.py's ESRGAN losses plus the gradient penalty and the FFT loss.
LOSSES = GanLosses(gradient_penalty_weight=10.0, fft_weight=0.3)
#: The released degradation; the pool is left out of both frameworks (see the module's docstring).
DEGRADATION = RealESRGANSettings(queue_size=0)
#: The smallest HR patch the degradation takes (configs/realesrnet.py's `tiny_degradation`): after a x0.15 first
#: resize the second stage's 21-tap kernels still need 'reflect' room.
DEGRADATION_MIN_PATCH = 96


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
                f"VGG-style D {self.d_num_feat} feat (gan), VGG19 conv5_4 (gan), batch {self.batch}, "
                f"HR {self.hr_patch}x{self.hr_patch} (LR {self.hr_patch // SCALE})")


#: configs/common.py + configs/mse.py and configs/ragp_fft.py.
DEFAULT_SIZES = Sizes(num_block=23, num_feat=64, num_grow_ch=32, d_num_feat=64, batch=16, hr_patch=128)
QUICK_SIZES = Sizes(num_block=4, num_feat=32, num_grow_ch=16, d_num_feat=32, batch=4, hr_patch=64)


@dataclasses.dataclass
class Twins:
    """One step in both frameworks from the same weights: the JAX train states (`sr_states`' layout) and the
    keywords of `sr_train_step`, and the PyTorch step (lr, hr, target, eps) NCHW -> {loss name: scalar tensor}."""

    description: str
    states: dict
    step_options: dict
    torch_step: Callable


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


def torch_generator(sizes: Sizes) -> RRDBNetTorch:
    torch.manual_seed(0)
    return RRDBNetTorch(scale=SCALE, num_feat=sizes.num_feat, num_block=sizes.num_block,
                        num_grow_ch=sizes.num_grow_ch)


def mse_twins(sizes: Sizes, device: str) -> Twins:
    """configs/mse.py's step: L1 alone, Adam 2e-4, EMA 0.999."""
    generator = torch_generator(sizes)
    g_module, g_params = rrdbnet_from_torch(generator.state_dict())
    torch_step = TorchSRStep(generator, device, learning_rate=MSE_LEARNING_RATE)
    return Twins("MSE pretraining step (configs/mse.py: L1, Adam 2e-4 (0.9, 0.99), EMA 0.999)",
                 sr_states(g_module, g_params, adam(MSE_LEARNING_RATE)), {},
                 lambda lr, hr, target, eps: {"l_pix": torch_step(lr, hr, target)})


def gan_twins(sizes: Sizes, device: str) -> Twins:
    """configs/ragp_fft.py's step, with ESRGAN's VGG-style discriminator and VGG19 conv5_4."""
    generator = torch_generator(sizes)
    discriminator = VGGStyleDiscriminator(num_in_ch=3, num_feat=sizes.d_num_feat, input_size=sizes.hr_patch)
    vgg19 = VGG19()
    g_module, g_params = rrdbnet_from_torch(generator.state_dict())
    d_module, d_variables = discriminator_from_torch(discriminator.state_dict())
    vgg, vgg_params = vgg19_from_torch(vgg19.state_dict(), layer_names=("conv5_4",))
    torch_step = TorchGanStep(generator, discriminator, vgg19, device, LOSSES,
                              lambda params: torch.optim.Adam(params, lr=GAN_LEARNING_RATE, betas=(0.9, 0.99)))
    return Twins("ragp_fft gan_step (G: L1 1e-2 + VGG 1.0 + FFT 0.3 + RaGAN 5e-3, EMA 0.999; D: RaGAN + GP 10; "
                 "Adam 1e-4 (0.9, 0.99))",
                 sr_states(g_module, g_params, adam(GAN_LEARNING_RATE), d_module, d_variables),
                 {"losses": LOSSES, "perceptual_net": vgg, "perceptual_params": jax.device_put(vgg_params)},
                 lambda lr, hr, target, eps: torch_step(lr, hr, eps, target))


TWINS = {"mse": mse_twins, "gan": gan_twins}


def torch_degraded(rng: np.random.Generator, hr: torch.Tensor, device: str):
    """(LR, GT, L1 target) from the CPU GT batch `hr` as Real-ESRGAN's `feed_data` makes them: the USM-sharpened GT
    (the target) degraded to the LR."""
    with torch.no_grad():
        sharpened = degradations_torch.usm_sharp(hr, DEGRADATION.usm_weight, DEGRADATION.usm_radius,
                                                 DEGRADATION.usm_threshold)
        options = {**dataclasses.asdict(DEGRADATION), "sharpen_input": False}  # sharpened above
        lr = degradations_torch.degrade(rng, sharpened, options)
    # feed_data's lq.contiguous(): the JPEG step leaves a permuted layout behind, which slows the convolutions
    return lr.contiguous().to(device), hr.to(device), sharpened.to(device)


def compare(step: int, jax_metrics: dict, torch_metrics: dict, rtol: float, atol: float,
            scales: dict | None) -> bool:
    """Print the loss values of both frameworks for one step; True when each agrees within
    atol + rtol * scales[name] (always True, and nothing flagged, when `scales` is None: shown, not compared)."""
    agree = True
    print(f"  step {step}: {'loss':<11}{'JAX':>14}{'PyTorch':>14}{'rel. diff':>11}")
    for name, value in jax_metrics.items():
        got, expected = float(value), float(torch_metrics[name])
        ok = scales is None or abs(got - expected) <= atol + rtol * scales[name]
        agree &= ok
        relative = abs(got - expected) / max(abs(expected), 1e-30)
        print(f"          {name:<11}{got:>14.7g}{expected:>14.7g}{relative:>11.1e}{'' if ok else '  MISMATCH'}")
    return agree


def warm_up(run_jax, run_torch, warmup: int, tf32: bool, checked: bool) -> bool:
    """`warmup` steps, one of each framework in turn so that step i of both starts from the same weights; True when
    their losses agree (or `checked` is False: the inputs differ, the losses are only shown).

    Step 1 starts from the same weights: each value to rtol of itself. Later steps carry Adam's first update,
    lr * sign(gradient) per parameter, so float32 rounding in near-zero gradients flips whole lr-sized steps (in
    JAX alone, a 1e-6 relative change of the penalty weight moves step 2's penalty by 1.6e-4 relative at the
    quick sizes; at the default sizes the mean logits, near 0, differ by 1.2e-4): those are compared to 1% of the
    value's size over the warm-up. tests/test_gan_step.py checks the gradients themselves against PyTorch."""
    rtol, atol = (2e-2, 1e-5) if tf32 else (1e-3, 1e-6)
    later_rtol = max(rtol, 1e-2)
    if checked:
        print(f"sanity check: step 1 |JAX - PyTorch| <= {atol:g} + {rtol:g} |PyTorch|, later steps "
              f"<= {atol:g} + {later_rtol:g} max(|PyTorch at step 1|, |PyTorch|):")
    else:
        print("warm-up losses, not compared (each framework degrades the HR with its own random draws):")
    agree = True
    for i in range(warmup):
        start = time.perf_counter()
        jax_metrics = jax.device_get(run_jax(i))
        jax_first = time.perf_counter() - start
        start = time.perf_counter()
        torch_metrics = {k: v.item() for k, v in run_torch(i).items()}
        torch_first = time.perf_counter() - start
        if i == 0:
            print(f"  first step (JAX: trace + compile + run): JAX {jax_first:.2f} s, PyTorch {torch_first:.2f} s")
            first = torch_metrics
        scales = {k: max(abs(v), abs(first[k])) for k, v in torch_metrics.items()} if checked else None
        agree &= compare(i + 1, jax_metrics, torch_metrics, rtol if i == 0 else later_rtol, atol, scales)
    if checked:
        print("  losses agree" if agree else "  LOSSES DISAGREE: the two steps do not compute the same thing")
    return agree


def benchmark(twins: Twins, sizes: Sizes, device: str, degrading: bool, warmup: int, steps: int,
              tf32: bool) -> tuple[float, float, bool]:
    """(JAX s/step, PyTorch s/step (medians), whether the warm-up losses agree) of one step."""
    mesh = data_mesh()
    lr, hr = photo_pairs(sizes.batch, sizes.hr_patch)
    step = sr_train_step(mesh, degradation=Degradation(DEGRADATION) if degrading else None, **twins.step_options)
    states = jax.device_put(twins.states, replicated(mesh))
    batch = jax.device_put({"hr": hr} if degrading else {"lr": lr, "hr": hr}, batch_sharding(mesh))
    total = warmup + steps
    keys = [jax.random.fold_in(jax.random.key(0), i) for i in range(total)]
    # With the degradation the step hands gan_step the first key of jax.random.split(key) (`steps._sr_step`).
    eps = [torch.from_numpy(penalty_weights(jax.random.split(key)[0] if degrading else key, sizes.batch)).to(device)
           for key in keys]
    rng, hr_cpu = np.random.default_rng(0), nchw(hr, "cpu")
    fixed = (nchw(lr, device), nchw(hr, device), nchw(hr, device))

    def run_jax(i):
        nonlocal states
        states, metrics = step(states, batch, keys[i])
        return metrics

    def run_torch(i):
        inputs = torch_degraded(rng, hr_cpu, device) if degrading else fixed
        return twins.torch_step(*inputs, eps[i])

    agree = warm_up(run_jax, run_torch, warmup, tf32, checked=not degrading)
    jax_steps, torch_steps = iter(range(warmup, total)), iter(range(warmup, total))

    def timed_jax():
        jax.block_until_ready((run_jax(next(jax_steps)), states))

    def timed_torch():
        run_torch(next(torch_steps))
        torch_sync(device)

    seconds = interleaved_seconds({"jax": timed_jax, "torch": timed_torch}, repeats=steps, warmup=0)
    return seconds["jax"], seconds["torch"], agree


def configure(tf32: bool) -> tuple[str, str]:
    """Sets both frameworks' precision and threads; returns (the PyTorch device, a line describing the setup)."""
    jax.config.update("jax_default_matmul_precision", "default" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # XLA's CPU backend runs on one thread per core the process may use; give PyTorch the same number.
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    # XLA's CPU code flushes denormal floats to zero; PyTorch on CPU does not by default and then runs the GAN
    # step (random weights, the penalty's double backward) about 15x slower on an x86 CPU, measured here.
    torch.set_flush_denormal(True)
    jax_device = jax.devices()[0]
    return device, (f"device: JAX {jax_device.device_kind} ({jax.default_backend()}), PyTorch {device}"
                    f"{f' ({torch.cuda.get_device_name()})' if device == 'cuda' else ''}; "
                    f"{cores} CPU cores (load average {os.getloadavg()[0]:.2f}), torch threads "
                    f"{torch.get_num_threads()}, denormals flushed to zero; "
                    f"{'TF32 allowed' if tf32 else 'float32 (no TF32)'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=("mse", "gan", "both"), default="both", help="which step to time")
    parser.add_argument("--degradation", action="store_true",
                        help="make the LR inside each step with Real-ESRGAN's degradation (HR patch at least "
                             f"{DEGRADATION_MIN_PATCH})")
    parser.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK_SIZES}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per framework (default 5, quick 3)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps per framework, the first compiles JAX; all are compared, or with "
                             "--degradation shown (at least 1)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on the GPU in both (default: full float32)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step is the sanity check")
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.degradation:
        sizes = dataclasses.replace(sizes, hr_patch=max(sizes.hr_patch, DEGRADATION_MIN_PATCH))
    steps = args.steps or (3 if args.quick else 5)
    device, setup = configure(args.tf32)
    print(setup)
    print(f"sizes: {sizes.describe()}")
    print(f"pairs: {'made in the step by Real-ESRGAN degradation' if args.degradation else 'given (4x4 box LR)'}; "
          f"{args.warmup} warm-up + {steps} timed steps each")

    results, agree = {}, True
    for name in ("mse", "gan") if args.step == "both" else (args.step,):
        twins = TWINS[name](sizes, device)
        print(f"\n{name}: {twins.description}")
        jax_s, torch_s, step_agrees = benchmark(twins, sizes, device, args.degradation, args.warmup, steps, args.tf32)
        del twins
        results[name], agree = (jax_s, torch_s), agree and step_agrees
        print(f"  JAX {jax_s * 1e3:.1f} ms/step, PyTorch {torch_s * 1e3:.1f} ms/step, "
              f"JAX / PyTorch {jax_s / torch_s:.2f}")

    degradation = "with" if args.degradation else "without"
    print(f"\nper step, {degradation} the degradation ({sizes.batch} x HR {sizes.hr_patch}):")
    print(f"  {'step':<6}{'JAX ms':>10}{'PyTorch ms':>12}{'JAX / PyTorch':>15}")
    for name, (jax_s, torch_s) in results.items():
        print(f"  {name:<6}{jax_s * 1e3:>10.1f}{torch_s * 1e3:>12.1f}{jax_s / torch_s:>15.2f}")
    print(f"  (JAX / PyTorch below 1: JAX faster; load average now {os.getloadavg()[0]:.2f} over "
          f"{len(os.sched_getaffinity(0))} cores: above it, the CPU figures are of a busy machine)")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
