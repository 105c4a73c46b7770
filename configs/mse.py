"""MSE-SR pretraining: the PSNR-oriented RRDBNet x4 of ESRGAN (sec. 4.1), trained with a pixel loss only.

ESRGAN pretrains with L1 (not L2), lr 2e-4 halved every 2e5 iterations, batch 16, HR patch 128; BasicSR runs it
for 1M iterations. `:tiny` runs the whole job on 2 CPU cores in a few minutes.
"""

from configs import common


def get_config(arg: str | None = None):
    config = common.base_config("mse")
    config.phase = "pixel"
    config.train.num_steps = 1_000_000
    config.train.learning_rate = 2e-4
    config.train.milestones = (200_000, 400_000, 600_000, 800_000)
    config.loss.pixel_kind = "l1"
    return common.apply_variant(config, arg)
