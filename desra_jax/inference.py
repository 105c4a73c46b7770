"""Whole-image super-resolution of any size with overlapping tiles, batched on the device.

A large image does not fit the device at once, and a model run on separate tiles leaves seams where each
tile's border padding differs from the neighbouring image content. `upscale` cuts the LR image into tiles of one
size that overlap by at least `overlap` pixels, runs them in fixed-size batches (one compilation per tile shape),
and keeps from each tile only the part nearer its centre than its neighbours' (the cut is in the middle of each
overlap). Every kept pixel therefore has at least `overlap // 2` LR pixels of real image context on every side
that is not the image border, and tiles at the image border end at the image border, as the whole image does:
when the network's receptive radius is at most `overlap // 2`, tiling gives the whole-image result exactly;
beyond it (the 23-block RRDBNet's radius is larger) the difference decays with the overlap. This is
Real-ESRGAN's `tile` / `tile_pad` scheme with the tiles spread evenly instead of a fixed stride.

JAX compiles once per input shape. Images at least a tile wide and high all run as tiles of one shape; a side
shorter than a tile runs whole, so without more a folder of small photographs of many sizes compiles once per
size. With `bucket`, such a side is first padded (mirrored, as Real-ESRGAN's `pre_pad`) up to a multiple of
`bucket` (at most the tile) and the output cropped back, so all sizes in one bucket share a compilation. The
padding is beyond the bottom and right borders only: output pixels further than the network's receptive radius
from those borders are unchanged; nearer, the network sees mirrored content instead of its zero padding.

A device call's buffers grow with the tiles it holds (the 23-block RRDBNet needs 512 MiB for one 256-pixel tile
at x4), so a call takes at most `batch_size` tiles and no more than fit `max_batch_bytes` of XLA's buffers
(`tile_bytes` measures one tile's from the compiled program); at least one.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import numpy as np

from desra_jax.sharding import batch_sharding, data_mesh, replicated


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: (start, stop, keep_start, keep_stop) with stop - start = min(tile, length).

    The tiles cover [0, length), adjacent ones overlap by at least `overlap`, and the kept parts
    [keep_start, keep_stop) partition [0, length), cut in the middle of each overlap.
    """
    if tile <= overlap:
        raise ValueError(f"tile: expected more than overlap ({overlap}) pixels, got {tile}")
    tile = min(tile, length)
    count = 1 if tile == length else math.ceil((length - tile) / (tile - overlap)) + 1
    starts = np.round(np.linspace(0, length - tile, count)).astype(int).tolist()
    cuts = [0] + [(right + left + tile) // 2 for left, right in zip(starts, starts[1:])] + [length]
    return [(start, start + tile, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


def bucket_length(length: int, tile: int, bucket: int | None) -> int:
    """The side a side of `length` LR pixels runs at: itself when it fills a tile or without a bucket, else
    rounded up to a multiple of `bucket`, at most `tile`."""
    if not bucket or length >= tile:
        return length
    return min(tile, -(-length // bucket) * bucket)


def pad_to_buckets(image: np.ndarray, tile: int, bucket: int | None) -> np.ndarray:
    """(N, H, W, C) mirrored beyond its bottom and right borders to `bucket_length` of each side."""
    height, width = (bucket_length(side, tile, bucket) for side in image.shape[1:3])
    padding = ((0, 0), (0, height - image.shape[1]), (0, width - image.shape[2]), (0, 0))
    return np.pad(image, padding, mode="symmetric") if height > image.shape[1] or width > image.shape[2] else image


#: XLA's buffers of one device call (per device) that `upscale` fills with tiles before it uses another call.
MAX_BATCH_BYTES = 512 * 2**20


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: nn.Module, variables, tiles):
    return model.apply(variables, tiles)


_TILE_BYTES: dict = {}


def tile_bytes(model: nn.Module, variables, tile_shape: tuple[int, int, int]) -> int | None:
    """Bytes of XLA's buffers (temporaries and output) that one LR tile of (h, w, C) takes in a device call of
    ``model``, as the compiled call of one tile reports them; measured once per model and tile shape. None where
    the backend does not report memory."""
    key = (model, tuple(tile_shape))
    if key not in _TILE_BYTES:
        tile = jax.ShapeDtypeStruct((1, *tile_shape), np.float32)
        stats = _apply.lower(model, variables, tile).compile().memory_analysis()
        _TILE_BYTES[key] = None if stats is None else stats.temp_size_in_bytes + stats.output_size_in_bytes
    return _TILE_BYTES[key]


def tiles_per_call(model: nn.Module, variables, tile_shape: tuple[int, int, int], tiles: int, batch_size: int,
                   devices: int, max_batch_bytes: int) -> int:
    """Tiles in each device call: at most ``batch_size`` and ``tiles``, at most as many per device as fit
    ``max_batch_bytes`` (`tile_bytes`; at least one), and a multiple of the ``devices`` the call is split over."""
    per_device = math.ceil(min(batch_size, tiles) / devices)
    if per_device > 1:
        each = tile_bytes(model, variables, tile_shape)
        per_device = min(per_device, max(1, max_batch_bytes // each)) if each else per_device
    return per_device * devices


def upscale(
    model: nn.Module,
    params,
    image: np.ndarray,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    extra_variables: dict | None = None,
    devices=None,
    bucket: int | None = None,
    max_batch_bytes: int = MAX_BATCH_BYTES,
) -> np.ndarray:
    """Super-resolves (H, W, C) or (N, H, W, C) LR images in [0, 1] with `model` (an SR network whose
    `apply(variables, x)` maps (B, h, w, C) to (B, h * s, w * s, C')); returns float32 numpy of the output size.

    tile: LR tile side (images smaller than a tile run whole); overlap: LR pixels shared by adjacent tiles (see
    the module docstring for why there are no seams); batch_size: tiles per device call, at most the number of
    tiles and as many as fit ``max_batch_bytes`` of XLA's buffers per device (`tiles_per_call`; the last batch
    is padded with copies so all calls have one shape); extra_variables: further flax collections (e.g.
    batch_stats) besides params; devices: the devices each batch is split across (e.g.
    ``jax.local_devices()``; None: the default device), which rounds the batch up to a multiple of their count;
    bucket: sides shorter than a tile are padded to a multiple of it (`pad_to_buckets`, see the module
    docstring), None: they run at their size. Outputs are not clipped.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return upscale(model, params, image[None], tile=tile, overlap=overlap, batch_size=batch_size,
                       extra_variables=extra_variables, devices=devices, bucket=bucket,
                       max_batch_bytes=max_batch_bytes)[0]
    if image.ndim != 4:
        raise ValueError(f"image: expected (H, W, C) or (N, H, W, C), got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected at least 1, got {batch_size}")
    height, width = image.shape[1:3]
    image = pad_to_buckets(image, tile, bucket)
    variables = {"params": params, **(extra_variables or {})}
    rows, cols = (tile_spans(side, tile, overlap) for side in image.shape[1:3])
    tiles = np.stack([image[n, r[0] : r[1], c[0] : c[1]] for n in range(len(image)) for r in rows for c in cols])
    # a lone tile is not padded to a whole batch of copies: that would multiply the work of small images
    batch_size = tiles_per_call(model, variables, tiles.shape[1:], len(tiles), batch_size, len(devices or [None]),
                                max_batch_bytes)
    put = np.asarray
    if devices:
        mesh = data_mesh(list(devices))
        variables = jax.device_put(variables, replicated(mesh))
        put = functools.partial(jax.device_put, device=batch_sharding(mesh))
    places = [(n, row, col) for n in range(len(image)) for row in rows for col in cols]  # the order of `tiles`
    result = None
    for first in range(0, len(tiles), batch_size):
        batch = tiles[first : first + batch_size]
        padded = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), axis=0)])
        outputs = np.asarray(_apply(model, variables, put(padded)), np.float32)[: len(batch)]
        scale = outputs.shape[1] // tiles.shape[1]
        if result is None:
            result = np.empty((len(image), image.shape[1] * scale, image.shape[2] * scale, outputs.shape[-1]),
                              np.float32)
        for output, place in zip(outputs, places[first : first + batch_size]):
            _keep(result, output, *place, scale)
    return result[:, : height * scale, : width * scale]


def _keep(result: np.ndarray, output: np.ndarray, n: int, row: tuple, col: tuple, scale: int) -> None:
    """Writes into image ``n`` of ``result`` the part of one tile's SR ``output`` that the tile keeps (``row``
    and ``col`` are its `tile_spans`), as each batch arrives: the tiles' outputs are never all held at once."""
    (r_start, _, r_keep, r_stop), (c_start, _, c_keep, c_stop) = row, col
    kept = output[(r_keep - r_start) * scale : (r_stop - r_start) * scale,
                  (c_keep - c_start) * scale : (c_stop - c_start) * scale]
    result[n, r_keep * scale : r_stop * scale, c_keep * scale : c_stop * scale] = kept


@dataclasses.dataclass
class Upscaler:
    """An SR network and its params as a function of whole LR images: `upscale` in tiles, clipped to [0, 1]
    (the fields are `upscale`'s arguments)."""

    module: nn.Module
    params: object
    tile: int = 256
    overlap: int = 32
    batch_size: int = 4
    extra_variables: dict | None = None
    devices: tuple | None = None
    bucket: int | None = None
    max_batch_bytes: int = MAX_BATCH_BYTES

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        result = upscale(self.module, self.params, lr, tile=self.tile, overlap=self.overlap,
                         batch_size=self.batch_size, extra_variables=self.extra_variables, devices=self.devices,
                         bucket=self.bucket, max_batch_bytes=self.max_batch_bytes)
        return np.clip(result, 0.0, 1.0, out=result)  # in place: a 2048^2 photograph's x4 result is 805 MB
