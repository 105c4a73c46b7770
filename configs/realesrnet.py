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

import ml_collections

from configs import common


def get_config(arg: str | None = None):
    config = common.base_config("realesrnet")
    config.phase = "pixel"
    config.degradation = common.realesrgan_degradation()
    config.data.update(hr_patch=256, batch_size=48)
    config.train.update(num_steps=1_000_000, learning_rate=2e-4, milestones=(1_000_000,), ema_decay=0.999)
    config.loss.pixel_kind = "l1"
    common.apply_variant(config, arg, own=("partner",))
    if config.variant == "partner":
        partner(config)
    if config.variant == "tiny":
        tiny_degradation(config)
        config.train.update(num_steps=200, eval_every=200, checkpoint_every=100)
    return config


def tiny_degradation(config) -> None:
    """The degradation at the tiny sizes: 96-pixel HR patches (room for the second stage's 21-tap kernels after a
    x0.15 first resize) and a pool of two batches."""
    config.data.hr_patch = 96
    config.degradation.queue_size = 2 * config.data.batch_size


#: The bundled photographs that the DeSRA partner never trains on (configs/desra_finetune.py:cpu's held-out set).
PARTNER_HELD_OUT = ("chelsea", "motorcycle")


def partner(config) -> None:
    """The MSE-SR partner of Real-ESRGAN x4plus for DeSRA on real-world input (`realesrnet-span-x4`): SPAN x4
    (`spanx4_ch48`, trained on bicubic LR) fine-tuned with L1 on x4plus's second-order degradation, on the bundled
    photographs less `PARTNER_HELD_OUT`, sized for 2 CPU cores. The L1 target is the GT as it is, not its USM
    sharpening: the partner is the PSNR reference against HR."""
    from desra_jax.data.bundled import MORE_PHOTOGRAPH_NAMES, PHOTOGRAPH_NAMES

    config.init_from = "spanx4_ch48"
    config.model = ml_collections.ConfigDict()  # SPAN's fields come from the model it starts from
    config.data.bundled_train = tuple(n for n in PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES if n not in PARTNER_HELD_OUT)
    config.data.bundled_val = PARTNER_HELD_OUT
    config.data.update(hr_patch=128, batch_size=8)
    config.degradation.update(queue_size=4 * config.data.batch_size, l1_gt_usm=False)
    config.train.update(num_steps=4000, learning_rate=2e-4, milestones=(3000,), ema_decay=0.999, eval_every=2000,
                        checkpoint_every=250, log_every=50)
    config.eval.update(tile=128, overlap=16)
