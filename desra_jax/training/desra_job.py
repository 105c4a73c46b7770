"""The DeSRA fine-tuning job (sections 3.3 and 4.3 of the paper), from plain settings: `run_desra`.

1. super-resolve real LR images with the GAN-SR and the MSE-SR model (whole images, tiled), detect the artifacts,
   and keep the first images with any, with their pseudo ground truth (eq. 10; `desra_sets.make_pseudo_gt_set`);
2. fine-tune the GAN-SR model on (LR, pseudo-GT) patches (`finetune.fine_tune`);
3. on held-out LR images, compare the artifacts detected before and after (`desra_sets.HeldOut`), and report.
With `online` settings, the continual loop of the paper's Discussion repeats 1-2 as LR images arrive (`online`).
A partner whose results are blockier than the GAN-SR model's inside the masks (`detection.partner`: trained on
another degradation) is warned about, naming both. An LR file that cannot be read, or that detection refuses, is
logged by name, listed under `problems` in `eval_<step>.json` (and `pseudo_gt/index.json`) and skipped; the rest
run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from absl import logging

from desra_jax.data.image_io import read_image
from desra_jax.detection.partner import partner_mismatch
from desra_jax.training.desra_sets import DeSRAModels, HeldOut, make_pseudo_gt_set, read_named_images
from desra_jax.training.finetune import FineTuning, fine_tune
from desra_jax.training.online import Online, online_loop


@dataclasses.dataclass(frozen=True)
class DeSRAData:
    """Where the job's images are and how they are used: the folder of LR images to fine-tune on and how many of
    those with artifacts to keep (`num_images`), the pseudo GT's blend edge (`feather`), the held-out LR folder
    with its labels and HR images ("" or None: none), the border PSNR/SSIM leave out, LPIPS as `lpips_fn(x, y) ->
    (N,)` (None: not measured), and the discriminator to continue ("": a fresh one)."""

    lr_dir: str
    num_images: int
    feather: float
    eval_lr_dir: str
    eval_mask_dir: str | None = None
    eval_hr_dir: str | None = None
    crop_border: int = 0
    lpips_fn: Callable | None = None
    discriminator_from: str = ""


def log_problems(problems: list[str]) -> None:
    """One warning per input file that the job skipped."""
    for problem in problems:
        logging.warning("%s", problem)


def run_desra(settings: FineTuning, data: DeSRAData, models: DeSRAModels, workdir: str, mesh,
              online: Online | None = None) -> dict:
    """The whole job in `workdir` (module docstring), resuming where a previous run stopped: `pseudo_gt/`,
    `masks/`, the loop's files (`desra_jax.training.loop`), `eval_<step>.json` and `report/index.html`, or with
    `online` the continual loop in `workdir/online`. Returns the final held-out summary."""
    problems: list[str] = []  # the input files skipped, by name: logged, and kept in the evaluation files
    held_out = HeldOut.prepare(read_named_images(data.eval_lr_dir, problems), data.eval_mask_dir or None, models,
                               problems, data.eval_hr_dir or None, crop_border=data.crop_border,
                               lpips_fn=data.lpips_fn)
    if online is not None:
        log_problems(problems)
        return online_loop(settings, online, workdir, models, held_out, data.feather, data.discriminator_from, mesh)
    lr_images = read_named_images(data.lr_dir, problems)
    records = make_pseudo_gt_set(lr_images, models, data.num_images, data.feather, workdir, problems)
    log_problems(problems)
    if (warning := partner_mismatch([r.get("partner_blockiness") for r in records], *models.names)):
        logging.warning("%s", warning)  # the pseudo GT pastes the partner's blocks into the targets
    lr_by_name = dict(lr_images)
    pairs = [(r["name"], lr_by_name[r["name"]], read_image(os.path.join(workdir, "pseudo_gt", f"{r['name']}.png")))
             for r in records]
    return fine_tune(settings, workdir, models.gan, pairs, held_out, data.discriminator_from, mesh, problems)
