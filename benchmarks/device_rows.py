"""The rows of benchmarks/device_suite.py: each a generator of result dicts {variant, jax_s, torch_s,
torch_fp16_s, flops, note}, built from random weights of the released architectures (no downloads)."""

from __future__ import annotations

import copy
import functools
import tempfile

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import torch_twins
from benchmarks.timing import interleaved_seconds, torch_sync
from desra_jax.convert import (
    discriminator_from_torch,
    rrdbnet_from_torch,
    vgg19_from_torch,
)
from desra_jax.convert.segformer import load_segformer
from desra_jax.data.bundled import bundled_photograph
from desra_jax.data.realesrgan_degradation import RealESRGANSettings
from desra_jax.detection.indicator import indicator_d
from desra_jax.detection.pipeline import detect_artifacts
from desra_jax.losses import REAL_ESRGAN_LAYER_WEIGHTS
from desra_jax.models.layers import imagenet_normalize
from desra_jax.models.span import SPAN
from desra_jax.training.sharding import batch_sharding, data_mesh, replicated
from desra_jax.training.state import adam, sr_states
from desra_jax.training.steps import Degradation, GanLosses, sr_train_step
from references import desra_numpy
from references.discriminators_torch import UNetDiscriminatorSN
from references.rrdbnet_torch import RRDBNetTorch
from references.vgg_torch import VGG19

#: train_realesrgan_x4plus.yml's generator losses and the vanilla GAN loss against the U-Net discriminator.
REAL_ESRGAN_LOSSES = GanLosses(pixel_kind="l1", pixel_weight=1.0, perceptual="vgg", perceptual_weight=1.0,
                               perceptual_layers=tuple(REAL_ESRGAN_LAYER_WEIGHTS.items()), perceptual_criterion="l1",
                               gan_kind="gan", gan_weight=0.1)


def flops_of(jitted, *args) -> float | None:
    """FLOPs of one call by XLA's cost analysis of the lowered computation (no compilation)."""
    analysis = jitted.lower(*args).cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def jitted_apply(model):
    """`model.apply` of (params, x), jitted."""
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


