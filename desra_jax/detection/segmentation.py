"""Semantic segmentation with SegFormer for DeSRA's class adjustment (eq. 8/9): images -> ADE20K labels.

Preprocessing is SegformerImageProcessor's (bilinear resize to the model's input size, ImageNet mean/std) and
the logits are upsampled bilinearly to the image and argmax-ed, as its ``post_process_semantic_segmentation``
does. What happens to an image depends on its size, so that a large image is never shrunk into a blur:

- both sides <= ``size``: resized to ``size`` x ``size``, as the image processor does for every image (the
  scale the published models were trained and evaluated at); upsampling only, where jax's bilinear resize
  equals torch's and PIL's;
- a side > ``size``: mmsegmentation's 'slide' inference at the image's own resolution: windows of ``size``
  (or the whole side when that side is shorter) every ``stride`` pixels, the last one flush with the border,
  each window's logits upsampled to the window and averaged where windows overlap;
- ``size=None``: the whole image in one pass at its own resolution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.models.layers import imagenet_normalize, resize_bilinear
from desra_jax.models.segformer import Segformer


def window_starts(length: int, window: int, stride: int) -> tuple[int, ...]:
    """Offsets of mmseg's slide windows along one side: every ``stride``, the last flush with the end.

    ``window <= length``; mmseg's grid count max(length - window + stride - 1, 0) // stride + 1.
    """
    count = max(length - window + stride - 1, 0) // stride + 1
    return tuple(min(index * stride, length - window) for index in range(count))


def segment_logits(images, model: Segformer, params, *, size: int | None = 512, stride: int | None = None,
                   batch_size: int = 4) -> jax.Array:
    """SegFormer logits at full resolution: (N, H, W, 3) RGB in [0, 1] -> (N, H, W, num_labels) float32.

    ``size``: the model's input size (512 for the ``*-512-512`` checkpoints, 640 for MiT-B5 640x640; None: one
    pass at the image's resolution); ``stride``: step of the slide windows (default 2/3 of ``size``, as
    mmseg's ADE20K configs: 341 for 512); ``batch_size``: windows per forward pass. See the module doc.
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"segment: expected images (N, H, W, 3) RGB in [0, 1], got shape {images.shape}")
    if size is not None and size < 32:
        raise ValueError(f"segment: size must be at least 32 (SegFormer downsamples 32x), got {size}")
    stride = stride or (2 * size // 3 if size else None)
    return _segment_logits(params, images, model, size, stride, batch_size)


def segment(images, model: Segformer, params, *, size: int | None = 512, stride: int | None = None,
            batch_size: int = 4) -> jax.Array:
    """Per-pixel class labels (N, H, W) int32 of images (N, H, W, 3) RGB in [0, 1]; see `segment_logits`."""
    logits = segment_logits(images, model, params, size=size, stride=stride, batch_size=batch_size)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _segment_logits(params, images: jax.Array, model: Segformer, size: int | None, stride: int | None,
                    batch_size: int) -> jax.Array:
    n, h, w, _ = images.shape
    pixels = imagenet_normalize(images)
    if size is None or (h <= size and w <= size):
        model_size = (h, w) if size is None else (size, size)
        logits = model.apply({"params": params}, resize_bilinear(pixels, model_size))
        return resize_bilinear(logits, (h, w))
    window_h, window_w = min(size, h), min(size, w)
    corners = [(top, left) for top in window_starts(h, window_h, stride) for left in window_starts(w, window_w, stride)]
    windows = jnp.concatenate([pixels[:, top:top + window_h, left:left + window_w] for top, left in corners])
    # Whole batches of windows through one compiled forward pass; the padding windows are dropped after.
    num_windows = windows.shape[0]
    batches = -(-num_windows // batch_size)
    windows = jnp.pad(windows, ((0, batches * batch_size - num_windows), (0, 0), (0, 0), (0, 0)))
    windows = windows.reshape(batches, batch_size, *windows.shape[1:])

    def window_logits(batch: jax.Array) -> jax.Array:
        return resize_bilinear(model.apply({"params": params}, batch), (window_h, window_w))

    logits = jax.lax.map(window_logits, windows)
    logits = logits.reshape(-1, *logits.shape[2:])[:num_windows]
    total = jnp.zeros((n, h, w, logits.shape[-1]), jnp.float32)
    count = np.zeros((h, w, 1), np.float32)
    for index, (top, left) in enumerate(corners):
        total = total.at[:, top:top + window_h, left:left + window_w].add(logits[index * n:(index + 1) * n])
        count[top:top + window_h, left:left + window_w] += 1
    return total / count
