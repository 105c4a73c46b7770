"""`train_and_evaluate(config, workdir)`: the GAN-SR training job behind `python -m experiments.main` (configs/mse,
ragan, ragp, ragp_fft, realesrnet, realesrgan).

Loads the config's images and runs `desra_jax.training.sr_job.train_sr` (its docstring describes the phase and,
through `loop.train_loop`, the workdir layout) with the settings `configs.arguments` makes of the config. A GAN
config without `init_from` runs its `pretrain` phase (the MSE-SR model) in `<workdir>/pretrain` first and starts
from its result.
"""

from __future__ import annotations

import os

from configs import arguments
from desra_jax.data import sr_pairs, tfds_source
from desra_jax.data.bundled import bundled_photograph
from desra_jax.training import loop, sharding
from desra_jax.training.sr_job import train_sr


def load_images(config):
    """(train, val, train_lr): lists of (name, HR image), and the LR partner of each training image or None
    (LR made by bicubic_downsample). The bundled photographs unless folders or a tfds builder are given."""
    if config.data.source == "tfds":
        train, train_lr = tfds_source.load_split(config.data.tfds_name, "train", config.data.tfds_data_dir)
        # Validation makes its LR from the HR, as for folders, so that scores compare across sources.
        val, _ = tfds_source.load_split(config.data.tfds_name, "validation", config.data.tfds_data_dir, with_lr=False)
        return train, val, train_lr
    train, val = sr_pairs.bundled_split()
    if config.data.bundled_train:
        train = [(name, bundled_photograph(name)) for name in config.data.bundled_train]
    if config.data.bundled_val:
        val = [(name, bundled_photograph(name)) for name in config.data.bundled_val]
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
    return train_sr(arguments.sr_training(config, mesh), *load_images(config), workdir, init_from, mesh)
