"""torch's ``F.interpolate`` as Real-ESRGAN calls it ('area', 'bilinear', 'bicubic'; align_corners=False, no
antialiasing), for images whose size is drawn per image under ``jit``.

Each axis is resized by an (out, in) matrix, so an image of traced size (h, w) can live in the top-left corner
of a fixed canvas: the matrix has the canvas's static shape, its columns beyond h and its rows beyond the
drawn output length are zero. Real-ESRGAN draws one resize per batch; drawing one per image needs the output
size to vary inside a batch, which these canvases allow with one compiled shape.

Formulas as PyTorch's CPU kernels (``aten/src/ATen/native/UpSample.h``): source coordinate
``scale * (i + 0.5) - 0.5``, where ``scale`` is ``1 / scale_factor`` when a factor is given and ``in / out``
when a size is; bilinear clamps negative coordinates to 0 and blends the two neighbours (the upper one clamped
to the last pixel), and copies the input when the size does not change; bicubic uses Keys' cubic with
A = -0.75 over four taps clamped to the image; 'area' is ``adaptive_avg_pool2d``, output i averaging input
[floor(i in / out), ceil((i + 1) in / out)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: The modes of Real-ESRGAN's ``random.choice(['area', 'bilinear', 'bicubic'])``, in that order.
RESIZE_MODES = ("area", "bilinear", "bicubic")
#: torch's bicubic coefficient (``upsample_bicubic2d``), not MATLAB's -0.5.
_CUBIC_A = -0.75

_HIGHEST = jax.lax.Precision.HIGHEST


def _one_hot_taps(indices: jnp.ndarray, weights: jnp.ndarray, in_canvas: int) -> jnp.ndarray:
    """(out, taps) integer indices and weights -> (out, in_canvas) matrix summing each row's taps."""
    return jnp.sum(weights[..., None] * (indices[..., None] == jnp.arange(in_canvas)), axis=1)


def _area_matrix(in_len, out_len, out_canvas: int, in_canvas: int) -> jnp.ndarray:
    i = jnp.arange(out_canvas)
    start = (i * in_len) // out_len
    end = -((-(i + 1) * in_len) // out_len)
    j = jnp.arange(in_canvas)
    inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
    return inside / jnp.maximum(end - start, 1)[:, None].astype(jnp.float32)


def _bilinear_matrix(in_len, scale, out_canvas: int, in_canvas: int) -> jnp.ndarray:
    source = jnp.maximum(scale * (jnp.arange(out_canvas, dtype=jnp.float32) + 0.5) - 0.5, 0.0)
    low = jnp.floor(source).astype(jnp.int32)
    high = low + (low < in_len - 1)
    frac = jnp.clip(source - low, 0.0, 1.0)
    return _one_hot_taps(jnp.stack([low, high], 1), jnp.stack([1 - frac, frac], 1), in_canvas)


def _cubic_near(x):
    return ((_CUBIC_A + 2) * x - (_CUBIC_A + 3)) * x * x + 1


def _cubic_far(x):
    return ((_CUBIC_A * x - 5 * _CUBIC_A) * x + 8 * _CUBIC_A) * x - 4 * _CUBIC_A


def _bicubic_matrix(in_len, scale, out_canvas: int, in_canvas: int) -> jnp.ndarray:
    source = scale * (jnp.arange(out_canvas, dtype=jnp.float32) + 0.5) - 0.5
    low = jnp.floor(source).astype(jnp.int32)
    t = source - low
    weights = jnp.stack([_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t)], 1)
    indices = jnp.clip(low[:, None] + jnp.arange(-1, 3)[None], 0, in_len - 1)
    return _one_hot_taps(indices, weights, in_canvas)


def resize_matrix(mode, in_len, out_len, out_canvas: int, in_canvas: int, scale=None) -> jnp.ndarray:
    """The (out_canvas, in_canvas) float32 matrix of one axis of ``F.interpolate``.

    mode: index into ``RESIZE_MODES`` (may be traced); in_len, out_len: the image's length before and after
    (traced ints, at most the canvases); scale: torch's coordinate scale, ``1 / scale_factor`` for a call with
    a factor, default ``in_len / out_len`` (a call with a size). Rows from out_len on and columns from in_len on
    are zero. When in_len == out_len bilinear is the identity whatever the scale, as torch short-cuts it (bicubic
    is not short-cut: a factor of 1.01 on 40 pixels keeps 40 and still shifts them).
    """
    if scale is None:
        scale = in_len / out_len
    scale = jnp.asarray(scale, jnp.float32)
    matrices = jnp.stack(
        [
            _area_matrix(in_len, out_len, out_canvas, in_canvas),
            _bilinear_matrix(in_len, scale, out_canvas, in_canvas),
            _bicubic_matrix(in_len, scale, out_canvas, in_canvas),
        ]
    )
    matrix = matrices[mode]
    identity = jnp.eye(out_canvas, in_canvas, dtype=jnp.float32)
    matrix = jnp.where((in_len == out_len) & (mode == RESIZE_MODES.index("bilinear")), identity, matrix)
    rows, cols = jnp.arange(out_canvas)[:, None], jnp.arange(in_canvas)[None]
    return jnp.where((rows < out_len) & (cols < in_len), matrix, 0.0)


def resize(images: jnp.ndarray, modes, in_hw, out_hw, out_canvas: tuple[int, int], scales=None) -> jnp.ndarray:
    """Per-image ``F.interpolate(image, size=out_hw, mode=RESIZE_MODES[mode], align_corners=False)`` on canvases.

    images: (N, H, W, C) float32, image n its top-left in_hw[n] region; modes: (N,) int; in_hw, out_hw: (N, 2)
    int; scales: optional (N,) ``1 / scale_factor`` for a call with a factor (both axes). Returns
    (N, out_canvas[0], out_canvas[1], C), image n in its top-left out_hw[n] region, zero elsewhere.
    """
    _, h, w, _ = images.shape
    if scales is None:
        axis_scales = in_hw.astype(jnp.float32) / out_hw.astype(jnp.float32)
    else:
        axis_scales = jnp.stack([scales, scales], axis=1)

    def matrices(mode, in_size, out_size, scale):
        rows = resize_matrix(mode, in_size[0], out_size[0], out_canvas[0], h, scale[0])
        cols = resize_matrix(mode, in_size[1], out_size[1], out_canvas[1], w, scale[1])
        return rows, cols

    rows, cols = jax.vmap(matrices)(modes, in_hw, out_hw, axis_scales)
    out = jnp.einsum("noh,nhwc->nowc", rows, images, precision=_HIGHEST)
    return jnp.einsum("npw,nowc->nopc", cols, out, precision=_HIGHEST)
