"""`train_localizer(config, workdir)`: the artifact-localizer training job (configs/localizer.py) behind
`python -m experiments.main`.

DeepLabV3+ learns (image -> artifact mask) with BCE + soft Dice on random crops, sharded on the batch over every
device, with Adam; it is evaluated on whole held-out images with DeSRA's detection metrics (mean IoU, region
precision / recall at p = 0.5, eq. 11-13) of sigmoid(logit) > 0.5 (`desra_jax.training.evaluation`). The loop
(checkpoints, resumption, SIGTERM handling, logs) is `desra_jax.training.loop.train_loop`.

Workdir layout (`desra_jax.training.loop`): checkpoints/, model/ (params + batch_stats, loadable with
desra_jax.models.directory.load_model), samples/ (rows of [image | target mask | predicted mask] on held-out
images), metrics.jsonl, tensorboard/, eval_XXXXXXX.json (per-image held-out metrics).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from desra_jax.data import sr_pairs
from desra_jax.data.mask_pairs import MaskPair, MaskPatchSampler, load_mask_pairs
from desra_jax.data.synthetic import synthetic_mask_pairs
from desra_jax.detection import detect_artifacts
from desra_jax.models import DeepLabV3Plus
from desra_jax.training import evaluation, loop, sharding
from desra_jax.training.state import adam, create_state
from desra_jax.training.steps import localizer_train_step


def load_data(config) -> tuple[list[MaskPair], list[MaskPair]]:
    """(train, held-out) lists of (name, image, mask): the configured folders, or DeSRA pseudo-labels on the
    bundled photographs (held out: chelsea and coffee, data.sr_pairs.bundled_split)."""
    data = config.data
    if data.image_dir:
        return load_mask_pairs(data.image_dir, data.mask_dir), load_mask_pairs(data.val_image_dir, data.val_mask_dir)
    train_photos, val_photos = sr_pairs.bundled_split()

    def label(gans, mses):
        return detect_artifacts(gans, mses, threshold=data.detect_threshold, min_area=data.detect_min_area)[0]

    # one detection call for all the photographs: one compilation
    labelled = synthetic_mask_pairs(train_photos + val_photos, data.synthetic_size, data.synthetic_variants, label)
    held_out = len(val_photos) * data.synthetic_variants
    return labelled[:-held_out], labelled[-held_out:]


def localizer_model(config) -> DeepLabV3Plus:
    """The DeepLabV3+ of `config.model`."""
    return DeepLabV3Plus(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()})


def initial_variables(config, model: DeepLabV3Plus, key) -> dict:
    """Random variables from `key`, with the converted ImageNet backbone of `config.init_backbone` if set."""
    patch = config.data.patch
    variables = _init(model)(key, np.zeros((1, patch, patch, 3), np.float32))
    if config.init_backbone:
        from desra_jax.convert.deeplab import load_backbone_into

        variables = load_backbone_into(config.init_backbone, model, variables)
    return variables


@functools.cache
def _init(model: DeepLabV3Plus):
    return jax.jit(lambda key, images: model.init(key, images, train=False))


@functools.cache
def logits_of(model: DeepLabV3Plus):
    """Jitted `(variables, image (H, W, 3)) -> logits (H, W)` of the localizer in inference mode."""
    return jax.jit(lambda variables, image: model.apply(variables, image[None], train=False)[0, ..., 0])


def train_localizer(config, workdir: str, mesh=None) -> dict:
    """Train the localizer to `config.train.num_steps` in `workdir`, resuming from its latest checkpoint; returns
    the final held-out summary {'mean_iou', 'precision', 'recall'}."""
    mesh = mesh or sharding.data_mesh()
    workdir = loop.prepare_workdir(workdir, config.to_json_best_effort())
    done = loop.finished_summary(workdir, config.train.num_steps)
    if done is not None:
        return done

    train_pairs, val_pairs = load_data(config)
    sampler = MaskPatchSampler(train_pairs, config.data.patch, config.data.batch_size, config.seed,
                               jax.process_index(), jax.process_count())
    model = localizer_model(config)
    # 'rbg' keys: XLA on CPU takes tens of seconds to compile threefry for every parameter of the init, rbg a few.
    init_key, step_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
    tx = adam(config.train.learning_rate, config.train.milestones, config.train.gamma)
    state = create_state(model, initial_variables(config, model, init_key), tx, ema=False)
    state = jax.device_put(state, sharding.replicated(mesh))
    step = localizer_train_step(mesh, tuple(config.loss.items()))

    def evaluate(state, step_number):
        del step_number
        return evaluation.evaluate_localizer(
            logits_of(model), {"params": state.params, **state.model_state}, val_pairs,
            threshold=config.eval.threshold, p=config.eval.p, max_size=config.eval.max_size,
            stride=config.model.output_stride, num_samples=config.eval.num_samples)

    schedule = loop.Schedule(config.train.num_steps, config.train.log_every, config.train.eval_every,
                             config.train.checkpoint_every, config.train.keep_checkpoints)
    state, summary = loop.train_loop(workdir, state, sampler.batch, step, evaluate, step_key, mesh, schedule,
                                     name=config.name, prefetch=config.data.prefetch)
    loop.save_final_models(workdir, {"model": (model, state.params, state.model_state)})
    return summary
