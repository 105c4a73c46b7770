"""The sharding helper as the training code reaches it: `desra_jax.sharding`, which sits below both training and
inference."""

from desra_jax.sharding import batch_sharding, data_mesh, put_batch, replicated

__all__ = ["batch_sharding", "data_mesh", "put_batch", "replicated"]
