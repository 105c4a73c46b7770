"""`train_and_evaluate(config, workdir)`: the GAN-SR training job behind `python -m experiments.main` (configs/mse,
ragan, ragp, ragp_fft).

Turns the config into the library's arguments: data (`desra_jax.data`), models, train states, the jitted step
sharded over every device (`desra_jax.training.steps`), the validation (`desra_jax.training.evaluation`), and runs
`desra_jax.training.loop.train_loop`, whose docstring gives the workdir layout. A GAN config without `init_from`
runs its `pretrain` phase (the MSE-SR model) in `<workdir>/pretrain` first and starts from its result.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from configs import arguments
from desra_jax.convert.registry import load_generator
from desra_jax.data import sr_pairs, tfds_source
from desra_jax.data.degradations import pair_pool_init
from desra_jax.models import RRDBNet
from desra_jax.models.discriminators import make_discriminator
from desra_jax.training import evaluation, loop, sharding
from desra_jax.training.state import sr_states


def load_images(config):
    """(train, val, train_lr): lists of (name, HR image), and the LR partner of each training image or None
    (LR made by bicubic_downsample). The bundled photographs unless folders or a tfds builder are given."""
    if config.data.source == "tfds":
        train, train_lr = tfds_source.load_split(config.data.tfds_name, "train", config.data.tfds_data_dir)
        # Validation makes its LR from the HR, as for folders, so that scores compare across sources.
        val, _ = tfds_source.load_split(config.data.tfds_name, "validation", config.data.tfds_data_dir, with_lr=False)
        return train, val, train_lr
    train, val = sr_pairs.bundled_split()
    if config.data.train_dir:
        train = sr_pairs.load_folder(config.data.train_dir)
    if config.data.val_dir:
        val = sr_pairs.load_folder(config.data.val_dir)
    return train, val, None


def train_and_evaluate(config, workdir: str, mesh=None) -> dict:
    """Run every phase of `config` in `workdir` (resuming where a previous run stopped) on `mesh` (all devices
    by default); returns the final validation summary of the last phase."""
    mesh = mesh or sharding.data_mesh()
    init_from = config.init_from
    if config.phase == "gan" and not init_from:
        pretrain_dir = os.path.join(workdir, "pretrain")
        train_and_evaluate(config.pretrain, pretrain_dir, mesh)
        init_from = os.path.join(pretrain_dir, "model")
    return run_phase(config, workdir, init_from, mesh)


def run_phase(config, workdir: str, init_from: str = "", mesh=None) -> dict:
    """Train one phase (pixel or GAN) to `config.train.num_steps`, resuming from the latest checkpoint."""
    mesh = mesh or sharding.data_mesh()
    workdir = loop.prepare_workdir(workdir, config.to_json_best_effort())
    outputs = ("model",) if config.phase == "pixel" else ("model", "discriminator")
    if (summary := loop.finished_summary(workdir, config.train.num_steps, outputs)) is not None:
        return summary
    init_key, disc_key, step_key = jax.random.split(jax.random.key(config.seed), 3)

    train_images, val_images, train_lr = load_images(config)
    degrading = bool(len(config.degradation))
    sampler = sr_pairs.PatchSampler(
        train_images, hr_patch=config.data.hr_patch, scale=config.scale, batch_size=config.data.batch_size,
        seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count(), lr_images=train_lr,
        with_lr=not degrading,
    )
    val_pairs = evaluation.validation_pairs(val_images, config.scale)

    if init_from:
        generator, g_params = load_generator(init_from, **arguments.generator_settings(config))
    else:
        generator = RRDBNet(**arguments.generator_settings(config))
        lr_patch = config.data.hr_patch // config.scale
        g_params = generator.init(init_key, np.zeros((1, lr_patch, lr_patch, 3), np.float32))["params"]
    discriminator, d_variables = None, None
    if config.phase == "gan":
        discriminator = make_discriminator(config.discriminator.kind, config.discriminator.num_feat,
                                           config.data.hr_patch)
        hr = np.zeros((1, config.data.hr_patch, config.data.hr_patch, 3), np.float32)
        d_variables = discriminator.init(disc_key, hr, train=False)
    states = sr_states(generator, g_params, arguments.optimizer(config), discriminator, d_variables)
    if degrading and config.degradation.queue_size:
        lr_patch = config.data.hr_patch // config.scale
        states["pool"] = pair_pool_init(config.degradation.queue_size, (lr_patch, lr_patch, 3),
                                        (config.data.hr_patch, config.data.hr_patch, 3))
    states = jax.device_put(states, sharding.replicated(mesh))

    def evaluate(states, step):
        del step
        return evaluation.evaluate_sr(generator, states["generator"].ema_params, val_pairs, config.scale,
                                      tile=config.eval.tile, overlap=config.eval.overlap,
                                      num_samples=config.eval.num_samples)

    states, summary = loop.train_loop(workdir, states, sampler.batch, arguments.train_step(config, mesh), evaluate,
                                      step_key, mesh, arguments.schedule(config), name=config.name,
                                      prefetch=config.data.prefetch)
    models = {"model": (generator, states["generator"].ema_params, {})}
    if discriminator is not None:
        d_state = states["discriminator"]
        models["discriminator"] = (discriminator, d_state.params, d_state.model_state)
    loop.save_final_models(workdir, models)
    logging.info("%s: finished %s at step %d; model in %s/model", workdir, config.name, config.train.num_steps, workdir)
    return summary
