"""`train_localizer(config, workdir)`: the artifact-localizer training job (configs/localizer.py, issue 8) behind
`python -m experiments.main`.

DeepLabV3+ learns (image -> artifact mask) with BCE + soft Dice on random crops, sharded on the batch over every
device, with Adam; it is evaluated on whole held-out images with DeSRA's detection metrics (mean IoU, region
precision / recall at p = 0.5, eq. 11-13) of sigmoid(logit) > 0.5. The loop (checkpoints, resumption, SIGTERM
handling, logs) is the SR job's `experiments.train.train_loop`.

Workdir layout:
  checkpoints/   orbax CheckpointManager steps (the train state, BatchNorm statistics included)
  model/         the final localizer (params + batch_stats), loadable with desra_jax.training.checkpoints.load_model
  samples/       step_XXXXXXX.png: rows of [image | target mask | predicted mask] on held-out images
  metrics.jsonl, tensorboard/, eval_XXXXXXX.json (per-image held-out metrics)
"""

from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np
from absl import logging

from desra_jax.data import pairs
from desra_jax.data.image_io import write_image
from desra_jax.data.mask_pairs import MaskPair, MaskPatchSampler, load_mask_pairs
from desra_jax.data.synthetic import synthetic_pair
from desra_jax.detection import detect_artifacts
from desra_jax.losses.segmentation import segmentation_loss
from desra_jax.metrics.detection import evaluate_detection
from desra_jax.models import DeepLabV3Plus
from desra_jax.training import checkpoints, evaluation, sharding
from desra_jax.training.state import adam, create_state
from experiments.report import overlay_mask
from experiments import train

SUMMARY_KEYS = ("mean_iou", "precision", "recall")


def validate(config, num_devices: int) -> None:
    """Fail before any work, naming the config key, when a value cannot work."""

    def require(ok: bool, key: str, value, message: str):
        if not ok:
            raise ValueError(f"config.{key}={value!r}: {message}")

    data = config.data
    require(data.batch_size > 0 and data.batch_size % num_devices == 0, "data.batch_size", data.batch_size,
            f"the global batch must be positive and split evenly over the {num_devices} devices")
    require(data.patch > 0 and data.patch % config.model.output_stride == 0, "data.patch", data.patch,
            f"must be a positive multiple of model.output_stride={config.model.output_stride}")
    require(config.train.num_steps > 0, "train.num_steps", config.train.num_steps, "must be positive")
    require(config.model.num_classes == 1, "model.num_classes", config.model.num_classes,
            "the localizer predicts one artifact logit per pixel")
    require(config.loss.bce_weight > 0 or config.loss.dice_weight > 0, "loss.bce_weight", config.loss.bce_weight,
            "loss.bce_weight and loss.dice_weight cannot both be 0")
    require(0 < config.eval.threshold < 1, "eval.threshold", config.eval.threshold, "must lie in (0, 1)")
    for image_key, mask_key in (("image_dir", "mask_dir"), ("val_image_dir", "val_mask_dir")):
        require(bool(data[image_key]) == bool(data[mask_key]), f"data.{mask_key}", data[mask_key],
                f"give data.{image_key} and data.{mask_key} together")
    require(bool(data.image_dir) or not data.val_image_dir, "data.val_image_dir", data.val_image_dir,
            "held-out folders need training folders (data.image_dir, data.mask_dir)")
    require(not data.image_dir or bool(data.val_image_dir), "data.val_image_dir", data.val_image_dir,
            "training on your own folders needs held-out ones too")
    for key in ("image_dir", "mask_dir", "val_image_dir", "val_mask_dir"):
        require(not data[key] or os.path.isdir(data[key]), f"data.{key}", data[key], "no such folder")
    require(not config.init_backbone or os.path.isfile(config.init_backbone), "init_backbone", config.init_backbone,
            "no such file")


