"""The slides' headline model: RaGP + FFT loss (weight 0.3) + perceptual + L1.

Without `init_from`, the MSE-SR pretraining (configs/mse.py, same variant) runs first in the same workdir and
the GAN stage starts from its result.
"""

from configs import common, mse


def get_config(arg: str | None = None):
    config = common.base_config("ragp_fft")
    config.phase = "gan"
    config.loss.gan_kind = "rasgan"
    config.loss.gradient_penalty_weight = 10.0
    config.loss.fft_weight = 0.3
    config.pretrain = mse.get_config(arg)
    return common.apply_variant(config, arg)
