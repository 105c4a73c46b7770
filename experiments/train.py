"""`train_and_evaluate(config, workdir)`: the training job behind `python -m experiments.main`.

This is where a ConfigDict becomes plain arguments for the library: data, models, train states, jitted steps
sharded over every device, orbax checkpoints (periodic, final, and on SIGTERM/SIGINT), logs and evaluation.

Workdir layout (per phase; `ragp_fft` without `init_from` runs the `pretrain` phase in `<workdir>/pretrain` first):
  checkpoints/   orbax CheckpointManager steps (train states of generator and discriminator)
  model/         the final generator (EMA weights), loadable with desra_jax.training.checkpoints.load_model
  discriminator/ the final discriminator (GAN phase)
  samples/       step_XXXXXXX.png: rows of [bicubic | SR | HR] on validation images
  metrics.jsonl, tensorboard/, eval_XXXXXXX.json (per-image validation metrics)
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from tqdm import tqdm

from desra_jax import inference
from desra_jax.data import pairs, tfds_source
from desra_jax.data.feeding import prefetch_to_device
from desra_jax.data.image_io import write_image
from desra_jax.models import RRDBNet, UNetDiscriminatorSN, VGGStyleDiscriminator
from desra_jax.training import checkpoints, evaluation, sharding
from desra_jax.training.metric_writer import MetricWriter
from desra_jax.training.state import adam, create_state
from desra_jax.training.steps import GanLosses, gan_step, pixel_step

PHASES = ("pixel", "gan")
DATA_SOURCES = ("images", "tfds")
DISCRIMINATORS = ("vgg", "unet")


class TrainingInterrupted(Exception):
    """Raised after a SIGTERM / SIGINT once the checkpoint of the current step is written."""


def gan_losses(config) -> GanLosses:
    """The generator and discriminator loss setting of a GAN config."""
    loss = config.loss
    return GanLosses(
        pixel_kind=loss.pixel_kind,
        pixel_weight=loss.pixel_weight,
        perceptual_weight=loss.perceptual_weight,
        perceptual_layers=((loss.perceptual_layer, 1.0),),
        perceptual_criterion=loss.perceptual_criterion,
        gan_kind=loss.gan_kind,
        gan_weight=loss.gan_weight,
        gradient_penalty_weight=loss.gradient_penalty_weight,
        fft_weight=loss.fft_weight,
        ema_decay=config.train.ema_decay,
    )


def validate(config, num_devices: int) -> None:
    """Fail before any work, naming the config key, when a value cannot work."""

    def require(ok: bool, key: str, message: str):
        if not ok:
            raise ValueError(f"config.{key}={_get(config, key)!r}: {message}")

    require(config.phase in PHASES, "phase", f"choose one of {PHASES}")
    require(config.scale in (1, 2, 4), "scale", "RRDBNet supports scales 1, 2 and 4")
    require(config.data.hr_patch % config.scale == 0, "data.hr_patch", f"must be a multiple of the scale {config.scale}")
    require(config.data.batch_size > 0 and config.data.batch_size % num_devices == 0, "data.batch_size",
            f"the global batch must be positive and split evenly over the {num_devices} devices")
    require(config.train.num_steps > 0, "train.num_steps", "must be positive")
    require(config.eval.tile > config.eval.overlap >= 0, "eval.tile", f"must exceed eval.overlap={config.eval.overlap} >= 0")
    for key in ("data.train_dir", "data.val_dir", "data.tfds_data_dir", "init_from"):
        path = _get(config, key)
        require(not path or os.path.exists(path), key, "no such file or directory")
    require(config.data.source in DATA_SOURCES, "data.source", f"choose one of {DATA_SOURCES}")
    if config.data.source == "tfds":
        for key in ("data.train_dir", "data.val_dir"):
            require(not _get(config, key), key, "data.source='tfds' reads the builder's splits, not folders")
        builder_scale = re.search(r"_x(\d+)\b", config.data.tfds_name)
        require(builder_scale is None or int(builder_scale[1]) == config.scale, "data.tfds_name",
                f"its LR images are not for config.scale={config.scale}")
    if config.phase == "gan":
        gan_losses(config)  # raises on an unknown loss kind, naming it
        require(config.discriminator.kind in DISCRIMINATORS, "discriminator.kind", f"choose one of {DISCRIMINATORS}")
        if config.discriminator.kind == "vgg":
            require(config.data.hr_patch % 32 == 0, "data.hr_patch", "the VGG-style discriminator needs a multiple of 32")
        if config.loss.perceptual_weight:
            require(bool(config.loss.vgg19) and os.path.exists(config.loss.vgg19), "loss.vgg19",
                    "the perceptual loss needs ImageNet VGG19 weights (a torchvision vgg19 .pth or a directory from "
                    "`python -m experiments.convert vgg19`); none are downloaded. Or set loss.perceptual_weight=0")
        require(bool(config.init_from) or "pretrain" in config, "init_from",
                "a GAN phase starts from an MSE-SR model: give its directory or .pth file")


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def train_and_evaluate(config, workdir: str, mesh=None) -> dict:
    """Run every phase of `config` in `workdir` (resuming where a previous run stopped) on `mesh` (all devices
    by default); returns the final validation summary of the last phase."""
    mesh = mesh or sharding.data_mesh()
    validate(config, mesh.size)
    init_from = config.init_from
    if config.phase == "gan" and not init_from:
        validate(config.pretrain, mesh.size)
        pretrain_dir = os.path.join(workdir, "pretrain")
        train_and_evaluate(config.pretrain, pretrain_dir, mesh)
        init_from = os.path.join(pretrain_dir, "model")
    return run_phase(config, workdir, init_from, mesh)


def load_generator(path: str, config):
    """An RRDBNet and its params from a model directory of this library or a PyTorch .pth / .safetensors."""
    if os.path.isdir(path):
        module, variables = checkpoints.load_model(path)
        params = variables["params"]
    else:
        from desra_jax.convert import load_rrdbnet

        module, params = load_rrdbnet(path)
    expected = dict(scale=config.scale, **config.model)
    different = {k: (getattr(module, k), v) for k, v in expected.items() if getattr(module, k) != v}
    if not isinstance(module, RRDBNet) or different:
        raise ValueError(
            f"{path}: the model to start from does not match the config: "
            + ", ".join(f"{k} is {have} there but {want} in the config" for k, (have, want) in different.items())
        )
    return module, params


def load_vgg(path: str, layer: str):
    if os.path.isdir(path):
        module, variables = checkpoints.load_model(path)
        return module.clone(layer_names=(layer,)), variables["params"]
    from desra_jax.convert import load_vgg19

    return load_vgg19(path, layer_names=(layer,))


def make_discriminator(config):
    if config.discriminator.kind == "vgg":
        return VGGStyleDiscriminator(num_in_ch=3, num_feat=config.discriminator.num_feat, input_size=config.data.hr_patch)
    return UNetDiscriminatorSN(num_in_ch=3, num_feat=config.discriminator.num_feat)


def load_images(config):
    """(train, val, train_lr): lists of (name, HR image), and the LR partner of each training image or None
    (LR made by bicubic_downsample). The bundled photographs unless folders or a tfds builder are given."""
    if config.data.source == "tfds":
        train, train_lr = tfds_source.load_split(config.data.tfds_name, "train", config.data.tfds_data_dir)
        # Validation makes its LR from the HR, as for folders, so that scores compare across sources.
        val, _ = tfds_source.load_split(config.data.tfds_name, "validation", config.data.tfds_data_dir, with_lr=False)
        return train, val, train_lr
    train, val = pairs.bundled_split()
    if config.data.train_dir:
        train = pairs.load_folder(config.data.train_dir)
    if config.data.val_dir:
        val = pairs.load_folder(config.data.val_dir)
    return train, val, None


def run_phase(config, workdir: str, init_from: str = "", mesh=None) -> dict:
    """Train one phase (pixel or GAN) to `config.train.num_steps`, resuming from the latest checkpoint."""
    mesh = mesh or sharding.data_mesh()
    validate(config, mesh.size)  # again, for callers that run one phase directly
    workdir = prepare_workdir(config, workdir)
    if (summary := finished_summary(workdir, config.train.num_steps)) is not None:
        return summary
    init_key, disc_key, step_key = jax.random.split(jax.random.key(config.seed), 3)

    train_images, val_images, train_lr = load_images(config)
    sampler = pairs.PatchSampler(
        train_images, hr_patch=config.data.hr_patch, scale=config.scale, batch_size=config.data.batch_size,
        seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count(), lr_images=train_lr,
    )
    val_pairs = evaluation.validation_pairs(val_images, config.scale)

    if init_from:
        generator, g_params = load_generator(init_from, config)
    else:
        generator = RRDBNet(scale=config.scale, **config.model)
        lr_patch = config.data.hr_patch // config.scale
        g_params = generator.init(init_key, np.zeros((1, lr_patch, lr_patch, 3), np.float32))["params"]
    discriminator, d_variables = None, None
    if config.phase == "gan":
        discriminator = make_discriminator(config)
        hr = np.zeros((1, config.data.hr_patch, config.data.hr_patch, 3), np.float32)
        d_variables = discriminator.init(disc_key, hr, train=False)
    states = initial_states(config, generator, g_params, discriminator, d_variables, mesh)

    def evaluate(states, step, writer):
        return _evaluate(generator, states["generator"].ema_params, val_pairs, config, workdir, step, writer)

    states, summary = train_loop(config, workdir, states, sampler, evaluate, step_key, mesh)
    save_final_models(workdir, generator, discriminator, states)
    logging.info("%s: finished %s at step %d; model in %s/model", workdir, config.name, config.train.num_steps, workdir)
    return summary


def prepare_workdir(config, workdir: str) -> str:
    """Creates `workdir` and writes the config there; returns its absolute path."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))
    return workdir