def synthetic_mask_pairs(photographs, config) -> list[MaskPair]:
    """(name, GAN-like image, DeSRA mask) of `config.data.synthetic_variants` synthetic pairs of each centre-cropped
    photograph ((name, image) pairs); pair k of the list has synthetic seed k, so no two share their artifacts."""
    size = config.data.synthetic_size
    names, gans, mses = [], [], []
    for name, image in photographs:
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        if min(top, left) < 0:
            raise ValueError(f"{name}: photograph of {image.shape[:2]} is smaller than data.synthetic_size={size}")
        square = image[top : top + size, left : left + size]
        for variant in range(config.data.synthetic_variants):
            gan, mse, _ = synthetic_pair(square, seed=len(names))
            names.append(f"{name}_{variant}")
            gans.append(gan)
            mses.append(mse)
    masks, _ = detect_artifacts(np.stack(gans), np.stack(mses), threshold=config.data.detect_threshold,
                                min_area=config.data.detect_min_area)
    return list(zip(names, gans, np.asarray(masks)))


def load_data(config) -> tuple[list[MaskPair], list[MaskPair]]:
    """(train, held-out) lists of (name, image, mask): the configured folders, or DeSRA pseudo-labels on the
    bundled photographs (held out: chelsea and coffee, data.pairs.bundled_split)."""
    if config.data.image_dir:
        return (load_mask_pairs(config.data.image_dir, config.data.mask_dir),
                load_mask_pairs(config.data.val_image_dir, config.data.val_mask_dir))
    train_photos, val_photos = pairs.bundled_split()
    labelled = synthetic_mask_pairs(train_photos + val_photos, config)  # one detection call: one compilation
    held_out = len(val_photos) * config.data.synthetic_variants
    return labelled[:-held_out], labelled[-held_out:]


def centre_crop(image: np.ndarray, max_size: int, multiple: int) -> np.ndarray:
    """The centre of an (H, W, ...) array, each side cut to at most `max_size` and down to a multiple of `multiple`
    (the network's output stride, so that every feature map tiles the image exactly)."""
    h, w = (min(s, max_size) // multiple * multiple for s in image.shape[:2])
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[top : top + h, left : left + w]


@functools.cache
def _model(fields: tuple) -> DeepLabV3Plus:
    # One module object per setting: the train state holds its bound `apply`, which jit compares by identity, so
    # runs in one process (resumption, tests, sweeps) reuse the compiled steps below.
    return DeepLabV3Plus(**dict(fields))


#: The train state holds the optimizer's functions, which jit compares by identity: one per setting (see _model).
_adam = functools.cache(adam)


@functools.cache
def _compiled(model: DeepLabV3Plus, mesh, loss_weights: tuple):
    """Jitted (init, train step, whole-image logits) of a model on a mesh: parameters replicated, batch sharded."""
    replicated = sharding.replicated(mesh)
    init = jax.jit(lambda key, images: model.init(key, images, train=False), out_shardings=replicated)
    step = jax.jit(functools.partial(localizer_step, loss_weights=dict(loss_weights)),
                   out_shardings=(replicated, replicated), donate_argnums=0)
    predict = jax.jit(lambda variables, image: model.apply(variables, image[None], train=False)[0, ..., 0],
                      out_shardings=replicated)
    return init, step, predict


def localizer_model(config) -> DeepLabV3Plus:
    """The DeepLabV3+ of `config.model`."""
    return _model(tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in config.model.items()))


def initial_variables(config, model, init, key) -> dict:
    """Random variables from `key`, with the converted ImageNet backbone of `config.init_backbone` if set."""
    patch = config.data.patch
    variables = init(key, np.zeros((1, patch, patch, 3), np.float32))
    if config.init_backbone:
        from desra_jax.convert.deeplab import load_backbone_into

        variables = load_backbone_into(config.init_backbone, model, variables)
    return variables


