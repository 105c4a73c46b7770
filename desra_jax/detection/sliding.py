"""Sliding windows: as sums or reductions of shifted slices (one fused, vectorised loop per pass under XLA), or as
``lax.reduce_window``; `window_method` picks one per backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

#: Formulations of the window operations of the indicator and the morphology.
WINDOW_METHODS = ("shifted", "reduce_window")


def window_method(method: str | None = None) -> str:
    """``method``, or for None the formulation for ``jax.default_backend()``: 'shifted' on CPU (faster there,
    benchmarks/detection_speed.py), 'reduce_window' on GPU and TPU (XLA's window ops, not measured against
    shifted slices in this tree: the benchmark prints the ratio on whatever device runs it)."""
    if method is None:
        return "shifted" if jax.default_backend() == "cpu" else "reduce_window"
    if method not in WINDOW_METHODS:
        raise ValueError(f"method: expected one of {WINDOW_METHODS} or None, got {method!r}")
    return method


def shifted(a: jnp.ndarray, offset: int, length: int, axis: int) -> jnp.ndarray:
    """a[..., offset:offset + length, ...] along axis.

    A plain slice along the last (contiguous) axis; along another axis the slice is taken with that axis moved to
    the front. In these forms XLA:CPU fuses each separable pass into one loop; plain slices of an inner axis let its
    elementwise fusion split the pass into many materialised arrays (`local_moments` 4x slower at 1024 x 1024).
    """
    if axis == a.ndim - 1:
        return lax.slice_in_dim(a, offset, offset + length, axis=axis)
    return jnp.moveaxis(jnp.moveaxis(a, axis, 0)[offset : offset + length], 0, axis)
