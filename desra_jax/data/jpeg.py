"""JPEG compression as BasicSR's ``basicsr/utils/diffjpeg.py`` (``DiffJPEG``), jittable, one quality per image.

The steps of ``DiffJPEG.forward``: pad the image with zeros at the bottom and right to a multiple of 16; RGB
-> YCbCr (JPEG's full-range matrix, chroma shifted by 128) on the [0, 255] scale; Cb and Cr averaged over 2x2
blocks (4:2:0 subsampling); each 8x8 block shifted by -128 and DCT-II transformed; divided by the quantisation
table times a quality factor and rounded; multiplied back, inverse DCT, +128; chroma repeated 2x2; YCbCr ->
RGB, clamped to [0, 255], divided by 255, cropped. As released the standard tables are transposed
(``y_table = ....T``) and the tables are scaled by the factor without rounding or clamping to [1, 255] (so a
non-integer quality is meaningful); both are kept, so results match BasicSR's, and differ slightly from a real
JPEG codec (``cv2.imencode``).

``differentiable=True`` replaces rounding by BasicSR's ``diff_round`` (round(x) + (x - round(x))^3);
Real-ESRGAN degrades with ``DiffJPEG(differentiable=False)``, plain rounding (half to even, as ``torch.round``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: The JPEG standard's luminance and chrominance tables, transposed as DiffJPEG holds them.
_Y_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
).T
_C_TABLE = np.full((8, 8), 99, np.float32)
_C_TABLE[:4, :4] = np.array([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], np.float32).T
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], np.float32)
#: DCT-II basis, _DCT[u, x] = cos((2 x + 1) u pi / 16), and the orthonormal scale 0.25 alpha_u alpha_v.
_DCT = np.cos((2 * np.arange(8)[None] + 1) * np.arange(8)[:, None] * np.pi / 16).astype(np.float32)
_ALPHA = np.outer(*(2 * [np.array([1 / np.sqrt(2)] + [1.0] * 7)])).astype(np.float32)

_HIGHEST = jax.lax.Precision.HIGHEST


def quality_to_factor(quality: jnp.ndarray) -> jnp.ndarray:
    """BasicSR's ``quality_to_factor``: 50 / q below quality 50, (200 - 2 q) / 100 from 50 up."""
    return jnp.where(quality < 50, 50.0 / quality, (200.0 - 2.0 * quality) / 100.0)


def diff_round(x: jnp.ndarray) -> jnp.ndarray:
    """BasicSR's ``diff_round``: round(x) + (x - round(x))^3, a rounding with a non-zero gradient."""
    return jnp.round(x) + (x - jnp.round(x)) ** 3


def _to_blocks(plane: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W) -> (N, H / 8, W / 8, 8, 8)."""
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _from_blocks(blocks: jnp.ndarray) -> jnp.ndarray:
    n, bh, bw, _, _ = blocks.shape
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _quantise_plane(plane: jnp.ndarray, table: np.ndarray, factor: jnp.ndarray, rounding) -> jnp.ndarray:
    """DCT, quantise, dequantise, inverse DCT of every 8x8 block of (N, H, W) planes on the [0, 255] scale."""
    blocks = _to_blocks(plane) - 128.0
    coefficients = 0.25 * _ALPHA * jnp.einsum("ux,nijxy,vy->nijuv", _DCT, blocks, _DCT, precision=_HIGHEST)
    steps = table * factor[:, None, None, None, None]
    coefficients = rounding(coefficients / steps) * steps
    blocks = 0.25 * jnp.einsum("ux,nijuv,vy->nijxy", _DCT, coefficients * _ALPHA, _DCT, precision=_HIGHEST)
    return _from_blocks(blocks + 128.0)


def diff_jpeg(images: jnp.ndarray, quality, differentiable: bool = False) -> jnp.ndarray:
    """BasicSR's ``DiffJPEG(differentiable)(images, quality)``.

    images: (N, H, W, 3) float32 RGB in [0, 1] (any H, W; clamp first, as Real-ESRGAN does); quality: (N,) or a
    scalar, JPEG quality (a float; 1-100). Returns (N, H, W, 3) float32 in [0, 1].
    """
    n, h, w, c = images.shape
    if c != 3:
        raise ValueError(f"diff_jpeg: expected RGB images (N, H, W, 3), got shape {images.shape}")
    factor = jnp.broadcast_to(quality_to_factor(jnp.asarray(quality, jnp.float32)), (n,))
    rounding = diff_round if differentiable else jnp.round
    padded = jnp.pad(images, ((0, 0), (0, -h % 16), (0, -w % 16), (0, 0)))
    ycbcr = jnp.tensordot(padded * 255.0, _RGB_TO_YCBCR.T, axes=1, precision=_HIGHEST) + np.float32([0, 128, 128])
    ph, pw = padded.shape[1:3]
    chroma = ycbcr[..., 1:].reshape(n, ph // 2, 2, pw // 2, 2, 2).mean(axis=(2, 4))
    luma = _quantise_plane(ycbcr[..., 0], _Y_TABLE, factor, rounding)
    chroma = jnp.stack([_quantise_plane(chroma[..., i], _C_TABLE, factor, rounding) for i in range(2)], axis=-1)
    chroma = jnp.repeat(jnp.repeat(chroma, 2, axis=1), 2, axis=2)
    ycbcr = jnp.concatenate([luma[..., None], chroma], axis=-1) - np.float32([0, 128, 128])
    rgb = jnp.tensordot(ycbcr, _YCBCR_TO_RGB.T, axes=1, precision=_HIGHEST)
    return jnp.clip(rgb, 0.0, 255.0)[:, :h, :w] / 255.0
