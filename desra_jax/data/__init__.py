"""Image I/O, pairing files by name, datasets and degradations."""

from desra_jax.data.degradations import (
    RealESRGANSettings,
    bicubic_downsample,
    bicubic_upsample,
    imresize,
    pair_pool_init,
    pair_pool_update,
    realesrgan_degrade,
    realesrgan_settings,
    usm_sharp,
)
from desra_jax.data.mask_pairs import MaskPatchSampler, load_mask_pairs, pair_mask_files
