"""SegFormer (MiT encoder + all-MLP decode head) for semantic segmentation, NHWC.

Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers" (NeurIPS 2021),
written to reproduce transformers' ``SegformerForSemanticSegmentation`` (modeling_segformer.py) in eval mode:
dropout and stochastic depth are identities there, so they have no place here. The sizes b0-b5 differ only in
the fields below (b0 are the defaults; b1: hidden sizes 64/128/320/512, decoder 256; b2-b5: those hidden sizes,
decoder 768 and depths 3/4/6/3, 3/4/18/3, 3/8/27/3, 3/6/40/3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from desra_jax.models.layers import resize_bilinear


class FrozenBatchNorm(nn.Module):
    """BatchNorm2d in eval mode with its running statistics stored as params, so ``{'params': ...}`` suffices.

    (N, H, W, C) -> same shape: (x - mean) / sqrt(var + eps) * scale + bias.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        mean = self.param("mean", nn.initializers.zeros, (channels,))
        var = self.param("var", nn.initializers.ones, (channels,))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class DepthwiseConv3x3(nn.Module):
    """A 3x3 depthwise conv, padding 1, with bias: (N, H, W, C) -> (N, H, W, C); kernel (3, 3, 1, C) as flax's
    grouped ``nn.Conv`` stores it.

    Written as nine shifted products because XLA's CPU backend runs grouped convolutions far slower
    (benchmarks/segformer.py); on GPU the sum fuses into one kernel.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 1, channels))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        height, width = x.shape[1:3]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        taps = [padded[:, i:i + height, j:j + width] * kernel[i, j, 0] for i in range(3) for j in range(3)]
        return sum(taps) + bias


class OverlapPatchEmbed(nn.Module):
    """Strided conv with padding patch_size // 2, then layer norm: (N, H, W, C) -> (N, H', W', hidden)."""

    hidden_size: int
    patch_size: int
    stride: int
    layer_norm_eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.patch_size // 2
        x = nn.Conv(self.hidden_size, (self.patch_size,) * 2, strides=self.stride, padding=((pad, pad), (pad, pad)),
                    name="proj")(x)
        return nn.LayerNorm(self.layer_norm_eps, name="layer_norm")(x)


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a map shrunk by ``sr_ratio`` (SegFormer eq. 2).

    (N, H, W, C) -> (N, H, W, C). The reduction is a conv with kernel = stride = sr_ratio followed by layer norm.
    """

    hidden_size: int
    num_heads: int
    sr_ratio: int
    layer_norm_eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        head_dim = self.hidden_size // self.num_heads
        query = nn.Dense(self.hidden_size, name="query")(x).reshape(n, h * w, self.num_heads, head_dim)
        context = x
        if self.sr_ratio > 1:
            context = nn.Conv(self.hidden_size, (self.sr_ratio,) * 2, strides=self.sr_ratio, padding="VALID",
                              name="sr")(x)
            context = nn.LayerNorm(self.layer_norm_eps, name="sr_norm")(context)
        context = context.reshape(n, -1, c)
        key = nn.Dense(self.hidden_size, name="key")(context).reshape(n, -1, self.num_heads, head_dim)
        value = nn.Dense(self.hidden_size, name="value")(context).reshape(n, -1, self.num_heads, head_dim)
        attended = jax.nn.dot_product_attention(query, key, value)
        return nn.Dense(self.hidden_size, name="out")(attended.reshape(n, h, w, c))


class MixFFN(nn.Module):
    """Dense, depthwise 3x3 conv, exact GELU, dense (SegFormer eq. 3): (N, H, W, C) -> (N, H, W, C)."""

    hidden_size: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = self.hidden_size * self.mlp_ratio
        x = nn.Dense(width, name="fc1")(x)
        x = DepthwiseConv3x3(name="dwconv")(x)
        x = nn.gelu(x, approximate=False)
        return nn.Dense(self.hidden_size, name="fc2")(x)


class MixTransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MixFFN(norm(x)); NHWC in and out."""

    hidden_size: int
    num_heads: int
    sr_ratio: int
    mlp_ratio: int
    layer_norm_eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + EfficientSelfAttention(self.hidden_size, self.num_heads, self.sr_ratio, self.layer_norm_eps,
                                       name="attention")(nn.LayerNorm(self.layer_norm_eps, name="norm_1")(x))
        return x + MixFFN(self.hidden_size, self.mlp_ratio, name="mlp")(
            nn.LayerNorm(self.layer_norm_eps, name="norm_2")(x))