def finished_summary(workdir: str, num_steps: int) -> dict | None:
    """The final validation summary when `workdir` already holds a model trained to `num_steps`, else None."""
    path = os.path.join(workdir, f"eval_{num_steps:07d}.json")
    if not (os.path.isdir(os.path.join(workdir, "model")) and os.path.isfile(path)):
        return None
    logging.info("%s: already trained to step %d", workdir, num_steps)
    with open(path, encoding="utf-8") as f:
        return json.load(f)["summary"]


def initial_states(config, generator, g_params, discriminator=None, d_variables=None, mesh=None) -> dict:
    """Train states (Adam of the config, generator EMA) of the generator and, for a GAN phase, the
    discriminator, replicated over `mesh`."""
    tx = adam(config.train.learning_rate, config.train.milestones, config.train.gamma)
    states = {"generator": create_state(generator, {"params": g_params}, tx, ema=True)}
    if discriminator is not None:
        states["discriminator"] = create_state(discriminator, d_variables, tx, ema=False)
    return jax.device_put(states, sharding.replicated(mesh))


def save_final_models(workdir: str, generator, discriminator, states) -> None:
    """Process 0 writes model/ (the EMA generator) and, with a discriminator, discriminator/ into `workdir`."""
    if jax.process_index() != 0:
        return
    checkpoints.save_model(os.path.join(workdir, "model"), generator, states["generator"].ema_params, overwrite=True)
    if discriminator is not None:
        d_state = states["discriminator"]
        checkpoints.save_model(
            os.path.join(workdir, "discriminator"), discriminator, d_state.params, d_state.model_state, overwrite=True
        )


