"""The one sharding helper: a 1-D `data` mesh over every device, batch split on it, the rest replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices=None) -> Mesh:
    """A mesh with a single `data` axis over `devices` (all devices of all processes by default)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays split on their leading (batch) axis across the `data` axis."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    """Arrays held whole on every device (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def put_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble the global batch from this process's slice of it, sharded on the batch axis.

    Each process passes the rows it produced (its contiguous slice of the global batch, as
    `sr_pairs.PatchSampler(process_index=...)` makes them); with one process this is a plain sharded device_put.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
