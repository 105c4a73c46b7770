"""Sliding windows: as sums or reductions of shifted slices (one fused, vectorised loop per pass under XLA), or as
``lax.reduce_window``; `window_method` picks one per backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

#: Formulations of the window operations of the indicator and the morphology.
WINDOW_METHODS = ("shifted", "reduce_window")

#: Operations whose formulation `window_method` chooses: the indicator's local moments, erosion and dilation.
WINDOW_OPERATIONS = ("indicator", "morphology")


def window_method(method: str | None = None, operation: str = "morphology") -> str:
    """``method``, or for None the formulation of ``operation`` for ``jax.default_backend()``.

    - CPU: 'shifted' for both, measured faster (benchmarks/detection_speed.py on XLA:CPU: reduce_window takes
      1.5x the time of shifted slices for erosion + dilation and 16-37x for the D map, whose reduce_window form
      merges (count, mean, M2) triples per box of the window).
    - GPU: 'reduce_window' for the morphology (lax.reduce_window with max / min, XLA's pooling op); 'shifted' for
      the indicator, whose reduce_window form is a variadic reduce-window, which XLA:GPU does not implement (jax's
      own tests/lax_vmap_test.py::test_variadic_reduce_window is skipped on GPU for that reason).
    - TPU and others: 'reduce_window' for both (not measured against shifted slices in this tree: the benchmark
      prints the ratio on whatever device runs it).
    """
    if operation not in WINDOW_OPERATIONS:
        raise ValueError(f"operation: expected one of {WINDOW_OPERATIONS}, got {operation!r}")
    if method is None:
        backend = jax.default_backend()
        if backend == "cpu" or (backend == "gpu" and operation == "indicator"):
            return "shifted"
        return "reduce_window"
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