def train_loop(config, workdir: str, states, sampler, evaluate, key, mesh, step_fn=None) -> tuple[dict, dict]:
    """Runs the jitted steps of `config.phase` (or `step_fn(states, batch, key) -> (states, metrics)`, e.g. the
    localizer's) on `sampler.batch(step)` from the latest checkpoint in
    `workdir/checkpoints` to `config.train.num_steps`: logs (progress bar, JSONL, TensorBoard) every
    `log_every`, calls `evaluate(states, step, writer) -> summary` every `eval_every` and at the end, and
    checkpoints every `checkpoint_every`, at the end and on SIGTERM / SIGINT (then raises TrainingInterrupted).
    Returns the final states and the last evaluation summary."""
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.train.keep_checkpoints, create=True),
    )
    start = manager.latest_step() or 0
    num_steps = config.train.num_steps
    if start:
        states = manager.restore(start, args=ocp.args.StandardRestore(states))
        logging.info("%s: resumed from step %d", workdir, start)

    if step_fn is None:
        vgg, vgg_params = None, None
        if config.phase == "gan" and config.loss.perceptual_weight:
            vgg, vgg_params = load_vgg(config.loss.vgg19, config.loss.perceptual_layer)
            vgg_params = jax.device_put(vgg_params, sharding.replicated(mesh))
        phase_step = _compile_step(config, mesh, vgg)
        step_fn = lambda states, batch, key: phase_step(states, batch, key, vgg_params)  # noqa: E731

    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, phase=config.name, resume_step=start) if is_main else None
    stop = _StopRequest()
    summary = {}
    batches = prefetch_to_device(sampler.batch, range(start, num_steps), mesh, config.data.prefetch)
    bar = tqdm(total=num_steps, initial=start, desc=config.name, disable=not is_main, dynamic_ncols=True)
    last_log, last_time = start, time.perf_counter()
    try:
        for step, batch in zip(range(start + 1, num_steps + 1), batches):
            states, metrics = step_fn(states, batch, jax.random.fold_in(key, step))
            bar.update(1)
            if step % config.train.log_every == 0 or step == num_steps:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                metrics["steps_per_s"] = (step - last_log) / (now - last_time)
                last_log, last_time = step, now
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
                if writer:
                    writer.write(step, metrics)
            if step % config.train.eval_every == 0 or step == num_steps:
                summary = evaluate(states, step, writer)
            if step % config.train.checkpoint_every == 0 or step == num_steps or stop.requested:
                manager.save(step, args=ocp.args.StandardSave(states))
            if stop.requested:
                manager.wait_until_finished()
                raise TrainingInterrupted(
                    f"{stop.requested} at step {step}: checkpoint saved in {workdir}/checkpoints; "
                    "rerun the same command to resume"
                )
        manager.wait_until_finished()
        if not summary:  # killed after the last checkpoint but before the model was written
            summary = evaluate(states, num_steps, writer)
    finally:
        bar.close()
        stop.restore()
        batches.close()
        if writer:
            writer.close()
    return states, summary


