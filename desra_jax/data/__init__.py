"""Image I/O, pairing files by name, datasets and degradations."""

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample, imresize
from desra_jax.data.mask_pairs import MaskPatchSampler, load_mask_pairs, pair_mask_files
