"""The one place where the blocks that configs share become the library's arguments (a ConfigDict stops here):
the loop's schedule, the generator's fields, the GAN losses, the optimizer and the jitted SR step."""

import jax

from desra_jax.training import checkpoints, loop, sharding
from desra_jax.training.state import adam
from desra_jax.training.steps import GanLosses, sr_train_step


def schedule(config) -> loop.Schedule:
    """`config.train`'s step counts."""
    train = config.train
    return loop.Schedule(train.num_steps, train.log_every, train.eval_every, train.checkpoint_every,
                         train.keep_checkpoints)


def optimizer(config):
    """Adam with `config.train`'s rate and step decay."""
    return adam(config.train.learning_rate, config.train.milestones, config.train.gamma)


def generator_settings(config) -> dict:
    """The RRDBNet fields of `config.scale` and `config.model`: what a model to start from must have."""
    return dict(scale=config.scale, **config.model)


def gan_losses(config) -> GanLosses:
    """The generator and discriminator losses of `config.loss` (every key but the VGG19 weights' path)."""
    return GanLosses(ema_decay=config.train.ema_decay, **{k: v for k, v in config.loss.items() if k != "vgg19"})


def train_step(config, mesh):
    """The jitted step of `config.phase` over `mesh`; the GAN phase's perceptual loss reads `loss.vgg19`."""
    if config.phase == "pixel":
        return sr_train_step(mesh, pixel_kind=config.loss.pixel_kind, ema_decay=config.train.ema_decay)
    losses = gan_losses(config)
    vgg, vgg_params = None, None
    if losses.perceptual_weight:
        vgg, vgg_params = checkpoints.load_vgg19(config.loss.vgg19, tuple(dict(losses.perceptual_layers)))
        vgg_params = jax.device_put(vgg_params, sharding.replicated(mesh))
    return sr_train_step(mesh, losses=losses, vgg=vgg, vgg_params=vgg_params)