def localizer_step(state, batch, key, *, loss_weights: dict):
    """One Adam update on BCE + Dice; batch = {'image': (N, p, p, 3), 'mask': (N, p, p, 1)}, `key` drives the ASPP
    dropout. BatchNorm runs in training mode, its statistics over the global batch (jit sees the whole sharded
    batch)."""

    def objective(params):
        logits, updates = state.apply_fn({"params": params, **state.model_state}, batch["image"], train=True,
                                         mutable=["batch_stats"], rngs={"dropout": key})
        total, terms = segmentation_loss(logits, batch["mask"], **loss_weights)
        return total, (terms, updates)

    (total, (terms, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads).replace(model_state={**state.model_state, **updates})
    return state, {**terms, "l_total": total}


def train_localizer(config, workdir: str, mesh=None) -> dict:
    """Train the localizer to `config.train.num_steps` in `workdir`, resuming from its latest checkpoint; returns
    the final held-out summary {'mean_iou', 'precision', 'recall', 'n_s', 'n_t', 'n_g', 'n_r'}."""
    mesh = mesh or sharding.data_mesh()
    validate(config, mesh.size)
    workdir = train.prepare_workdir(config, workdir)
    done = train.finished_summary(workdir, config.train.num_steps)
    if done is not None:
        return done

    train_pairs, val_pairs = load_data(config)
    sampler = MaskPatchSampler(train_pairs, config.data.patch, config.data.batch_size, config.seed,
                               jax.process_index(), jax.process_count())
    model = localizer_model(config)
    init, step_fn, predict = _compiled(model, mesh, tuple(config.loss.items()))
    # 'rbg' keys: XLA on CPU takes tens of seconds to compile threefry for every parameter of the init, rbg a few.
    init_key, step_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
    tx = _adam(config.train.learning_rate, tuple(config.train.milestones), config.train.gamma)
    state = create_state(model, initial_variables(config, model, init, init_key), tx, ema=False)
    state = jax.device_put(state, sharding.replicated(mesh))

    def evaluate(state, step, writer):
        return _evaluate(predict, state, val_pairs, config, workdir, step, writer)

    state, summary = train.train_loop(config, workdir, state, sampler, evaluate, step_key, mesh, step_fn)
    if jax.process_index() == 0:
        checkpoints.save_model(os.path.join(workdir, "model"), model, state.params, state.model_state, overwrite=True)
        logging.info("%s: finished %s at step %d; model in %s/model", workdir, config.name, config.train.num_steps,
                     workdir)
    return summary


def predict_masks(predict, variables, images, threshold: float) -> list[np.ndarray]:
    """Boolean (H, W) artifact masks sigmoid(logit) > threshold, i.e. logit > log(t / (1 - t))."""
    logit_threshold = float(np.log(threshold / (1.0 - threshold)))
    return [np.asarray(predict(variables, image)) > logit_threshold for image in images]


def _evaluate(predict, state, val_pairs, config, workdir, step, writer) -> dict:
    stride = config.model.output_stride
    names = [name for name, _, _ in val_pairs]
    images = [centre_crop(image, config.eval.max_size, stride) for _, image, _ in val_pairs]
    targets = [centre_crop(mask, config.eval.max_size, stride) for _, _, mask in val_pairs]
    preds = predict_masks(predict, {"params": state.params, **state.model_state}, images, config.eval.threshold)
    metrics = evaluate_detection(preds, targets, config.eval.p)
    # The target fraction is also the IoU of flagging everything: the number a localizer has to beat.
    per_image = [{"name": name, "target_fraction": float(target.mean()), **record}
                 for name, target, record in zip(names, targets, metrics.pop("per_image"))]
    summary = {k: float(v) for k, v in metrics.items()}
    if writer:
        writer.write(step, {f"val/{k}": summary[k] for k in SUMMARY_KEYS})
        rows = [(name, image, overlay_mask(image, target), overlay_mask(image, pred))
                for name, image, target, pred in zip(names, images, targets, preds)]
        write_image(os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                    evaluation.sample_grid(rows, config.eval.num_samples))
        with open(os.path.join(workdir, f"eval_{step:07d}.json"), "w", encoding="utf-8") as f:
            json.dump({"step": step, "summary": summary, "per_image": per_image}, f, indent=2)
    logging.info("%s step %d: %s", config.name, step, ", ".join(f"{k}={summary[k]:.4f}" for k in SUMMARY_KEYS))
    return summary
