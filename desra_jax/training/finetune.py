"""DeSRA fine-tuning (sections 3.3 and 4.3 of the paper): `fine_tune` trains the GAN-SR model on (LR, pseudo-GT)
patches with the shared loop (checkpoints, resume), evaluates it on the held-out set (`desra_sets.HeldOut`) and
writes the report (`report.write_finetune_report`: LR | before | after | MSE-SR | HR). The sets are made in
`desra_sets`, the continual form in `online`, and `run_desra` is the whole job.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import numpy as np

from desra_jax import report
from desra_jax.data.sr_pairs import PatchSampler
from desra_jax.inference import Upscaler
from desra_jax.training import loop, sharding
from desra_jax.training.desra_sets import HeldOut
from desra_jax.training.evaluation import Evaluation
from desra_jax.training.state import run_keys, sr_states


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """How a fine-tuning run trains: the jitted `step` (states, batch, key) -> (states, metrics) of the GAN losses,
    the `optimizer` of both networks, the patch sampler's settings, the loop's `schedule`, and `discriminator(path)
    -> (module, variables)`, which continues the discriminator at `path` or, for "", makes a fresh one."""

    step: Callable
    optimizer: object
    discriminator: Callable[[str], tuple]
    schedule: loop.Schedule
    hr_patch: int
    scale: int
    batch_size: int
    seed: int
    name: str = "desra_finetune"
    prefetch: int = 2


def fine_tune(settings: FineTuning, workdir: str, gan: Upscaler, pairs: list[tuple[str, np.ndarray, np.ndarray]],
              held_out: HeldOut, discriminator_from: str, mesh, problems=()) -> dict:
    """Steps 2 and 3: fine-tunes `gan` on (name, LR, pseudo-GT) `pairs` in `workdir` (resumable), evaluates on
    the held-out set, writes the report and model/ + discriminator/. `problems` (the input files skipped, by
    name) go into each evaluation's file. Returns the final held-out summary."""
    if (summary := loop.finished_summary(workdir, settings.schedule.num_steps, ("model", "discriminator"))) is not None:
        return summary
    discriminator, d_variables = settings.discriminator(discriminator_from)
    states = sr_states(gan.module, gan.params, settings.optimizer, discriminator, d_variables)
    states = jax.device_put(states, sharding.replicated(mesh))
    sampler = PatchSampler(
        [(name, target) for name, _, target in pairs], hr_patch=settings.hr_patch, scale=settings.scale,
        batch_size=settings.batch_size, seed=settings.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), lr_images=[lr for _, lr, _ in pairs],
    )
    last = {}

    def evaluate(states, step):
        del step
        tuned = dataclasses.replace(gan, params=states["generator"].ema_params)
        last["after"] = held_out.detect_with(tuned)
        summary, details = held_out.evaluate(last["after"])
        last["rates_against"] = details["rates_against"]
        return Evaluation(summary, {**details, "train_images": [p[0] for p in pairs], "problems": list(problems)})

    states, summary = loop.train_loop(workdir, states, sampler.batch, settings.step, evaluate,
                                      run_keys(settings.seed)[2], mesh, settings.schedule, name=settings.name,
                                      prefetch=settings.prefetch)
    if jax.process_index() == 0:
        items = held_out.items
        report.write_finetune_report(os.path.join(workdir, "report"), [item["name"] for item in items],
                                     held_out.before, last["after"], held_out.mse_results, summary,
                                     last["rates_against"], [item["lr"] for item in items],
                                     [item.get("hr") for item in items])
    d_state = states["discriminator"]
    loop.save_final_models(workdir, {"model": (gan.module, states["generator"].ema_params, {}),
                                     "discriminator": (discriminator, d_state.params, d_state.model_state)})
    return summary
