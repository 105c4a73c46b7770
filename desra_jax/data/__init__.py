"""Image I/O, datasets, degradations and host-to-device feeding."""

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample, imresize
from desra_jax.data.mask_pairs import MaskPatchSampler, load_mask_pairs, pair_mask_files