def photo(height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 in [0, 1]: the bundled astronaut tiled (mirrored) to the size."""
    image = bundled_photograph("astronaut")
    reps = (-(-height // image.shape[0]), -(-width // image.shape[1]))
    tiled = np.block([[image if (i + j) % 2 == 0 else image[:, ::-1] for j in range(reps[1])] for i in range(reps[0])])
    return np.ascontiguousarray(tiled[:height, :width]).astype(np.float32)


def nchw(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, np.float32).transpose(0, 3, 1, 2))).to(device)


class Rows:
    """The suite's rows for `sizes` with PyTorch on `device`; the matmul row sets header['peak_tflops']."""

    def __init__(self, sizes, device: str, header: dict):
        self.sizes, self.device, self.header = sizes, device, header
        self.sync = lambda: torch_sync(device)

    def ordered(self):
        """(name, row) in order of importance, so that a short budget keeps the headline rows."""
        return [("bf16 matmul", self.matmul), ("RRDBNet x4plus forward", self.rrdbnet_forward),
                ("SPAN x4 forward", self.span_forward), ("DeSRA D map", self.d_map),
                ("DeSRA detection pipeline", self.pipeline), ("SegFormer b0", self.segformer),
                ("Real-ESRNet MSE step", self.mse_step), ("Real-ESRGAN GAN step", self.gan_step)]

    def timed(self, jax_fn, torch_fn, half_fn=None, warmup: int = 1) -> dict:
        runs = {"jax_s": lambda: jax.block_until_ready(jax_fn()), "torch_s": lambda: (torch_fn(), self.sync())}
        if half_fn is not None:
            runs["torch_fp16_s"] = lambda: (half_fn(), self.sync())
        return interleaved_seconds(runs, self.sizes.repeats, warmup)

    def matmul(self):
        n = self.sizes.matmul
        a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.bfloat16)
        product = jax.jit(lambda m: m @ m)
        seconds = self.timed(lambda: product(x), lambda: a @ a)
        self.header["peak_tflops"] = 2 * n**3 / seconds["torch_s"] / 1e12
        yield {"variant": f"{n}^3", **seconds, "flops": 2.0 * n**3}

    def rrdbnet_forward(self):
        s = self.sizes
        torch.manual_seed(0)
        reference = RRDBNetTorch(scale=4, num_feat=s.num_feat, num_block=s.num_block,
                                 num_grow_ch=s.num_grow_ch).to(self.device).eval()
        model, params = rrdbnet_from_torch(reference.state_dict())
        params = jax.device_put(params)
        for height, width in ((s.lr, s.lr), s.frame):
            image = photo(height, width)[None]
            x, x_torch = jnp.asarray(image), nchw(image, self.device)
            for dtype in (jnp.bfloat16, jnp.float32):
                forward = jitted_apply(model.clone(dtype=dtype))
                with torch.inference_mode():
                    expected = reference(x_torch).float().permute(0, 2, 3, 1).cpu().numpy()
                difference = float(np.abs(np.asarray(forward(params, x), np.float32) - expected).max())

                def run_torch(half=False, x_torch=x_torch):
                    with torch.inference_mode(), torch.autocast(self.device, torch.float16, enabled=half):
                        reference(x_torch)

                seconds = self.timed(functools.partial(forward, params, x), run_torch, lambda f=run_torch: f(True))
                yield {"variant": f"{width}x{height} {jnp.dtype(dtype).name}", **seconds,
                       "flops": flops_of(forward, params, x), "note": f"max |JAX - PT fp32| {difference:.1e}"}

    @functools.cached_property
    def _step_networks(self):
        """(torch networks, Degradation, GT (N, gt, gt, 3), one degraded batch {'lr', 'hr', 'target'}), shared by
        both steps."""
        s = self.sizes
        torch.manual_seed(0)
        nets = {"generator": RRDBNetTorch(scale=4, num_feat=s.num_feat, num_block=s.num_block,
                                          num_grow_ch=s.num_grow_ch),
                "discriminator": UNetDiscriminatorSN(3, s.d_num_feat), "vgg": VGG19()}
        count = s.batch_per_device * jax.device_count()
        gt = np.stack([photo(s.gt + 8 * i, s.gt)[8 * i:] for i in range(count)])
        degradation = Degradation(RealESRGANSettings())
        _, pair = jax.jit(lambda b, k: degradation({}, b, k))({"hr": jnp.asarray(gt)}, jax.random.key(0))
        return nets, degradation, gt, jax.device_get(pair)

    def _step_rows(self, nets, degradation, gt, pair, jax_states, losses=None, vgg=None):
        mesh = data_mesh()
        torch_step = torch_twins.TorchSRStep(copy.deepcopy(nets["generator"]), self.device,
                                             *((copy.deepcopy(nets["discriminator"]), nets["vgg"],
                                                REAL_ESRGAN_LAYER_WEIGHTS) if losses else ()))
        lr, target, hr = (nchw(pair[k], self.device) for k in ("lr", "target", "hr"))
        key = jax.random.key(1)
        for variant, batch, degrade in (("degradation on device", {"hr": gt}, degradation),
                                        ("pre-degraded batch", pair, None)):
            step = sr_train_step(mesh, losses=losses, perceptual_net=vgg and vgg[0],
                                 perceptual_params=vgg and vgg[1], degradation=degrade)
            # fresh copies (the step donates them), placed as the step returns them so the first call's
            # compilation serves every later one
            box = {"states": jax.device_put(jax.tree.map(jnp.copy, jax_states()), replicated(mesh))}
            batch = jax.device_put(batch, batch_sharding(mesh))

            def run_jax(step=step, box=box, batch=batch):
                box["states"], metrics = step(box["states"], batch, key)
                return metrics

            flops = flops_of(jax.jit(step), box["states"], batch, key)
            seconds = self.timed(run_jax, lambda: torch_step(lr, hr, target))
            yield {"variant": f"{len(gt)}x{gt.shape[1]}^2 GT, {variant}", **seconds, "flops": flops,
                   "note": "PyTorch from the pre-degraded batch"}
            del box

    def mse_step(self):
        nets, degradation, gt, pair = self._step_networks
        g_module, g_params = rrdbnet_from_torch(nets["generator"].state_dict())
        yield from self._step_rows(nets, degradation, gt, pair, lambda: sr_states(g_module, g_params, adam(1e-4)))

    def gan_step(self):
        nets, degradation, gt, pair = self._step_networks
        g_module, g_params = rrdbnet_from_torch(nets["generator"].state_dict())
        d_module, d_variables = discriminator_from_torch(nets["discriminator"].state_dict())
        vgg = vgg19_from_torch(nets["vgg"].state_dict(), layer_names=tuple(REAL_ESRGAN_LAYER_WEIGHTS))
        vgg = (vgg[0], jax.device_put(vgg[1]))
        yield from self._step_rows(
            nets, degradation, gt, pair, lambda: sr_states(g_module, g_params, adam(1e-4), d_module, d_variables),
            losses=REAL_ESRGAN_LOSSES, vgg=vgg)

    def span_forward(self):
        image = photo(self.sizes.lr, self.sizes.lr)[None]
        model = SPAN()
        params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
        twin = torch_twins.span_from_flax(params).to(self.device)
        forward = jitted_apply(model)
        x, x_torch = jnp.asarray(image), nchw(image, self.device)

        def run_torch():
            with torch.inference_mode():
                return twin(x_torch)

        difference = float(np.abs(np.asarray(forward(params, x)) -
                                  run_torch().permute(0, 2, 3, 1).cpu().numpy()).max())
        yield {"variant": f"{self.sizes.lr}^2 LR float32", **self.timed(lambda: forward(params, x), run_torch),
               "flops": flops_of(forward, params, x), "note": f"max |JAX - PT| {difference:.1e} (output ~255 scale)"}

    def _detection_pair(self):
        side = self.sizes.detection
        gan = photo(side, side)
        mse = cv2.GaussianBlur(gan, (0, 0), 1.2)
        return gan[None], mse[None]

    def d_map(self):
        gan, mse = self._detection_pair()
        d_jax = jax.jit(indicator_d)
        g, m = jnp.asarray(gan), jnp.asarray(mse)
        g_torch, m_torch = nchw(gan, self.device), nchw(mse, self.device)
        difference = float(np.abs(np.asarray(d_jax(g, m)) -
                                  torch_twins.indicator_d(g_torch, m_torch).cpu().numpy()).max())
        yield {"variant": f"{gan.shape[1]}^2", **self.timed(lambda: d_jax(g, m),
                                                               lambda: torch_twins.indicator_d(g_torch, m_torch)),
               "flops": flops_of(d_jax, g, m), "note": f"max |JAX - PT| {difference:.1e}"}

    def pipeline(self):
        gan, mse = self._detection_pair()
        g, m = jnp.asarray(gan), jnp.asarray(mse)
        mask, _ = detect_artifacts(g, m)  # compiles: the timing needs no further warm-up
        expected, _ = desra_numpy.detect_artifacts(gan, mse)
        agreement = float(np.mean(np.asarray(mask) == expected))
        yield {"variant": f"{gan.shape[1]}^2, semantics-free", **self.timed(
            lambda: detect_artifacts(g, m), lambda: desra_numpy.detect_artifacts(gan, mse), warmup=0),
            "note": f"PyTorch column: numpy/scipy/cv2 reference on the host; masks agree on {agreement:.4f}"}

    def segformer(self):
        import transformers

        s = self.sizes
        config = transformers.SegformerConfig(hidden_sizes=list(s.segformer_widths),
                                              decoder_hidden_size=s.segformer_decoder, num_labels=150)
        torch.manual_seed(0)
        reference = transformers.SegformerForSemanticSegmentation(config).eval().to(self.device)
        with tempfile.TemporaryDirectory() as directory:  # save_pretrained writes the checkpoint layout
            reference.save_pretrained(directory)
            model, params, _ = load_segformer(directory)
        image = photo(s.segformer, s.segformer)[None]
        pixels = imagenet_normalize(jnp.asarray(image))
        pixels_torch = nchw(np.asarray(pixels), self.device)
        forward = jitted_apply(model)

        def run_torch():
            with torch.inference_mode():
                return reference(pixel_values=pixels_torch).logits

        difference = float(np.abs(np.asarray(forward(params, pixels)) -
                                  run_torch().permute(0, 2, 3, 1).cpu().numpy()).max())
        yield {"variant": f"{s.segformer}^2 float32", **self.timed(lambda: forward(params, pixels), run_torch),
               "flops": flops_of(forward, params, pixels), "note": f"max |JAX - PT| {difference:.1e}"}
