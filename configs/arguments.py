"""The one place where configs become the library's arguments (a ConfigDict stops here): the loop's schedule, the
optimizer, the generator's fields, the discriminator, the degradation, the GAN losses and the jitted SR step, the
detector, the localizer's network, and the settings of each job (`sr_job.SRTraining`, `finetune.FineTuning`,
`desra_job.DeSRAData`, `localizer_job.LocalizerTraining`)."""

from collections.abc import Callable

import jax
import numpy as np

from desra_jax.convert.registry import load_discriminator, load_generator, load_vgg19
from desra_jax.data.degradations import RealESRGANSettings
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.metrics.lpips import LPIPS
from desra_jax.models import DeepLabV3Plus, RRDBNet
from desra_jax.models.discriminators import make_discriminator
from desra_jax.training import loop, sharding
from desra_jax.training.desra_job import DeSRAData
from desra_jax.training.finetune import FineTuning
from desra_jax.training.localizer_job import LocalizerTraining
from desra_jax.training.sr_job import SRTraining
from desra_jax.training.state import adam, run_keys
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


def generator(config) -> Callable[[str, object], tuple]:
    """`(path, key) -> (module, params)`: the generator at `path` (any format `load_generator` reads, with the
    config's fields) or, for "", a fresh RRDBNet of `generator_settings` initialised from `key`."""

    def make(path: str, key):
        if path:
            return load_generator(path, **generator_settings(config))
        module = RRDBNet(**generator_settings(config))
        lr_patch = config.data.hr_patch // config.scale
        return module, module.init(key, np.zeros((1, lr_patch, lr_patch, 3), np.float32))["params"]

    return make


def discriminator(config) -> Callable[[str], tuple]:
    """`path -> (module, variables)`: the discriminator at `path` (a model directory or BasicSR net_d .pth) or, for
    "", a fresh one of `config.discriminator` for `data.hr_patch` patches, initialised from `config.seed`'s
    discriminator key (`state.run_keys`)."""

    def make(path: str):
        if path:
            return load_discriminator(path)
        patch = config.data.hr_patch
        module = make_discriminator(config.discriminator.kind, config.discriminator.num_feat, patch)
        return module, module.init(run_keys(config.seed)[1], np.zeros((1, patch, patch, 3), np.float32), train=False)

    return make


def degradation(config) -> Degradation | None:
    """The on-device degradation of `config.degradation` (None when the block is empty: LR by bicubic
    downsampling on the host)."""
    if not len(config.degradation):
        return None
    return Degradation(RealESRGANSettings.of(config.degradation.to_dict()))


#: The keys of `config.loss` that say where the perceptual network comes from, not how the losses weigh.
PERCEPTUAL_NETWORK_KEYS = ("vgg19", "lpips_weights", "lpips_backbone", "lpips_net")


def gan_losses(config) -> GanLosses:
    """The generator and discriminator losses of `config.loss`."""
    return GanLosses(**{k: v for k, v in config.loss.items() if k not in PERCEPTUAL_NETWORK_KEYS})


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
    """The jitted step of `config.phase` over `mesh`, with the GAN phase's perceptual network, the config's
    degradation and the generator's EMA decay."""
    common = dict(ema_decay=config.train.ema_decay, degradation=degradation(config))
    if config.phase == "pixel":
        return sr_train_step(mesh, pixel_kind=config.loss.pixel_kind, **common)
    losses = gan_losses(config)
    network, params = perceptual_network(config, losses)
    params = jax.device_put(params, sharding.replicated(mesh))
    return sr_train_step(mesh, losses=losses, perceptual_net=network, perceptual_params=params,
                         discriminator_warmup=config.train.discriminator_warmup, **common)


def detector(config) -> Detector:
    """DeSRA's detection of `config.detection`, with its semantic adjustment."""
    return Detector.from_settings(DetectionSettings.from_values(config.detection))


def fine_tuning(config, mesh) -> FineTuning:
    """How a DeSRA fine-tuning of `config` trains (its GAN step over `mesh`)."""
    return FineTuning(step=train_step(config, mesh), optimizer=optimizer(config), discriminator=discriminator(config),
                      schedule=schedule(config), hr_patch=config.data.hr_patch, scale=config.scale,
                      batch_size=config.data.batch_size, seed=config.seed, name=config.name,
                      prefetch=config.data.prefetch)


def desra_data(config, lr_dir: str, eval_lr_dir: str, eval_hr_dir: str, lpips_fn=None) -> DeSRAData:
    """The DeSRA job's images (the folders given: the config's or those made from the bundled photographs)."""
    return DeSRAData(lr_dir=lr_dir, num_images=config.data.num_images, feather=config.detection.feather,
                     eval_lr_dir=eval_lr_dir, eval_mask_dir=config.data.eval_mask_dir or None,
                     eval_hr_dir=eval_hr_dir or None, crop_border=config.scale, lpips_fn=lpips_fn,
                     discriminator_from=config.discriminator_from)


def sr_training(config, mesh) -> SRTraining:
    """How a phase of SR training of `config` trains (its step over `mesh`)."""
    degrading = bool(len(config.degradation))
    return SRTraining(step=train_step(config, mesh), optimizer=optimizer(config), schedule=schedule(config),
                      generator=generator(config),
                      discriminator=discriminator(config) if config.phase == "gan" else None,
                      hr_patch=config.data.hr_patch, scale=config.scale, batch_size=config.data.batch_size,
                      seed=config.seed, degrading=degrading,
                      queue_size=config.degradation.queue_size if degrading else 0, eval_tile=config.eval.tile,
                      eval_overlap=config.eval.overlap, eval_num_samples=config.eval.num_samples, name=config.name,
                      prefetch=config.data.prefetch)


def localizer_model(config) -> DeepLabV3Plus:
    """The DeepLabV3+ of `config.model`."""
    return DeepLabV3Plus(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()})


def localizer_training(config) -> LocalizerTraining:
    """How the localizer of `config` trains."""
    return LocalizerTraining(optimizer=optimizer(config), schedule=schedule(config),
                             loss_weights=tuple(config.loss.items()), patch=config.data.patch,
                             batch_size=config.data.batch_size, seed=config.seed, init_backbone=config.init_backbone,
                             threshold=config.eval.threshold, p=config.eval.p, max_size=config.eval.max_size,
                             num_samples=config.eval.num_samples, name=config.name, prefetch=config.data.prefetch)
