"""Image I/O, datasets, degradations and host-to-device feeding."""

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample, imresize
