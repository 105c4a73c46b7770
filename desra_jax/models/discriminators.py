"""The two GAN discriminators of the ESRGAN family, NHWC, input float32 in [0, 1].

* :class:`VGGStyleDiscriminator` - ESRGAN's VGG128 discriminator (one logit per image), with BatchNorm.
* :class:`UNetDiscriminatorSN` - Real-ESRGAN's U-Net discriminator (one logit per pixel), with spectral norm.

Both follow BasicSR's ``basicsr/archs/discriminator_arch.py`` layer for layer and keep its layer names, so
``desra_jax.convert.discriminators`` maps a BasicSR ``net_d`` checkpoint key by key. Both take a ``train``
flag: BatchNorm then normalises with batch statistics and updates ``batch_stats``; spectral norm does one
power iteration and updates ``spectral``. Apply with ``mutable=['batch_stats']`` / ``mutable=['spectral']``
when ``train=True``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from desra_jax.models.layers import BatchNorm, leaky_relu, resize_bilinear

# BasicSR pads every conv by 1 on each side; 'SAME' would agree with it only for even input sizes.
_TORCH_PADDING_1 = ((1, 1), (1, 1))


def _normalize(vector: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``torch.nn.functional.normalize(vector, dim=0, eps=eps)``: vector / max(||vector||, eps)."""
    return vector / jnp.maximum(jnp.linalg.norm(vector), eps)


