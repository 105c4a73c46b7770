"""The one place where the blocks that configs share become the library's arguments (a ConfigDict stops here):
the loop's schedule, the generator's fields, the GAN losses, the optimizer and the jitted SR step."""

import jax

from desra_jax.convert.registry import load_vgg19
from desra_jax.metrics.lpips import LPIPS
from desra_jax.training import loop, sharding
from desra_jax.training.state import adam
from desra_jax.training.steps import Degradation, GanLosses, sr_train_step


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



#: The keys of `config.loss` that say where the perceptual network comes from, not how the losses weigh.
PERCEPTUAL_NETWORK_KEYS = ("vgg19", "lpips_weights", "lpips_backbone", "lpips_net")


def gan_losses(config) -> GanLosses:
    """The generator and discriminator losses of `config.loss`."""
    weights = {k: v for k, v in config.loss.items() if k not in PERCEPTUAL_NETWORK_KEYS}
    return GanLosses(ema_decay=config.train.ema_decay, **weights)


def perceptual_network(config, losses: GanLosses):
    """(module, params) of the perceptual loss: VGG19Features of the loss's layers from `loss.vgg19`, or LPIPS from
    `loss.lpips_weights` and `loss.lpips_backbone`; (None, None) without a perceptual term."""
    if not losses.perceptual_weight:
        return None, None
    if losses.perceptual == "lpips":
        from desra_jax.convert import load_lpips

        _, params = load_lpips(config.loss.lpips_weights, config.loss.lpips_backbone, config.loss.lpips_net)
        return LPIPS(config.loss.lpips_net), params
    return load_vgg19(config.loss.vgg19, tuple(dict(losses.perceptual_layers)))


def train_step(config, mesh):
    """The jitted step of `config.phase` over `mesh`, with the GAN phase's perceptual network and the config's
    degradation."""
    degradation = Degradation.of(config.degradation) if len(config.degradation) else None
    if config.phase == "pixel":
        return sr_train_step(mesh, pixel_kind=config.loss.pixel_kind, ema_decay=config.train.ema_decay,
                             degradation=degradation)
    losses = gan_losses(config)
    network, params = perceptual_network(config, losses)
    params = jax.device_put(params, sharding.replicated(mesh))
    return sr_train_step(mesh, losses=losses, perceptual_net=network, perceptual_params=params,
                         degradation=degradation, discriminator_warmup=config.train.discriminator_warmup)
