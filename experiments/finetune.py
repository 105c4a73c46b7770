"""`run_finetune(config, workdir)`: the DeSRA fine-tuning job behind
`python -m experiments.main --config=configs/desra_finetune.py` (sections 3.3 and 4.3 of the paper).

Loads the two models and the detector of the config, and runs `desra_jax.training.desra_job.run_desra` (its
docstring describes the steps and the workdir) with the settings `configs.arguments` makes of the config. With
`data.bundled.degradation` set, first writes the LR sets made from the bundled photographs to `data/`;
`config.online=True` runs the continual loop in `workdir/online` instead.
"""

from __future__ import annotations

import os

from absl import logging

from configs import arguments
from desra_jax.convert.registry import load_generator
from desra_jax.data.bundled import write_lr_sets
from desra_jax.inference import Upscaler
from desra_jax.tools.evaluate import lpips_function
from desra_jax.training import loop, sharding
from desra_jax.training.desra_job import run_desra
from desra_jax.training.desra_sets import DeSRAModels
from desra_jax.training.online import Online


def data_folders(config, workdir: str) -> tuple[str, str, str]:
    """(fine-tuning LR, held-out LR, held-out HR or "") folders: the config's `data.lr_dir`, `eval_lr_dir` and
    `eval_hr_dir`; with `data.bundled.degradation`, a set not given is made from the bundled photographs by
    `write_lr_sets` in `workdir/data` (the bundled held-out HR only beside the bundled held-out LR)."""
    bundled, data = config.data.bundled, config.data
    if not bundled.degradation or (data.lr_dir and data.eval_lr_dir):
        return data.lr_dir, data.eval_lr_dir, data.eval_hr_dir
    sets = {"fine_tune": bundled.fine_tune, "held_out": bundled.held_out}
    folders = write_lr_sets(os.path.join(workdir, "data"), sets, config.scale, bundled.degradation, bundled.seed,
                            bundled.crop)
    if data.eval_lr_dir:
        return folders["fine_tune_lr"], data.eval_lr_dir, data.eval_hr_dir
    return data.lr_dir or folders["fine_tune_lr"], folders["held_out_lr"], data.eval_hr_dir or folders["held_out_hr"]


def load_models(config) -> DeSRAModels:
    """The GAN-SR model to fine-tune (`init_from`), its MSE-SR partner (`mse_model`: any MSE-SR model of the same
    scale, an RRDBNet such as RealESRNet_x4plus or another network such as SPAN) and the detector."""
    tile, overlap = config.eval.tile, config.eval.overlap
    gan = Upscaler(*load_generator(config.init_from, **arguments.generator_settings(config)), tile, overlap)
    mse = Upscaler(*load_generator(config.mse_model, scale=config.scale), tile, overlap)
    logging.info("GAN-SR model %s (%s), MSE-SR partner %s (%s)", config.init_from, type(gan.module).__name__,
                 config.mse_model, type(mse.module).__name__)
    return DeSRAModels(gan, mse, arguments.detector(config), (config.init_from, config.mse_model))


def run_finetune(config, workdir: str, mesh=None) -> dict:
    """The whole job (module docstring); resumes where a previous run stopped. Returns the final held-out
    summary."""
    mesh = mesh or sharding.data_mesh()
    workdir = loop.prepare_workdir(workdir, config.to_json_best_effort())
    if (summary := loop.finished_summary(workdir, config.train.num_steps, ("model", "discriminator"))) is not None:
        return summary
    models = load_models(config)
    lpips_fn = lpips_function(config.eval.lpips_weights, config.eval.lpips_backbone, config.eval.lpips_net)
    data = arguments.desra_data(config, *data_folders(config, workdir), lpips_fn=lpips_fn)
    online = Online(**config.online_settings) if config.online else None
    return run_desra(arguments.fine_tuning(config, mesh), data, models, workdir, mesh, online)
