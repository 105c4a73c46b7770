"""PyTorch counterparts the device suite times against desra-jax: SPAN's deploy form, DeSRA's D map, and the
Real-ESRNet (L1) and Real-ESRGAN (L1 + VGG19 perceptual + vanilla GAN against the U-Net discriminator) training
steps as Real-ESRGAN's ``RealESRNetModel`` / ``RealESRGANModel.optimize_parameters`` compute them (NCHW, Adam
(0.9, 0.99), EMA 0.999). Weights are whatever the caller loads; the suite copies the JAX ones in."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from references.vgg_torch import NAMES as VGG19_NAMES

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SPANTorch(nn.Module):
    """`desra_jax.models.span.SPAN` (deploy form) in NCHW; parameter names ``block_K.c1_r.weight`` etc."""

    def __init__(self, channels: int = 48, upscale: int = 4, rgb_mean=(0.4488, 0.4371, 0.4040), img_range=255.0):
        super().__init__()
        self.upscale, self.img_range = upscale, img_range
        self.register_buffer("mean", torch.tensor(rgb_mean).view(1, 3, 1, 1))
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleDict({
            f"block_{k}": nn.ModuleDict({name: nn.Conv2d(channels, channels, 3, padding=1)
                                         for name in ("c1_r", "c2_r", "c3_r")})
            for k in range(1, 7)
        })
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_cat = nn.Conv2d(4 * channels, channels, 1)
        self.upsampler_0 = nn.Conv2d(channels, 3 * upscale**2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.img_range
        features = self.conv_1(x)
        out = features
        for k in range(1, 7):
            block = self.blocks[f"block_{k}"]
            first = F.silu(block["c1_r"](out))
            out3 = block["c3_r"](F.silu(block["c2_r"](first)))
            out = (out3 + out) * (torch.sigmoid(out3) - 0.5)
            if k == 1:
                out_b1 = out
        out = self.conv_cat(torch.cat([features, self.conv_2(out), out_b1, first], dim=1))
        return F.pixel_shuffle(self.upsampler_0(out), self.upscale)


def torch_state_from_flax(params: dict, rename=lambda key: key) -> dict[str, torch.Tensor]:
    """A flax conv params tree as a torch state_dict: HWIO kernels -> OIHW ``weight``, ``a/b/bias`` -> ``a.b.bias``
    (``rename`` maps each dotted module path)."""
    state = {}

    def walk(tree, prefix):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
                continue
            value = np.asarray(value)
            name = rename(prefix[:-1])
            if key == "kernel":
                state[f"{name}.weight"] = torch.from_numpy(value.transpose(3, 2, 0, 1).copy())
            else:
                state[f"{name}.{key}"] = torch.from_numpy(value.copy())

    walk(params, "")
    return state


def span_from_flax(params: dict, **kwargs) -> SPANTorch:
    """The torch twin holding a flax SPAN's params."""
    twin = SPANTorch(**kwargs)
    state = torch_state_from_flax(params, lambda key: f"blocks.{key}" if key.startswith("block_") else key)
    state["mean"] = twin.mean
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def indicator_d(gan: torch.Tensor, mse: torch.Tensor, window: int = 11, sigma: float = 1.5,
                c: float = 0.03**2) -> torch.Tensor:
    """DeSRA's D as released (`desra_jax.detection.indicator.indicator_d`): (N, 3, H, W) in [0, 1] -> (N, H, W),
    per channel with an 11x11 Gaussian window (sigma 1.5) and reflect borders, averaged over the channels."""
    taps = torch.from_numpy(cv2.getGaussianKernel(window, sigma).astype(np.float32)).to(gan.device).view(-1)
    channels = gan.shape[1]
    rows = taps.view(1, 1, window, 1).repeat(channels, 1, 1, 1)
    cols = taps.view(1, 1, 1, window).repeat(channels, 1, 1, 1)

    def blur(x):
        x = F.pad(x, (window // 2,) * 4, mode="reflect")
        return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)

    def variance(x):
        return (blur(x * x) - blur(x).square()).clamp_min(0)

    var_x, var_y = variance(gan), variance(mse)
    d = (2 * (var_x + 1e-8).sqrt() * (var_y + 1e-8).sqrt() + c) / (var_x + var_y + c)
    return d.mean(dim=1)


class TorchSRStep:
    """One Real-ESRNet (``vgg`` None) or Real-ESRGAN step on NCHW (lr, gt, target): L1 to ``target`` (the
    USM-sharpened GT), and with a VGG19 and a discriminator, perceptual L1 over ``layer_weights`` and the vanilla
    GAN loss 0.1, then the discriminator's BCE on GT (real) and the detached SR (fake). The generator's Adam runs
    at ``learning_rate`` (Real-ESRGAN's 1e-4; ESRGAN's MSE pretraining, configs/mse.py, 2e-4)."""

    def __init__(self, generator, device, discriminator=None, vgg19=None, layer_weights=None, gan_weight=0.1,
                 learning_rate=1e-4):
        self.generator = generator.to(device).train()
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=learning_rate, betas=(0.9, 0.99))
        self.ema = [p.detach().clone() for p in self.generator.parameters()]
        self.discriminator = discriminator
        if discriminator is not None:
            self.discriminator = discriminator.to(device).train()
            self.d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.9, 0.99))
            deepest = max(VGG19_NAMES.index(name) for name in layer_weights)
            self.vgg = vgg19.features[: deepest + 1].to(device).eval().requires_grad_(False)
            self.taps = {VGG19_NAMES.index(name): weight for name, weight in layer_weights.items()}
            self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.gan_weight = gan_weight

    def perceptual(self, sr, target):
        x, y, total = (sr - self.mean) / self.std, (target - self.mean) / self.std, 0.0
        for index, layer in enumerate(self.vgg):
            x, y = layer(x), layer(y)
            if index in self.taps:
                total = total + self.taps[index] * (x - y.detach()).abs().mean()
        return total

    def __call__(self, lr, gt, target) -> torch.Tensor:
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        sr = self.generator(lr)
        loss = (sr - target).abs().mean()
        if self.discriminator is not None:
            fake = self.discriminator(sr)
            loss = loss + self.perceptual(sr, target) + self.gan_weight * F.binary_cross_entropy_with_logits(
                fake, torch.ones_like(fake))
        loss.backward()
        self.g_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, list(self.generator.parameters()), 1e-3)
        if self.discriminator is None:
            return loss
        self.discriminator.requires_grad_(True)
        self.d_optimizer.zero_grad(set_to_none=True)
        real, fake = self.discriminator(gt), self.discriminator(sr.detach())
        d_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        d_loss.backward()
        self.d_optimizer.step()
        return d_loss
