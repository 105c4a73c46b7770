"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021, Sec. 3), jitted and batched on the device.

The pipeline of Real-ESRGAN's ``RealESRGANModel.feed_data`` with the kernels of ``RealESRGANDataset``:

    USM-sharpen the GT (both released recipes degrade the sharpened GT)
    blur (kernel1) -> resize by a random factor -> Gaussian or Poisson noise -> clamp -> JPEG
    blur with probability second_blur_prob (kernel2) -> resize to (H / scale) x random factor -> noise
    in random order: [resize to H / scale, W / scale + final sinc filter] and [clamp -> JPEG]
    clamp and round to 8 bit

Every random choice is drawn per image from the key (Real-ESRGAN draws the resize factors, modes, noise type
and final order once per batch, and its training-pair pool mixes batches to make up for it): images of a batch
are independent, each with the marginal distribution of the released pipeline. A per-image resize factor
means per-image sizes inside a batch; they are handled with fixed canvases (``interpolate``): each
intermediate image lies in the top-left corner of an array sized for the largest factor, with its own size
carried beside it, and every later step (noise statistics, 'reflect' padding of the blur, JPEG's blocks,
the next resize) reads only that region. So shapes are static and ``jit`` compiles once; the cost is that of
the largest factor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from desra_jax.data.interpolate import RESIZE_MODES, resize
from desra_jax.data.jpeg import diff_jpeg
from desra_jax.data.kernels import (
    KERNEL_FAMILIES,
    filter2d,
    random_final_sinc_kernel,
    random_mixed_kernel,
    usm_sharp,
)
from desra_jax.data.noise import random_noise

_KERNEL_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


@dataclasses.dataclass(frozen=True)
class RealESRGANSettings:
    """Real-ESRGAN x4plus's degradation: ``options/train_realesrgan_x4plus.yml`` (identical in these values to
    ``train_realesrnet_x4plus.yml``), the names as there; ``sharpen_input`` is the yml's ``gt_usm`` (both
    recipes degrade the USM-sharpened GT), ``l1_gt_usm`` whether the pixel loss's target is that sharpened GT too (the
    training step's concern; False: the GT as it is) and ``usm_*`` are ``USMSharp``'s defaults. Frozen and of tuples, so
    that it hashes: a jitted step is compiled once per setting. Suffix 2: the second degradation."""

    scale: int = 4
    sharpen_input: bool = True
    l1_gt_usm: bool = True
    usm_weight: float = 0.5
    usm_radius: int = 50
    usm_threshold: float = 10.0
    # the first degradation
    kernel_list: tuple[str, ...] = tuple(KERNEL_FAMILIES)
    kernel_prob: tuple[float, ...] = _KERNEL_PROB
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # the second degradation
    second_blur_prob: float = 0.8
    kernel_list2: tuple[str, ...] = tuple(KERNEL_FAMILIES)
    kernel_prob2: tuple[float, ...] = _KERNEL_PROB
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    final_sinc_prob: float = 0.8
    # the training-pair pool (``pair_pool_init``)
    queue_size: int = 180

    @classmethod
    def of(cls, overrides: Mapping | None = None) -> "RealESRGANSettings":
        """The defaults with the keys of the plain mapping ``overrides`` replaced (lists become tuples); an unknown
        key fails, naming it."""
        given = dict(overrides or {})
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"realesrgan_degrade settings: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{key: _frozen(value) for key, value in given.items()})


def _frozen(value):
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def realesrgan_settings() -> RealESRGANSettings:
    """The released degradation (``RealESRGANSettings``' defaults)."""
    return RealESRGANSettings()


