"""The semantic model of DeSRA's class adjustment (eq. 8/9): SegFormer segmenting images into ADE20K labels
(`segment`), and `Segmenter`, a converted SegFormer read from a checkpoint that segments one image of each
GAN-SR / MSE-SR pair (`load_segmenter`).

Two preprocessings (``resize=``), each followed by ImageNet mean/std normalisation and an argmax of the logits
resized to the image:

- ``'keep_ratio'``: the authors' pipeline, mmsegmentation 0.29's test pipeline of the MiT-B5 ADE20K 640x640 config
  that DeSRA's released detection script loads (configs/segformer/segformer_mit-b5_640x640_160k_ade20k.py:
  ``MultiScaleFlipAug(img_scale=(2048, 640))`` with ``Resize(keep_ratio=True)``, model ``test_cfg=dict(mode=
  'whole')``). The image is resized keeping its aspect ratio as large as fits ``scale`` (`keep_ratio_size`, mmcv's
  ``rescale_size``) with mmcv's default ``imresize``, cv2.INTER_LINEAR (two-tap bilinear, no antialiasing, also
  when shrinking), and segmented whole in one pass; the logits are resized bilinearly (torch ``F.interpolate``,
  ``align_corners=False``) first to the resized image (``EncoderDecoder.encode_decode``) and then to the original
  size (``whole_inference`` with ``rescale=True``). mmcv resizes the 8-bit image and rounds it; here the float
  image is resized (at most half a gray level apart).
- ``'square'``: SegformerImageProcessor's resize to ``size`` x ``size``, and sliding windows for large images. What
  happens to an image depends on its size, so that a large image is never shrunk into a blur:

  - both sides <= ``size``: resized to ``size`` x ``size``, as the image processor does for every image (the
    scale the published models were trained and evaluated at); upsampling only, where jax's bilinear resize
    equals torch's and PIL's;
  - a side > ``size``: mmsegmentation's 'slide' inference at the image's own resolution: windows of ``size``
    (or the whole side when that side is shorter) every ``stride`` pixels, the last one flush with the border,
    each window's logits upsampled to the window and averaged where windows overlap;
  - ``size=None``: the whole image in one pass at its own resolution.

`default_resize` gives the preprocessing that matches a converted checkpoint's origin.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.convert import load_segformer
from desra_jax.models.layers import imagenet_normalize, resize_bilinear
from desra_jax.models.segformer import Segformer


#: Preprocessings of `segment_logits`.
RESIZE_MODES = ("square", "keep_ratio")

#: mmseg's test scale of the MiT-B5 ADE20K 640x640 config: long side at most 2048, short side at most 640 (the
#: 512x512 ADE20K configs use (2048, 512)).
MMSEG_ADE20K_640_SCALE = (2048, 640)


def keep_ratio_size(height: int, width: int, scale: tuple[int, int] = MMSEG_ADE20K_640_SCALE) -> tuple[int, int]:
    """(height, width) of an image resized as large as fits ``scale`` keeping its aspect ratio, as mmcv's
    ``rescale_size`` with a tuple scale: factor = min(max(scale) / long side, min(scale) / short side), each side
    int(side * factor + 0.5). Small images grow, large ones shrink."""
    if min(scale) < 1 or height < 1 or width < 1:
        raise ValueError(f"keep_ratio_size: expected positive sizes, got image {(height, width)}, scale {scale}")
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def default_resize(model: Segformer) -> str:
    """'keep_ratio' for a checkpoint in open-mmlab's layout (``model.mmseg_head``: mmseg's SegformerHead, as the
    authors' MiT-B5 ADE20K 640x640 checkpoint), whose test pipeline that is; 'square' for transformers'
    checkpoints, whose SegformerImageProcessor resizes to a square."""
    return "keep_ratio" if model.mmseg_head else "square"


def window_starts(length: int, window: int, stride: int) -> tuple[int, ...]:
    """Offsets of mmseg's slide windows along one side: every ``stride``, the last flush with the end.

    ``window <= length``; mmseg's grid count max(length - window + stride - 1, 0) // stride + 1.
    """
    count = max(length - window + stride - 1, 0) // stride + 1
    return tuple(min(index * stride, length - window) for index in range(count))


def segment_logits(images, model: Segformer, params, *, size: int | None = 512, stride: int | None = None,
                   batch_size: int = 4, resize: str = "square",
                   scale: tuple[int, int] = MMSEG_ADE20K_640_SCALE) -> jax.Array:
    """SegFormer logits at full resolution: (N, H, W, 3) RGB in [0, 1] -> (N, H, W, num_labels) float32.

    ``resize``: 'square' (default) or 'keep_ratio' (the authors' mmseg pipeline; `default_resize` picks by
    checkpoint), see the module doc. For 'square': ``size``, the model's input size (512 for the ``*-512-512``
    checkpoints, 640 for MiT-B5 640x640; None: one pass at the image's resolution); ``stride``, the step of the
    slide windows (default 2/3 of ``size``, as mmseg's ADE20K configs: 341 for 512); ``batch_size``, windows per
    forward pass. For 'keep_ratio': ``scale`` (long, short) bounds the resized image (`keep_ratio_size`), a static
    function of the batch's shape, so one compilation per image size as for 'square'.
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"segment: expected images (N, H, W, 3) RGB in [0, 1], got shape {images.shape}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"segment: resize must be one of {RESIZE_MODES}, got {resize!r}")
    if resize == "keep_ratio":
        return _segment_logits_keep_ratio(params, images, model, tuple(scale))
    if size is not None and size < 32:
        raise ValueError(f"segment: size must be at least 32 (SegFormer downsamples 32x), got {size}")
    stride = stride or (2 * size // 3 if size else None)
    return _segment_logits(params, images, model, size, stride, batch_size)


def segment(images, model: Segformer, params, *, size: int | None = 512, stride: int | None = None,
            batch_size: int = 4, resize: str = "square", scale: tuple[int, int] = MMSEG_ADE20K_640_SCALE
            ) -> jax.Array:
    """Per-pixel class labels (N, H, W) int32 of images (N, H, W, 3) RGB in [0, 1]; see `segment_logits`."""
    logits = segment_logits(images, model, params, size=size, stride=stride, batch_size=batch_size, resize=resize,
                            scale=scale)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _segment_logits_keep_ratio(params, images: jax.Array, model: Segformer, scale: tuple[int, int]) -> jax.Array:
    """mmseg's keep-ratio resize and 'whole' inference (module doc)."""
    _, h, w, _ = images.shape
    resized = keep_ratio_size(h, w, scale)
    logits = model.apply({"params": params}, imagenet_normalize(resize_bilinear(images, resized)))
    return resize_bilinear(resize_bilinear(logits, resized), (h, w))


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


#: Which image of a pair SegFormer may segment, and by default: the GAN-SR one, as the authors' released script does.
SEGMENT_CHOICES = ("gan", "mse")
DEFAULT_SEGMENT = "gan"

#: SegFormer's input size by default: that of the published ``nvidia/segformer-*-finetuned-ade-512-512`` models.
DEFAULT_SEGFORMER_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Segmenter:
    """A converted SegFormer (`desra_jax.convert.load_segformer`) and which image of a pair it segments
    (``segment``: 'gan' or 'mse'), at input ``size`` with ``resize`` (`segment`)."""

    model: Any
    params: Any
    names: tuple[str, ...]
    segment: str = DEFAULT_SEGMENT
    size: int | None = DEFAULT_SEGFORMER_SIZE
    resize: str = "square"

    def __call__(self, gans: np.ndarray, mses: np.ndarray) -> jax.Array:
        """(N, H, W) int32 class labels (on the device) of the ``segment`` images, (N, H, W, 3) each."""
        images = gans if self.segment == "gan" else mses
        return segment(images, self.model, self.params, size=self.size, resize=self.resize)


def load_segmenter(path: str | Path, segment: str = DEFAULT_SEGMENT, size: int | None = DEFAULT_SEGFORMER_SIZE,
                   resize: str = "auto") -> Segmenter:
    """Reads a SegFormer that segments the ``segment`` image of a pair ('gan' or 'mse'), resized as ``resize``
    says (`segment`: 'square' at input ``size``, or mmseg's 'keep_ratio'; 'auto': the checkpoint's own pipeline,
    `default_resize`); ValueError naming ``path`` when it cannot be read."""
    if resize not in ("auto", *RESIZE_MODES):
        raise ValueError(f"segformer_resize: expected 'auto' or one of {RESIZE_MODES}, got {resize!r}")
    if segment not in SEGMENT_CHOICES:
        raise ValueError(f"segment: expected one of {SEGMENT_CHOICES}, got {segment!r}")
    try:
        model, params, id2label = load_segformer(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: cannot read the SegFormer ({error})") from error
    id2label = {int(key): str(value).strip() for key, value in id2label.items()}
    resize = default_resize(model) if resize == "auto" else resize
    return Segmenter(model, params, tuple(id2label[i] for i in range(len(id2label))), segment, size, resize)