class SpectralNormConv(nn.Module):
    """A bias-free conv whose kernel is divided by its largest singular value, as ``torch.nn.utils.spectral_norm``.

    Miyato et al., "Spectral Normalization for Generative Adversarial Networks" (2018), in torch's form: the
    kernel (k, k, in, out) is read as the matrix M = kernel.reshape(-1, out) and sigma = v . (M u), with
    u (out,) and v (k*k*in,) kept in the ``spectral`` collection (torch's ``weight_u`` and ``weight_v``; v is in
    (k, k, in) order here, torch's in (in, k, k)). With ``update_stats=False`` the stored u and v are used as
    they are, like torch in eval mode; with ``update_stats=True`` one power iteration v = normalize(M u),
    u = normalize(M^T v) runs first and its result is stored (torch's train mode, ``n_power_iterations=1``).
    No gradient flows through u and v (torch computes them under ``no_grad``).
    """

    features: int
    kernel_size: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        kernel_shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), kernel_shape)
        matrix = kernel.reshape(-1, self.features)
        u = self.variable(
            "spectral", "u", lambda: _normalize(jax.random.normal(self.make_rng("params"), (matrix.shape[1],)))
        )
        # torch starts v at random too; starting it at normalize(M u) instead keeps the first sigma positive.
        v = self.variable("spectral", "v", lambda: _normalize(jax.lax.stop_gradient(matrix) @ u.value))
        if update_stats:
            fixed = jax.lax.stop_gradient(matrix)
            v.value = _normalize(fixed @ u.value)
            u.value = _normalize(fixed.T @ v.value)
        sigma = v.value @ (matrix @ u.value)
        return jax.lax.conv_general_dilated(
            x,
            kernel / sigma,
            window_strides=(self.strides, self.strides),
            padding=_TORCH_PADDING_1,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator (BasicSR ``VGGStyleDiscriminator``): (N, S, S, C) -> (N, 1) logits.

    Five stages of [3x3 conv, BN, LReLU, 4x4 stride-2 conv, BN, LReLU] with widths nf, 2nf, 4nf, 8nf, 8nf
    (stage 0 has a biased 3x3 conv and no BN on it), then linear1 (-> 100), LReLU 0.2, linear2 (-> 1).
    ``input_size`` S may be any multiple of 32 (BasicSR allows 128, and 256 with an extra stage that is not
    built here); linear1 sees 8nf * (S/32)^2 features, flattened in NHWC order (the converter permutes torch's
    NCHW-ordered weight columns). BatchNorm as torch's BatchNorm2d (`layers.BatchNorm`).
    """

    num_in_ch: int = 3
    num_feat: int = 64
    input_size: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.input_size % 32:
            raise ValueError(f"VGGStyleDiscriminator: input_size must be a multiple of 32, got {self.input_size}")
        expected = (self.input_size, self.input_size, self.num_in_ch)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"VGGStyleDiscriminator: expected input (N, {', '.join(map(str, expected))}), got shape {x.shape}"
            )

        def conv_bnleaky_relu(feat: jax.Array, name: str, width: int, kernel: int, stride: int) -> jax.Array:
            feat = nn.Conv(
                width, (kernel, kernel), (stride, stride), padding=_TORCH_PADDING_1, use_bias=False, name=f"conv{name}"
            )(feat)
            feat = BatchNorm(name=f"bn{name}")(feat, train)
            return leaky_relu(feat)

        nf = self.num_feat
        feat = leaky_relu(nn.Conv(nf, (3, 3), padding=_TORCH_PADDING_1, name="conv0_0")(x))
        for stage, width in enumerate((nf, nf * 2, nf * 4, nf * 8, nf * 8)):
            if stage > 0:
                feat = conv_bnleaky_relu(feat, f"{stage}_0", width, kernel=3, stride=1)
            feat = conv_bnleaky_relu(feat, f"{stage}_1", width, kernel=4, stride=2)
        feat = feat.reshape(feat.shape[0], -1)
        feat = leaky_relu(nn.Dense(100, name="linear1")(feat))
        return nn.Dense(1, name="linear2")(feat)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm (BasicSR ``UNetDiscriminatorSN``).

    (N, H, W, C) -> (N, H, W, 1) per-pixel logits; H and W multiples of 8 when ``skip_connection``. conv0 (3x3,
    bias, no SN); conv1..conv3 4x4 stride 2 with SN; three times [bilinear x2 upsampling, 3x3 SN conv, plus the
    encoder feature of that size if ``skip_connection``] (conv4..conv6); conv7, conv8 3x3 SN; conv9 3x3 (bias, no
    SN) to one channel. LeakyReLU 0.2 after every conv but conv9. Wang et al., "Real-ESRGAN" (2021), Sec. 3.3.
    """

    num_in_ch: int = 3
    num_feat: int = 64
    skip_connection: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
            raise ValueError(f"UNetDiscriminatorSN: expected input (N, H, W, {self.num_in_ch}), got shape {x.shape}")
        if self.skip_connection and (x.shape[1] % 8 or x.shape[2] % 8):
            raise ValueError(
                f"UNetDiscriminatorSN: skip connections need H and W to be multiples of 8, got shape {x.shape}"
            )

        def sn_lrelu(feat: jax.Array, name: str, width: int, kernel: int = 3, stride: int = 1) -> jax.Array:
            return leaky_relu(SpectralNormConv(width, kernel, stride, name=name)(feat, update_stats=train))

        def upsample_x2(feat: jax.Array) -> jax.Array:
            return resize_bilinear(feat, (2 * feat.shape[1], 2 * feat.shape[2]))

        def skip(feat: jax.Array, encoder_feat: jax.Array) -> jax.Array:
            return feat + encoder_feat if self.skip_connection else feat

        nf = self.num_feat
        x0 = leaky_relu(nn.Conv(nf, (3, 3), padding=_TORCH_PADDING_1, name="conv0")(x))
        x1 = sn_lrelu(x0, "conv1", nf * 2, kernel=4, stride=2)
        x2 = sn_lrelu(x1, "conv2", nf * 4, kernel=4, stride=2)
        x3 = sn_lrelu(x2, "conv3", nf * 8, kernel=4, stride=2)
        x4 = skip(sn_lrelu(upsample_x2(x3), "conv4", nf * 4), x2)
        x5 = skip(sn_lrelu(upsample_x2(x4), "conv5", nf * 2), x1)
        x6 = skip(sn_lrelu(upsample_x2(x5), "conv6", nf), x0)
        out = sn_lrelu(x6, "conv7", nf)
        out = sn_lrelu(out, "conv8", nf)
        return nn.Conv(1, (3, 3), padding=_TORCH_PADDING_1, name="conv9")(out)


#: The discriminators a training config can name.
DISCRIMINATORS = ("vgg", "unet")


def make_discriminator(kind: str, num_feat: int, input_size: int) -> nn.Module:
    """ESRGAN's VGG-style discriminator ('vgg', for `input_size` x `input_size` patches) or Real-ESRGAN's U-Net
    discriminator with spectral norm ('unet', any size), on RGB."""
    if kind == "vgg":
        return VGGStyleDiscriminator(num_in_ch=3, num_feat=num_feat, input_size=input_size)
    if kind == "unet":
        return UNetDiscriminatorSN(num_in_ch=3, num_feat=num_feat)
    raise ValueError(f"unknown discriminator {kind!r}; choose one of {DISCRIMINATORS}")