def _compile_step(config, mesh, vgg=None):
    """The jitted train step `(states, batch, key, vgg_params) -> (states, metrics)` of the config's phase;
    `vgg` is the VGG19Features module of the perceptual loss (GAN phase), None without one."""
    replicated = sharding.replicated(mesh)
    if config.phase == "pixel":

        def step(states, batch, key, vgg_params):
            del key, vgg_params
            generator, metrics = pixel_step(
                states["generator"], batch, pixel_kind=config.loss.pixel_kind, ema_decay=config.train.ema_decay
            )
            return {"generator": generator}, metrics

    else:
        losses = gan_losses(config)

        def step(states, batch, key, vgg_params):
            generator, discriminator, metrics = gan_step(
                states["generator"], states["discriminator"], batch, key, vgg_params, losses=losses, vgg=vgg
            )
            return {"generator": generator, "discriminator": discriminator}, metrics

    return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=0)


def _evaluate(generator, params, val_pairs, config, workdir, step, writer) -> dict:
    def upscale(lr):
        return inference.upscale(generator, params, lr, tile=config.eval.tile, overlap=config.eval.overlap)

    summary, per_image, outputs = evaluation.evaluate(upscale, val_pairs, config.scale)
    if writer:
        writer.write(step, {f"val/{k}": v for k, v in summary.items()})
        write_image(os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                    evaluation.sample_grid(outputs, config.eval.num_samples))
        with open(os.path.join(workdir, f"eval_{step:07d}.json"), "w", encoding="utf-8") as f:
            json.dump({"step": step, "summary": summary, "per_image": per_image}, f, indent=2)
    logging.info("%s step %d: %s", config.name, step, ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary


class _StopRequest:
    """Turns SIGTERM / SIGINT into a flag that the loop checks after each step (then checkpoints and stops)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = ""
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        del frame
        self.requested = signal.Signals(signum).name

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
