"""GAN-like SR pairs with known artifact regions, made from real photographs: the generator lives in the library
(desra_jax/data/synthetic.py, the localizer's default data); tests and benchmarks import it from here."""

from desra_jax.data.synthetic import synthetic_batch, synthetic_pair

__all__ = ["synthetic_batch", "synthetic_pair"]
