"""Building blocks the networks share, each as PyTorch computes it, so converted checkpoints reproduce their
reference: LeakyReLU 0.2, bilinear resizing with half-pixel centres, nearest upsampling, pixel (un)shuffle,
ImageNet normalisation, torch's default conv initialisation and BatchNorm2d."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

#: Negative slope of the LeakyReLU in ESRGAN's generator and discriminators.
LEAKY_SLOPE = 0.2

#: PyTorch's Conv2d default initialisation of the kernel, uniform with variance 1 / (3 fan_in).
TORCH_CONV_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

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
    """(N, H, W, C) -> (N, h, w, C) by two-tap bilinear interpolation with half-pixel centres and no antialiasing,
    as torch ``F.interpolate(mode='bilinear', align_corners=False)`` and cv2.resize(INTER_LINEAR) compute it, up
    and down. At the borders jax renormalises the weights of the in-range pixels, which equals torch's clamping of
    the source index."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), method="bilinear", antialias=False)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Depth-to-space exactly as torch's ``F.pixel_shuffle`` (and ncnn's PixelShuffle mode 0), in NHWC.

    (N, H, W, C * factor**2) -> (N, factor H, factor W, C): output channel ``c`` at offset ``(i, j)`` of each
    cell comes from input channel ``c * factor**2 + i * factor + j``.
    """
    n, h, w, cr2 = x.shape
    if cr2 % (factor * factor):
        raise ValueError(f"pixel_shuffle: channels must be a multiple of {factor * factor}, got shape {x.shape}")
    c = cr2 // (factor * factor)
    x = x.reshape(n, h, w, c, factor, factor).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * factor, w * factor, c)


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
    """Space-to-depth exactly as torch's ``F.pixel_unshuffle``, in NHWC.

    (N, H, W, C) -> (N, H / factor, W / factor, C * factor**2). Output channel ``c * factor**2 + i * factor + j``
    holds input channel ``c`` at row offset ``i`` and column offset ``j`` of each ``factor`` x ``factor`` cell,
    the order torch produces, so converted ``conv_first`` weights see the same channels.
    """
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"pixel_unshuffle: height and width must be multiples of {factor}, got shape {x.shape}")
    x = x.reshape(n, h // factor, factor, w // factor, factor, c)
    x = x.transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(n, h // factor, w // factor, c * factor * factor)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """(N, H, W, C) -> (N, factor H, factor W, C), each pixel repeated (torch's ``mode='nearest'``)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


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
