"""Training the artifact localizer (the paper's localization network), from plain settings: `train_localizer`.

DeepLabV3+ learns (image -> artifact mask) with BCE + soft Dice on random crops, sharded on the batch over every
device, with Adam; it is evaluated on whole held-out images with DeSRA's detection metrics (mean IoU, region
precision / recall at p = 0.5, eq. 11-13) of sigmoid(logit) > threshold (`evaluation.evaluate_localizer`). The
loop (checkpoints, resumption, SIGTERM handling, logs) is `loop.train_loop`.

Workdir layout (`desra_jax.training.loop`): checkpoints/, model/ (params + batch_stats, loadable with
desra_jax.models.directory.load_model), samples/ (rows of [image | target mask | predicted mask] on held-out
images), metrics.jsonl, tensorboard/, eval_XXXXXXX.json (per-image held-out metrics).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from desra_jax.data.mask_pairs import MaskPair, MaskPatchSampler
from desra_jax.models import DeepLabV3Plus
from desra_jax.training import evaluation, loop, sharding
from desra_jax.training.state import create_state
from desra_jax.training.steps import localizer_train_step


@dataclasses.dataclass(frozen=True)
class LocalizerTraining:
    """How the localizer trains: the `optimizer`, the loop's `schedule`, the loss's `loss_weights` ((name, value)
    pairs of `segmentation_loss`), the crops (`patch` pixels, `batch_size` global), the torchvision ResNet .pth to
    start the backbone from (`init_backbone`, "": random), and the held-out evaluation (`threshold` on
    sigmoid(logit), region overlap `p`, images centre-cropped to `max_size`, `num_samples` in the sample grid)."""

    optimizer: object
    schedule: loop.Schedule
    loss_weights: tuple[tuple[str, float], ...]
    patch: int
    batch_size: int
    seed: int
    init_backbone: str = ""
    threshold: float = 0.5
    p: float = 0.5
    max_size: int = 512
    num_samples: int = 2
    name: str = "localizer"
    prefetch: int = 2


def initial_variables(settings: LocalizerTraining, model: DeepLabV3Plus, key) -> dict:
    """Random variables from `key`, with the converted ImageNet backbone of `settings.init_backbone` if set."""
    variables = _init(model)(key, np.zeros((1, settings.patch, settings.patch, 3), np.float32))
    if settings.init_backbone:
        from desra_jax.convert.deeplab import load_backbone_into

        variables = load_backbone_into(settings.init_backbone, model, variables)
    return variables


@functools.cache
def _init(model: DeepLabV3Plus):
    return jax.jit(lambda key, images: model.init(key, images, train=False))


@functools.cache
def logits_of(model: DeepLabV3Plus):
    """Jitted `(variables, image (H, W, 3)) -> logits (H, W)` of the localizer in inference mode."""
    return jax.jit(lambda variables, image: model.apply(variables, image[None], train=False)[0, ..., 0])


def train_localizer(settings: LocalizerTraining, model: DeepLabV3Plus, train_pairs: list[MaskPair],
                    val_pairs: list[MaskPair], workdir: str, mesh) -> dict:
    """Trains `model` on the (name, image, mask) `train_pairs` to `settings.schedule.num_steps` in the prepared
    `workdir` (`loop.prepare_workdir`), resuming from its latest checkpoint; returns the final held-out summary
    {'mean_iou', 'precision', 'recall'} on `val_pairs`."""
    sampler = MaskPatchSampler(train_pairs, settings.patch, settings.batch_size, settings.seed,
                               jax.process_index(), jax.process_count())
    # 'rbg' keys: XLA on CPU takes tens of seconds to compile threefry for every parameter of the init, rbg a few.
    init_key, step_key = jax.random.split(jax.random.key(settings.seed, impl="rbg"))
    state = create_state(model, initial_variables(settings, model, init_key), settings.optimizer, ema=False)
    state = jax.device_put(state, sharding.replicated(mesh))

    def evaluate(state, step_number):
        del step_number
        return evaluation.evaluate_localizer(
            logits_of(model), {"params": state.params, **state.model_state}, val_pairs,
            threshold=settings.threshold, p=settings.p, max_size=settings.max_size, stride=model.output_stride,
            num_samples=settings.num_samples)

    step = localizer_train_step(mesh, settings.loss_weights)
    state, summary = loop.train_loop(workdir, state, sampler.batch, step, evaluate, step_key, mesh,
                                     settings.schedule, name=settings.name, prefetch=settings.prefetch)
    loop.save_final_models(workdir, {"model": (model, state.params, state.model_state)})
    return summary
