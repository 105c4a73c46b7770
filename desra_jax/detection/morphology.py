"""Binary morphology of DeSRA's released detection script, on device: erode, dilate, fill holes, small regions.

Masks are (N, H, W) bool, batched over N; every function is jax.jit-able with its integer arguments static.
Erosion and dilation have two formulations with equal results (``method``: shifted slices or
``lax.reduce_window``, `sliding.window_method` picks one per backend).
The results equal cv2.erode / cv2.dilate with np.ones((size, size)) and default borders,
scipy.ndimage.binary_fill_holes(structure=np.ones((3, 3))) and cv2.connectedComponentsWithStats(connectivity=8).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from desra_jax.detection.sliding import shifted, window_method


def _check_mask(mask: jnp.ndarray, name: str) -> None:
    if mask.ndim != 3:
        raise ValueError(f"{name}: expected an (N, H, W) mask, got shape {mask.shape}")


def _square_reduce(mask: jnp.ndarray, size: int, combine, outside: bool, method: str | None) -> jnp.ndarray:
    """AND (erosion) or OR (dilation) of a bool mask over a size x size square, separably; pixels outside the image
    count as `outside`. 'shifted': `size` shifted slices per axis; 'reduce_window': lax.reduce_window with min
    (AND) or max (OR) per axis, padded with `outside` (the reduction's identity)."""
    half = size // 2
    if window_method(method, "morphology") == "reduce_window":
        reduce = lax.min if combine is jnp.logical_and else lax.max
        for axis in (2, 1):
            dims = tuple(size if a == axis else 1 for a in range(3))
            padding = tuple((half, half) if a == axis else (0, 0) for a in range(3))
            mask = lax.reduce_window(mask, outside, reduce, dims, (1, 1, 1), padding)
        return mask
    for axis in (2, 1):
        padding = [(0, 0)] * 3
        padding[axis] = (half, half)
        padded = jnp.pad(mask, padding, constant_values=outside)
        mask = functools.reduce(combine, (shifted(padded, k, mask.shape[axis], axis) for k in range(size)))
    return mask


def _grown_size(size: int, iterations: int) -> int:
    """Side of the square equal to `iterations` successive size x size squares (their Minkowski sum)."""
    if size < 1 or size % 2 == 0 or iterations < 0:
        raise ValueError(f"expected an odd size >= 1 and iterations >= 0, got size={size}, iterations={iterations}")
    return (size - 1) * iterations + 1


def erode(mask: jnp.ndarray, size: int = 5, iterations: int = 1, method: str | None = None) -> jnp.ndarray:
    """cv2.erode(mask, np.ones((size, size)), iterations=iterations): (N, H, W) bool -> (N, H, W) bool.

    As cv2's default border (constant +inf for erosion), pixels outside the image never erode anything.
    Repeated square erosions are one erosion by the grown square, so the cost does not grow with iterations.
    ``method``: 'shifted', 'reduce_window' or None (`sliding.window_method`); the results are equal.
    """
    _check_mask(mask, "erode")
    return _square_reduce(mask, _grown_size(size, iterations), jnp.logical_and, outside=True, method=method)


def dilate(mask: jnp.ndarray, size: int = 5, iterations: int = 3, method: str | None = None) -> jnp.ndarray:
    """cv2.dilate(mask, np.ones((size, size)), iterations=iterations): (N, H, W) bool -> (N, H, W) bool.

    As cv2's default border for dilation, pixels outside the image are background (never dilate anything).
    ``method`` as for `erode`.
    """
    _check_mask(mask, "dilate")
    return _square_reduce(mask, _grown_size(size, iterations), jnp.logical_or, outside=False, method=method)


#: The 8 neighbour directions (row step, column step) of a pixel or a 2 x 2 block.
_DIRECTIONS = tuple((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0))


def _blocks(mask: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W) bool -> (N, H2, 2, W2, 2): the 2 x 2 blocks of the mask padded with False to even H and W."""
    _, h, w = mask.shape
    padded = jnp.pad(mask, ((0, 0), (0, h % 2), (0, w % 2)))
    n, hp, wp = padded.shape
    return padded.reshape(n, hp // 2, 2, wp // 2, 2)


def _facing(blocks: jnp.ndarray, di: int, dj: int) -> jnp.ndarray:
    """(N, H2, W2) bool: whether each block has a member pixel on its side towards the neighbour (di, dj)."""
    side = {-1: slice(0, 1), 0: slice(0, 2), 1: slice(1, 2)}  # first, both or second row (column) of a block
    return jnp.any(blocks[:, :, side[di], :, side[dj]], axis=(2, 4))


def _neighbour(a: jnp.ndarray, di: int, dj: int, fill) -> jnp.ndarray:
    """a[:, i + di, j + dj] at every (i, j) of an (N, H2, W2) array, `fill` beyond its edge."""
    _, h, w = a.shape
    padded = jnp.pad(a, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return padded[:, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w]


def _block_edges(blocks: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """Per direction of `_DIRECTIONS`, (N, H2, W2) bool: the block and that neighbour hold 8-adjacent members.

    Any two pixels of a 2 x 2 block are 8-adjacent, so the members of a block lie in one component, and a member
    on a block's side towards a neighbour is 8-adjacent to every member on the neighbour's opposite side.
    """
    return tuple(_facing(blocks, di, dj) & _neighbour(_facing(blocks, -di, -dj), di, dj, False)
                 for di, dj in _DIRECTIONS)


def _propagate_labels(blocks: jnp.ndarray, starts: jnp.ndarray) -> jnp.ndarray:
    """Labels of the 8-connected components of the member pixels by parallel union-find (hooking + pointer
    jumping) on their 2 x 2 blocks (block-based labelling as in GPU connected-component algorithms: a quarter of
    the nodes, since the members of a block are always connected).

    Every block keeps a parent pointer into a per-image forest stored as a flat array: entry 0 is a shared root,
    entry b + 1 is block b, the last entry is a sink for blocks without members. Pointers only ever decrease, so
    the forest stays acyclic. Each sweep (1) takes for every block the smallest parent among itself and the
    neighbours it is connected to, (2) hooks: lowers the parent of the block's current parent to that value (a
    scatter-min, so whole trees merge at once, as in Shiloach-Vishkin), and (3) halves every path twice by
    pointer jumping. It stops when every block's parent equals the smallest among its connected neighbours, i.e.
    each component shares one root. Sweeps grow like the logarithm of a component's size, not its diameter.

    Args:
      blocks: (N, H2, 2, W2, 2) bool member pixels, from `_blocks`.
      starts: (N, H2, W2) int32 start labels of the blocks: block index + 1, or 0 to join the shared root.

    Returns:
      (N, H2, W2) int32: per component the smallest start label in it; H2 * W2 + 1 for blocks without members.
    """
    n, h, _, w, _ = blocks.shape
    size = h * w
    sink = size + 1
    occupied = jnp.any(blocks, axis=(2, 4))
    edges = _block_edges(blocks)
    nodes = jnp.where(occupied, starts, sink).reshape(n, size)
    parents = jnp.concatenate(
        [jnp.zeros((n, 1), jnp.int32), nodes.astype(jnp.int32), jnp.full((n, 1), sink, jnp.int32)], axis=1)

    def node_parents(parents):
        return parents[:, 1 : size + 1]

    def jump(parents):
        return jnp.take_along_axis(parents, parents, axis=1)

    def smallest_connected(parents):
        current = node_parents(parents).reshape(n, h, w)
        smallest = current
        for (di, dj), edge in zip(_DIRECTIONS, edges):
            smallest = jnp.minimum(smallest, jnp.where(edge, _neighbour(current, di, dj, sink), sink))
        return smallest.reshape(n, size)

    def sweep(state):
        parents, smallest = state
        hooked = jax.vmap(lambda p, at, value: p.at[at].min(value))(parents, node_parents(parents), smallest)
        hooked = hooked.at[:, 1 : size + 1].min(smallest)
        parents = jump(jump(hooked))
        return parents, smallest_connected(parents)

    def unsettled(state):
        parents, smallest = state
        return jnp.any(smallest != node_parents(parents))

    parents, _ = lax.while_loop(unsettled, sweep, (parents, smallest_connected(parents)))
    return node_parents(parents).reshape(n, h, w)


def _block_ids(blocks: jnp.ndarray) -> jnp.ndarray:
    """(N, H2, W2) int32: 1 + the raster index of each block within its image."""
    n, h, _, w, _ = blocks.shape
    return jnp.broadcast_to(jnp.arange(1, h * w + 1, dtype=jnp.int32).reshape(1, h, w), (n, h, w))


def _to_pixels(block_values: jnp.ndarray, shape) -> jnp.ndarray:
    """(N, H2, W2) per-block values -> (N, H, W) per pixel (every pixel takes its block's value)."""
    _, h, w = shape
    return jnp.repeat(jnp.repeat(block_values, 2, axis=1), 2, axis=2)[:, :h, :w]


def _block_components(mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(blocks of `_blocks`, (N, H2, W2) component label of each block) for the foreground of mask."""
    blocks = _blocks(mask)
    return blocks, _propagate_labels(blocks, _block_ids(blocks))


def label_components(mask: jnp.ndarray) -> jnp.ndarray:
    """8-connected component labels of an (N, H, W) bool mask.

    Returns (N, H, W) int32: for a foreground pixel, 1 + the raster index of the first 2 x 2 block (of the image
    cut into 2 x 2 blocks) that its component touches, so labels are unique per image but not consecutive;
    0 on the background.
    """
    _check_mask(mask, "label_components")
    _, labels = _block_components(mask)
    return jnp.where(mask, _to_pixels(labels, mask.shape), 0)


def fill_holes(mask: jnp.ndarray) -> jnp.ndarray:
    """scipy.ndimage.binary_fill_holes(mask, structure=np.ones((3, 3))) per image: (N, H, W) bool.

    Background that the 3x3 structure cannot reach from outside the image is a hole. The 3x3 structure makes
    the background 8-connected, so holes are the 8-connected background components that do not touch the image
    border: blocks with a background pixel on the image border start on the shared root label 0, and the
    labelling spreads it.
    """
    _check_mask(mask, "fill_holes")
    background = ~mask
    edge = jnp.zeros(mask.shape[1:], bool).at[0].set(True).at[-1].set(True).at[:, 0].set(True).at[:, -1].set(True)
    blocks = _blocks(background)
    on_border = jnp.any(_blocks(background & edge[None]), axis=(2, 4))
    starts = jnp.where(on_border, 0, _block_ids(blocks))
    reached = _to_pixels(_propagate_labels(blocks, starts) == 0, mask.shape)
    return ~(background & reached)


def remove_small_regions(mask: jnp.ndarray, min_area: int = 4000) -> jnp.ndarray:
    """Keeps the 8-connected regions of more than `min_area` pixels, as the released script does with
    cv2.connectedComponentsWithStats(connectivity=8) and `area > min_area`: (N, H, W) bool -> (N, H, W) bool."""
    _check_mask(mask, "remove_small_regions")
    blocks, labels = _block_components(mask)
    n, h, w = labels.shape
    flat = labels.reshape(n, h * w)
    members = jnp.sum(blocks, axis=(2, 4), dtype=jnp.int32).reshape(n, h * w)
    areas = jax.vmap(lambda at, count: jnp.zeros(h * w + 2, jnp.int32).at[at].add(count))(flat, members)
    keep = jnp.take_along_axis(areas, flat, axis=1).reshape(n, h, w) > min_area
    return mask & _to_pixels(keep, mask.shape)
