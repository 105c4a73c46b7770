"""desra-jax: GAN super-resolution (ESRGAN family), DeSRA artifact detection and deletion, in JAX/Flax.

Subpackages are imported on demand: ``from desra_jax import models, losses, convert``. Nothing here imports
torch; the converters read PyTorch checkpoints with torch only when given a ``.pth`` file.
"""

__version__ = "0.1.0"
