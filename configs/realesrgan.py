"""Real-ESRGAN's GAN stage (Wang et al., ICCVW 2021, sec. 4; train_realesrgan_x4plus.yml), from a Real-ESRNet model.

L1 1.0 and perceptual 1.0 (VGG19 conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 before activation, weighted 0.1, 0.1,
1, 1, 1, L1 criterion), both against the USM-sharpened GT, and the vanilla GAN loss 0.1 against the U-Net
discriminator with spectral norm, which sees the GT as it is. Adam 1e-4 (0.9, 0.99), 400k iterations, EMA 0.999,
HR patch 256, 48 in all, the same on-device degradation and pair pool as Real-ESRNet.

Without `init_from` the Real-ESRNet stage (configs/realesrnet.py, same variant) runs first in `<workdir>/pretrain`.
The perceptual term needs ImageNet VGG19 weights (`loss.vgg19`); the tiny variant trains without it.
"""

from configs import common, realesrnet
from desra_jax.losses import REAL_ESRGAN_LAYER_WEIGHTS


def get_config(arg: str | None = None):
    config = common.base_config("realesrgan")
    config.phase = "gan"
    config.degradation = common.realesrgan_degradation()
    config.discriminator.kind = "unet"
    config.data.update(hr_patch=256, batch_size=48)
    config.train.update(num_steps=400_000, learning_rate=1e-4, milestones=(400_000,), ema_decay=0.999)
    config.loss.update(pixel_kind="l1", pixel_weight=1.0, perceptual="vgg", perceptual_weight=1.0,
                       perceptual_criterion="l1", gan_kind="gan", gan_weight=0.1)
    config.loss.perceptual_layers = dict(REAL_ESRGAN_LAYER_WEIGHTS)
    config.pretrain = realesrnet.get_config(arg)
    common.apply_variant(config, arg)
    if config.variant == "tiny":
        realesrnet.tiny_degradation(config)
    return config
