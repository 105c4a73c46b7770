"""Building blocks the networks share, each as PyTorch computes it, so converted checkpoints reproduce their
reference: LeakyReLU 0.2, bilinear resizing with half-pixel centres, ImageNet normalisation, and torch's
BatchNorm2d."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

#: Negative slope of the LeakyReLU in ESRGAN's generator and discriminators.
LEAKY_SLOPE = 0.2

#: torchvision's ImageNet statistics (RGB, on [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with ESRGAN's slope 0.2."""
    return nn.leaky_relu(x, LEAKY_SLOPE)


def imagenet_normalize(images: jax.Array) -> jax.Array:
    """(x - ImageNet mean) / ImageNet std of NHWC RGB images in [0, 1] (torchvision's and transformers'
    preprocessing)."""
    return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(N, H, W, C) -> (N, h, w, C), as torch ``F.interpolate(mode='bilinear', align_corners=False)`` upsamples.

    Half-pixel centres like torch; at the borders jax renormalises the weights of the in-range pixels, which
    equals torch's clamping of the source index. Meant for upsampling: when shrinking, jax's antialiased
    triangle filter averages more pixels than torch's two-tap bilinear.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), method="bilinear")


class BatchNorm(nn.Module):
    """``torch.nn.BatchNorm2d`` over the last axis of (N, H, W, C), statistics in the 'batch_stats' collection.

    In training the batch is normalised with its biased variance and the running statistics move by
    ``momentum`` (torch's convention: new = (1 - momentum) * old + momentum * batch) with the *unbiased* batch
    variance, as torch does (flax's ``nn.BatchNorm`` stores the biased one, which differs by N / (N - 1) for N
    values per channel). Evaluation uses the running statistics.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axes)
            var = jnp.var(x, axes)
            count = x.size // channels
            if not self.is_initializing():
                unbiased = var * count / max(count - 1, 1)
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased
        else:
            mean, var = running_mean.value, running_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
