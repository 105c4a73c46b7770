"""Losses: pure functions returning batch-mean scalars, jit-safe."""

from desra_jax.losses.adversarial import (
    ADVERSARIAL_KINDS,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)
from desra_jax.losses.frequency import fft_loss, power_spectrum_1d, spectral_loss, spectrum_discrepancy
from desra_jax.losses.perceptual import ESRGAN_LAYER_WEIGHTS, REAL_ESRGAN_LAYER_WEIGHTS, perceptual_loss
from desra_jax.losses.pixel import charbonnier_loss, l1_loss, l2_loss
from desra_jax.losses.segmentation import binary_cross_entropy_with_logits, segmentation_loss, soft_dice_loss
