"""desra_jax.training.steps.gan_step with RaGAN + gradient penalty + FFT loss, written in PyTorch (NCHW) the way
BasicSR's ESRGANModel does it: the discriminator's parameters frozen during the generator update, the other side's
mean *not* detached in the relativistic losses (as `desra_jax.losses.adversarial`), the penalty's input gradient
by `torch.autograd.grad(create_graph=True)`. Used by tests/test_gan_step.py and benchmarks/train_step.py."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from references.vgg_torch import NAMES as VGG19_NAMES

#: ImageNet statistics of VGG19Features(use_input_norm=True) and BasicSR's VGGFeatureExtractor.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    """`gan_step` in PyTorch (NCHW): one generator update, then one discriminator update.

    `losses`: a `GanLosses`, as for `gan_step` (pixel L1, VGG19 conv5_4 L1, FFT, RaGAN and the gradient penalty
    are implemented);
    `make_optimizer(parameters)` builds each network's optimizer (BasicSR: Adam, betas (0.9, 0.99)); the EMA of the
    generator moves by `ema_decay`.
    """

    def __init__(self, generator, discriminator, vgg19, device: str, losses, make_optimizer, ema_decay: float = 0.999):
        self.generator, self.discriminator = generator.to(device).train(), discriminator.to(device).train()
        # VGG19Features(('conv5_4',)): the convs up to conv5_4, before its ReLU, on ImageNet-standardised input.
        self.vgg = vgg19.features[: VGG19_NAMES.index("conv5_4") + 1].to(device).eval().requires_grad_(False)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        implemented = dict(pixel_kind="l1", perceptual_layers=(("conv5_4", 1.0),), perceptual_criterion="l1",
                           gan_kind="rasgan")
        if any(getattr(losses, name) != value for name, value in implemented.items()):
            raise ValueError(f"TorchGanStep implements {implemented}, got {losses}")
        self.losses, self.ema_decay = losses, ema_decay
        self.g_optimizer = make_optimizer(self.generator.parameters())
        self.d_optimizer = make_optimizer(self.discriminator.parameters())
        self.ema = [p.detach().clone() for p in self.generator.parameters()]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.vgg((images - self.mean) / self.std)

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor, eps: torch.Tensor,
                 target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One step on NCHW `lr`, `hr`; `eps` (N, 1, 1, 1) are the penalty's interpolation weights. `target`, as
        `gan_step`'s batch['target'], is what the pixel and perceptual losses compare with (default `hr`)."""
        target = hr if target is None else target
        # Generator update, the discriminator fixed (BasicSR freezes its parameters).
        self.discriminator.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        sr = self.generator(lr)
        with torch.no_grad():
            target_features = self.features(target)
            real_logits = self.discriminator(hr)
        metrics = {
            "l_pix": self.losses.pixel_weight * (sr - target).abs().mean(),
            "l_percep": self.losses.perceptual_weight * (self.features(sr) - target_features).abs().mean(),
            "l_fft": self.losses.fft_weight * torch_fft_loss(sr, hr),
            "l_g_gan": self.losses.gan_weight * relativistic_average_loss(real_logits, self.discriminator(sr), -1.0),
        }
        metrics["l_g_total"] = sum(metrics.values())
        metrics["l_g_total"].backward()
        self.g_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, list(self.generator.parameters()), 1.0 - self.ema_decay)

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
            "l_d_gp": self.losses.gradient_penalty_weight * (norms - 1.0).square().mean(),
        }
        d_total = sum(d_terms.values())
        d_total.backward()
        self.d_optimizer.step()
        return {**metrics, **d_terms, "out_d_real": real_logits.mean(), "out_d_fake": fake_logits.mean(),
                "l_d_total": d_total}
