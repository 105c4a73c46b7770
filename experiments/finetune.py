"""`run_finetune(config, workdir)`: the DeSRA fine-tuning job behind
`python -m experiments.main --config=configs/desra_finetune.py` (sections 3.3 and 4.3 of the paper).

Turns the config into the arguments of `desra_jax.training.finetune` (its docstring describes the three steps):
the two models, the detector, the held-out set, the GAN losses' jitted step, and the discriminator to continue.
With `data.bundled.degradation` set, first writes the LR sets made from the bundled photographs to `data/`.
Writes `pseudo_gt/`, `masks/`, the loop's files (`desra_jax.training.loop`), `eval_<step>.json` and
`report/index.html` into the workdir; `config.online=True` runs the continual loop in `workdir/online` instead.
An LR file (training or held out) that cannot be read, or that detection refuses (smaller than its windows), is
logged by name, listed under `problems` in `eval_<step>.json` (and `pseudo_gt/index.json`) and skipped; the
rest run.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from configs import arguments
from desra_jax.convert.registry import load_discriminator, load_generator
from desra_jax.data.bundled import write_lr_sets
from desra_jax.data.image_io import read_image
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.inference import Upscaler
from desra_jax.tools.evaluate import lpips_function
from desra_jax.models.discriminators import make_discriminator
from desra_jax.training import finetune, loop, sharding


def discriminator_factory(config):
    """`path -> (module, variables)`: the discriminator at `path` (a model directory or BasicSR net_d .pth) or, for
    "", a fresh one of `config.discriminator` for `data.hr_patch` patches."""

    def make(path: str):
        if path:
            return load_discriminator(path)
        module = make_discriminator(config.discriminator.kind, config.discriminator.num_feat, config.data.hr_patch)
        hr = np.zeros((1, config.data.hr_patch, config.data.hr_patch, 3), np.float32)
        return module, module.init(jax.random.key(config.seed + 1), hr, train=False)

    return make


def log_problems(problems: list[str]) -> None:
    """One warning per input file that the job skipped."""
    for problem in problems:
        logging.warning("%s", problem)


def data_folders(config, workdir: str) -> tuple[str, str, str]:
    """(fine-tuning LR, held-out LR, held-out HR or "") folders: the config's, or with `data.bundled.degradation`
    the sets `write_lr_sets` makes in `workdir/data` from the bundled photographs."""
    bundled = config.data.bundled
    if not bundled.degradation:
        return config.data.lr_dir, config.data.eval_lr_dir, config.data.eval_hr_dir
    sets = {"fine_tune": bundled.fine_tune, "held_out": bundled.held_out}
    folders = write_lr_sets(os.path.join(workdir, "data"), sets, config.scale, bundled.degradation, bundled.seed,
                            bundled.crop)
    return folders["fine_tune_lr"], folders["held_out_lr"], folders["held_out_hr"]


def run_finetune(config, workdir: str, mesh=None) -> dict:
    """The whole job (module docstring); resumes where a previous run stopped. Returns the final held-out
    summary."""
    mesh = mesh or sharding.data_mesh()
    workdir = loop.prepare_workdir(workdir, config.to_json_best_effort())
    if (summary := loop.finished_summary(workdir, config.train.num_steps, ("model", "discriminator"))) is not None:
        return summary
    tile, overlap = config.eval.tile, config.eval.overlap
    expected = arguments.generator_settings(config)
    gan = Upscaler(*load_generator(config.init_from, **expected), tile, overlap)
    # Any MSE-SR model of the same scale: an RRDBNet partner (RealESRNet_x4plus) or another network (SPAN).
    mse = Upscaler(*load_generator(config.mse_model, scale=config.scale), tile, overlap)
    logging.info("GAN-SR model %s (%s), MSE-SR partner %s (%s)", config.init_from, type(gan.module).__name__,
                 config.mse_model, type(mse.module).__name__)
    detection = config.detection
    detect = Detector.from_settings(DetectionSettings.from_values(detection))
    lr_dir, eval_lr_dir, eval_hr_dir = data_folders(config, workdir)
    problems: list[str] = []  # the input files skipped, by name: logged, and kept in the evaluation files
    held_out = finetune.HeldOut.prepare(finetune.read_named_images(eval_lr_dir, problems),
                                        config.data.eval_mask_dir or None, gan, mse, detect, problems,
                                        eval_hr_dir or None, crop_border=config.scale,
                                        lpips_fn=lpips_function(config.eval.lpips_weights, config.eval.lpips_backbone,
                                                                config.eval.lpips_net))
    settings = finetune.FineTuning(
        step=arguments.train_step(config, mesh), optimizer=arguments.optimizer(config),
        discriminator=discriminator_factory(config), schedule=arguments.schedule(config),
        hr_patch=config.data.hr_patch, scale=config.scale, batch_size=config.data.batch_size, seed=config.seed,
        name=config.name, prefetch=config.data.prefetch,
    )
    if config.online:
        log_problems(problems)
        online = finetune.Online(**config.online_settings)
        return finetune.online_loop(settings, online, workdir, gan, mse, detect, held_out, detection.feather,
                                    config.discriminator_from, mesh)

    lr_images = finetune.read_named_images(lr_dir, problems)
    records = finetune.make_pseudo_gt_set(lr_images, gan, mse, detect, config.data.num_images, detection.feather,
                                          workdir, problems)
    log_problems(problems)
    lr_by_name = dict(lr_images)
    pairs = [(r["name"], lr_by_name[r["name"]], read_image(os.path.join(workdir, "pseudo_gt", f"{r['name']}.png")))
             for r in records]
    return finetune.fine_tune(settings, workdir, gan, pairs, held_out, detect, config.discriminator_from, mesh,
                              problems)