def _canvas(length: int) -> int:
    """A canvas side: at least ``length``, a multiple of 16 so JPEG's 16-pixel padding lies inside it."""
    return max(16, -(-length // 16) * 16)


def _random_scale(key, n: int, resize_prob, resize_range) -> jnp.ndarray:
    """Per image: 'up' uniform in [1, high], 'down' in [low, 1], 'keep' 1, chosen by ``resize_prob``."""
    choice_key, up_key, down_key = jax.random.split(key, 3)
    kind = jax.random.choice(choice_key, 3, (n,), p=jnp.asarray(resize_prob, jnp.float32))
    up = jax.random.uniform(up_key, (n,), minval=1.0, maxval=resize_range[1])
    down = jax.random.uniform(down_key, (n,), minval=resize_range[0], maxval=1.0)
    return jnp.select([kind == 0, kind == 1], [up, down], 1.0)


def _sizes(length_h: float, length_w: float, factors: jnp.ndarray) -> jnp.ndarray:
    """(N, 2) int32 floor(length x factor), at least 1 (torch's output size for a scale factor)."""
    lengths = jnp.asarray([length_h, length_w], jnp.float32)
    return jnp.maximum(jnp.floor(lengths[None] * factors[:, None]), 1).astype(jnp.int32)


def _valid(sizes: jnp.ndarray, canvas: tuple[int, int]) -> jnp.ndarray:
    """(N, canvas_h, canvas_w, 1) bool: inside each image's top-left region."""
    rows = jnp.arange(canvas[0])[None, :, None] < sizes[:, 0, None, None]
    cols = jnp.arange(canvas[1])[None, None, :] < sizes[:, 1, None, None]
    return (rows & cols)[..., None]


def _random_modes(key, n: int) -> jnp.ndarray:
    return jax.random.randint(key, (n,), 0, len(RESIZE_MODES))


def _random_quality(key, n: int, jpeg_range) -> jnp.ndarray:
    return jax.random.uniform(key, (n,), minval=jpeg_range[0], maxval=jpeg_range[1])


def _kernels(key, n: int, s: RealESRGANSettings, suffix: str) -> jnp.ndarray:
    def draw(k):
        return random_mixed_kernel(
            k,
            getattr(s, "kernel_list" + suffix),
            getattr(s, "kernel_prob" + suffix),
            getattr(s, "blur_sigma" + suffix),
            getattr(s, "betag_range" + suffix),
            getattr(s, "betap_range" + suffix),
            getattr(s, "sinc_prob" + suffix),
        )

    return jax.vmap(draw)(jax.random.split(key, n))


def _noise(key, images, s: RealESRGANSettings, suffix: str, valid) -> jnp.ndarray:
    return random_noise(
        key,
        images,
        getattr(s, "gaussian_noise_prob" + suffix),
        getattr(s, "noise_range" + suffix),
        getattr(s, "poisson_scale_range" + suffix),
        getattr(s, "gray_noise_prob" + suffix),
        valid,
    )


def realesrgan_degrade(key, hr: jnp.ndarray, settings: RealESRGANSettings | None = None) -> jnp.ndarray:
    """Real-ESRGAN's LR image of each HR image (module docstring), one independent draw per image from ``key``.

    hr: (N, H, W, 3) float32 RGB in [0, 1], H and W divisible by ``settings.scale``; settings: None for
    the released ``RealESRGANSettings()``, or others (``RealESRGANSettings.of(overrides)``). Returns (N, H / scale,
    W / scale, 3) float32 in [0, 1] on the 8-bit grid. Pure and traceable (call it inside a jitted step;
    settings are Python values, fixed at trace time). Real-ESRGAN degrades 400 x 400 GT crops and then cuts
    aligned 256 / 64 patches out of GT and LR; the HR given here is degraded whole, so a caller that wants the
    released borders degrades larger crops and cuts the patches afterwards.
    """
    s = settings or RealESRGANSettings()
    n, h, w, c = hr.shape
    scale = s.scale
    if c != 3 or h % scale or w % scale:
        raise ValueError(
            f"realesrgan_degrade: expected HR images (N, H, W, 3) with H and W divisible by scale {scale}, "
            f"got shape {hr.shape}"
        )
    keys = jax.random.split(key, 16)
    if s.sharpen_input:
        hr = usm_sharp(hr, s.usm_weight, s.usm_radius, s.usm_threshold)

    # The first degradation: the resize takes a factor, so torch samples at 1 / factor.
    out = filter2d(hr, _kernels(keys[0], n, s, ""))
    factors = _random_scale(keys[1], n, s.resize_prob, s.resize_range)
    sizes1 = _sizes(h, w, factors)
    top1 = max(1.0, s.resize_range[1])
    canvas1 = (_canvas(math.floor(h * top1)), _canvas(math.floor(w * top1)))
    full = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (n, 2))
    out = resize(out, _random_modes(keys[2], n), full, sizes1, canvas1, scales=1.0 / factors)
    valid1 = _valid(sizes1, canvas1)
    out = _noise(keys[3], out, s, "", valid1)
    out = jnp.where(valid1, diff_jpeg(jnp.where(valid1, out, 0.0), _random_quality(keys[4], n, s.jpeg_range)), 0.0)

    # The second degradation: the resize takes a size, (H / scale) x factor truncated.
    blurred = filter2d(out, _kernels(keys[5], n, s, "2"), valid_hw=sizes1)
    out = jnp.where((jax.random.uniform(keys[6], (n,)) < s.second_blur_prob)[:, None, None, None], blurred, out)
    factors2 = _random_scale(keys[7], n, s.resize_prob2, s.resize_range2)
    sizes2 = _sizes(h / scale, w / scale, factors2)
    top2 = max(1.0, s.resize_range2[1])
    canvas2 = (_canvas(math.floor(h / scale * top2)), _canvas(math.floor(w / scale * top2)))
    out = resize(jnp.where(valid1, out, 0.0), _random_modes(keys[8], n), sizes1, sizes2, canvas2)
    valid2 = _valid(sizes2, canvas2)
    out = _noise(keys[9], out, s, "2", valid2)

    # [resize back + sinc] and JPEG, in an order drawn per image.
    lr_shape = (h // scale, w // scale)
    lr_sizes = jnp.broadcast_to(jnp.asarray(lr_shape, jnp.int32), (n, 2))
    sinc = jax.vmap(lambda k: random_final_sinc_kernel(k, s.final_sinc_prob))(jax.random.split(keys[10], n))
    modes3 = _random_modes(keys[11], n)
    quality = _random_quality(keys[12], n, s.jpeg_range2)

    def resize_back_and_sinc(images):
        return filter2d(resize(images, modes3, sizes2, lr_sizes, lr_shape), sinc)

    resize_first = diff_jpeg(jnp.clip(resize_back_and_sinc(out), 0, 1), quality)
    jpeg_first = resize_back_and_sinc(diff_jpeg(jnp.where(valid2, jnp.clip(out, 0, 1), 0.0), quality))
    out = jnp.where((jax.random.uniform(keys[13], (n,)) < 0.5)[:, None, None, None], resize_first, jpeg_first)
    return jnp.clip(jnp.round(out * 255.0), 0, 255) / 255.0


class PairPool(NamedTuple):
    """Real-ESRGAN's training-pair pool: ``queue_size`` LR/GT pairs and how many slots are filled."""

    lr: jnp.ndarray
    gt: jnp.ndarray
    filled: jnp.ndarray


def pair_pool_init(queue_size: int, lr_shape: tuple[int, ...], gt_shape: tuple[int, ...]) -> PairPool:
    """An empty pool for batches of LR (b, h, w, C) and GT (b, H, W, C): ``lr_shape``, ``gt_shape`` are one
    image's (h, w, C) and (H, W, C)."""
    return PairPool(
        jnp.zeros((queue_size, *lr_shape), jnp.float32),
        jnp.zeros((queue_size, *gt_shape), jnp.float32),
        jnp.zeros((), jnp.int32),
    )


def pair_pool_update(
    key, pool: PairPool, lr: jnp.ndarray, gt: jnp.ndarray
) -> tuple[PairPool, jnp.ndarray, jnp.ndarray]:
    """Real-ESRGAN's ``_dequeue_and_enqueue``, functional: returns (pool, lr, gt) for the step.

    While the pool fills, the batch is stored at the next free slots and returned as it is. Once full, the pool
    is shuffled (``key``), its first b pairs are returned and the batch takes their place. lr: (b, h, w, C), gt:
    (b, H, W, C); the queue size must be a multiple of b. Pure; use inside the jitted step.
    """
    size, b = pool.lr.shape[0], lr.shape[0]
    if size % b or pool.lr.shape[1:] != lr.shape[1:] or pool.gt.shape[1:] != gt.shape[1:]:
        raise ValueError(
            f"pair_pool_update: pool of {pool.lr.shape} / {pool.gt.shape} does not take batches {lr.shape} / "
            f"{gt.shape} (the queue size must be a multiple of the batch size)"
        )

    def enqueue(_):
        start = (pool.filled, 0, 0, 0)
        stored = PairPool(
            jax.lax.dynamic_update_slice(pool.lr, lr.astype(pool.lr.dtype), start),
            jax.lax.dynamic_update_slice(pool.gt, gt.astype(pool.gt.dtype), start),
            pool.filled + b,
        )
        return stored, lr, gt

    def exchange(_):
        order = jax.random.permutation(key, size)
        queue_lr, queue_gt = pool.lr[order], pool.gt[order]
        stored = PairPool(queue_lr.at[:b].set(lr), queue_gt.at[:b].set(gt), pool.filled)
        return stored, queue_lr[:b], queue_gt[:b]

    return jax.lax.cond(pool.filled >= size, exchange, enqueue, None)
