"""RaGP of the slides: RaGAN for the generator, RaGAN + a WGAN-GP gradient penalty (lambda 10) for the
discriminator, with ESRGAN's other losses and schedule."""

from configs import common


def get_config(arg: str | None = None):
    config = common.base_config("ragp")
    config.phase = "gan"
    config.loss.gan_kind = "rasgan"
    config.loss.gradient_penalty_weight = 10.0
    return common.apply_variant(config, arg)
