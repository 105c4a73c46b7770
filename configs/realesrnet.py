"""Real-ESRNet: the MSE-SR stage of Real-ESRGAN (Wang et al., ICCVW 2021, sec. 3-4; train_realesrnet_x4plus.yml).

RRDBNet x4 trained with L1 on pairs made by Real-ESRGAN's second-order degradation, on the device inside the step
(desra_jax.data.realesrgan_degrade, with the released settings); the L1 target is the USM-sharpened GT (gt_usm).
Released: HR patch 256, batch 12 on each of 4 GPUs (48 in all; `data.batch_size` here is the global batch), Adam
2e-4 (0.9, 0.99), 1000k iterations, EMA 0.999, the pair pool of 180, started from ESRGAN's PSNR model
(`init_from`).

This is also how to make the MSE-SR partner of a real-world GAN-SR model you hold (DeSRA needs one of the same
input): `--config.init_from=RealESRGAN_x4plus.pth` (or `realesrgan-x4plus`) and fine-tune with L1 on the same
degradation; the result is the PSNR-oriented model of that network.
"""

from configs import common


def get_config(arg: str | None = None):
    config = common.base_config("realesrnet")
    config.phase = "pixel"
    config.degradation = common.realesrgan_degradation()
    config.data.update(hr_patch=256, batch_size=48)
    config.train.update(num_steps=1_000_000, learning_rate=2e-4, milestones=(1_000_000,), ema_decay=0.999)
    config.loss.pixel_kind = "l1"
    common.apply_variant(config, arg)
    if config.variant == "tiny":
        tiny_degradation(config)
        config.train.update(num_steps=200, eval_every=200, checkpoint_every=100)
    return config


def tiny_degradation(config) -> None:
    """The degradation at the tiny sizes: 96-pixel HR patches (room for the second stage's 21-tap kernels after a
    x0.15 first resize) and a pool of two batches."""
    config.data.hr_patch = 96
    config.degradation.queue_size = 2 * config.data.batch_size
