"""ESRGAN's GAN stage: RaGAN (relativistic average, BCE) + VGG conv5_4 perceptual + L1 (ESRGAN sec. 3, 4.1).

L_G = L_percep + 5e-3 L_G^RaGAN + 1e-2 L_1; lr 1e-4 halved at 50k, 100k, 200k, 300k of 400k iterations;
VGG-style discriminator on 128x128 HR patches. Starts from an MSE-SR model (`init_from`).
"""

from configs import common


def get_config(arg: str | None = None):
    config = common.base_config("ragan")
    config.phase = "gan"
    config.loss.gan_kind = "rasgan"
    return common.apply_variant(config, arg)
