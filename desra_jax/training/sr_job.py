"""One phase of GAN-SR training (ESRGAN's pixel pretraining or its GAN phase, Real-ESRNet / Real-ESRGAN with the
on-device degradation), from plain settings: `train_sr`. The data are patches of the training images
(`data.sr_pairs.PatchSampler`), the step the jitted SR step (`steps.sr_train_step`), the validation the EMA
generator on whole images (`evaluation.evaluate_sr`), and the loop `loop.train_loop`, whose docstring gives the
workdir layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
from absl import logging

from desra_jax.data import sr_pairs
from desra_jax.data.degradations import pair_pool_init
from desra_jax.training import evaluation, loop, sharding
from desra_jax.training.state import run_keys, sr_states


@dataclasses.dataclass(frozen=True)
class SRTraining:
    """How a phase trains: the jitted `step` (states, batch, key) -> (states, metrics), the `optimizer` of its
    networks, the loop's `schedule`, `generator(path) -> (module, params)` (the model at `path`, or for "" a fresh
    one from the initialisation key given), `discriminator(path) -> (module, variables)` (None: the pixel phase,
    no discriminator), the patch sampler's settings, whether the step makes the LR itself (`degrading`, with a
    training-pair pool of `queue_size`, 0: none), and the validation's tiles and sample count."""

    step: Callable
    optimizer: object
    schedule: loop.Schedule
    generator: Callable[[str, object], tuple]
    discriminator: Callable[[str], tuple] | None
    hr_patch: int
    scale: int
    batch_size: int
    seed: int
    degrading: bool = False
    queue_size: int = 0
    eval_tile: int = 256
    eval_overlap: int = 32
    eval_num_samples: int = 2
    name: str = "sr"
    prefetch: int = 2


def initial_states(settings: SRTraining, init_from: str, init_key, mesh) -> tuple:
    """(generator module, discriminator module or None, replicated train states) of a phase starting from
    `init_from` ("": a fresh generator from `init_key`)."""
    generator, g_params = settings.generator(init_from, init_key)
    discriminator, d_variables = settings.discriminator("") if settings.discriminator else (None, None)
    states = sr_states(generator, g_params, settings.optimizer, discriminator, d_variables)
    if settings.degrading and settings.queue_size:
        lr_patch = settings.hr_patch // settings.scale
        states["pool"] = pair_pool_init(settings.queue_size, (lr_patch, lr_patch, 3),
                                        (settings.hr_patch, settings.hr_patch, 3))
    return generator, discriminator, jax.device_put(states, sharding.replicated(mesh))


def train_sr(settings: SRTraining, train_images, val_images, train_lr, workdir: str, init_from: str, mesh) -> dict:
    """Trains one phase to `settings.schedule.num_steps` in the prepared `workdir` (`loop.prepare_workdir`),
    resuming from its latest checkpoint, on the (name, HR) `train_images` (with their LR partners `train_lr`, or
    None: LR by bicubic downsampling or by the step's degradation), validated on the (name, HR) `val_images`.
    Writes model/ (the EMA generator) and, in the GAN phase, discriminator/. Returns the final validation
    summary."""
    init_key, _, step_key = run_keys(settings.seed)
    sampler = sr_pairs.PatchSampler(
        train_images, hr_patch=settings.hr_patch, scale=settings.scale, batch_size=settings.batch_size,
        seed=settings.seed, process_index=jax.process_index(), process_count=jax.process_count(), lr_images=train_lr,
        with_lr=not settings.degrading,
    )
    val_pairs = evaluation.validation_pairs(val_images, settings.scale)
    generator, discriminator, states = initial_states(settings, init_from, init_key, mesh)

    def evaluate(states, step):
        del step
        return evaluation.evaluate_sr(generator, states["generator"].ema_params, val_pairs, settings.scale,
                                      tile=settings.eval_tile, overlap=settings.eval_overlap,
                                      num_samples=settings.eval_num_samples)

    states, summary = loop.train_loop(workdir, states, sampler.batch, settings.step, evaluate, step_key, mesh,
                                      settings.schedule, name=settings.name, prefetch=settings.prefetch)
    models = {"model": (generator, states["generator"].ema_params, {})}
    if discriminator is not None:
        d_state = states["discriminator"]
        models["discriminator"] = (discriminator, d_state.params, d_state.model_state)
    loop.save_final_models(workdir, models)
    logging.info("%s: finished %s at step %d; model in %s/model", workdir, settings.name,
                 settings.schedule.num_steps, workdir)
    return summary