class Segformer(nn.Module):
    """SegFormer: pixels (N, H, W, num_channels) -> logits (N, ceil(H / 4), ceil(W / 4), num_labels).

    Pixels are normalised as SegformerImageProcessor does ((x - ImageNet mean) / ImageNet std, x in [0, 1]);
    `desra_jax.detection.segment` does that and turns logits into labels. Call as
    ``model.apply({'params': params}, pixels)``: the decode head's BatchNorm keeps its running statistics in
    params (`FrozenBatchNorm`). Fields follow transformers' ``SegformerConfig`` (defaults: MiT-b0, 150
    ADE20K labels). ``layer_norm_eps`` is 1e-5 because transformers builds every ``nn.LayerNorm`` with torch's
    default and never reads its config's ``layer_norm_eps`` (1e-6).

    The decode head projects each stage to ``decoder_hidden_size``, upsamples all to the first stage's 1/4 map
    (bilinear, half-pixel), concatenates them deepest first, fuses with a 1x1 conv (no bias) + BatchNorm +
    ReLU and classifies with a 1x1 conv. ``mmseg_head`` selects open-mmlab's SegformerHead instead
    (mmseg/models/decode_heads/segformer_head.py): each projection is a 1x1 conv without bias + BatchNorm +
    ReLU, and the maps are concatenated first stage first; its MiT builds every LayerNorm with eps 1e-6.
    """

    num_channels: int = 3
    depths: tuple[int, ...] = (2, 2, 2, 2)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    hidden_sizes: tuple[int, ...] = (32, 64, 160, 256)
    patch_sizes: tuple[int, ...] = (7, 3, 3, 3)
    strides: tuple[int, ...] = (4, 2, 2, 2)
    num_attention_heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, ...] = (4, 4, 4, 4)
    decoder_hidden_size: int = 256
    num_labels: int = 150
    layer_norm_eps: float = 1e-5
    batch_norm_eps: float = 1e-5
    mmseg_head: bool = False

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        if pixels.ndim != 4 or pixels.shape[-1] != self.num_channels:
            raise ValueError(f"Segformer: expected pixels (N, H, W, {self.num_channels}), got shape {pixels.shape}")
        features = []
        x = pixels
        for stage, hidden in enumerate(self.hidden_sizes):
            x = OverlapPatchEmbed(hidden, self.patch_sizes[stage], self.strides[stage], self.layer_norm_eps,
                                  name=f"patch_embed_{stage}")(x)
            for index in range(self.depths[stage]):
                x = MixTransformerBlock(hidden, self.num_attention_heads[stage], self.sr_ratios[stage],
                                        self.mlp_ratios[stage], self.layer_norm_eps,
                                        name=f"block_{stage}_{index}")(x)
            x = nn.LayerNorm(self.layer_norm_eps, name=f"norm_{stage}")(x)
            features.append(x)
        size = features[0].shape[1:3]
        projected = []
        for stage, feature in enumerate(features):
            x = nn.Dense(self.decoder_hidden_size, use_bias=not self.mmseg_head, name=f"linear_c_{stage}")(feature)
            if self.mmseg_head:
                x = nn.relu(FrozenBatchNorm(self.batch_norm_eps, name=f"linear_c_{stage}_bn")(x))
            projected.append(resize_bilinear(x, size))
        x = nn.Conv(self.decoder_hidden_size, (1, 1), use_bias=False, name="linear_fuse")(
            jnp.concatenate(projected if self.mmseg_head else projected[::-1], axis=-1))
        x = nn.relu(FrozenBatchNorm(self.batch_norm_eps, name="batch_norm")(x))
        return nn.Conv(self.num_labels, (1, 1), name="classifier")(x)
