"""Checks of a whole config before any work, naming the key and what is wrong with its value: the one way every
job's config is checked, called once by experiments.main (`check`)."""

import math
import os
import re

from configs import arguments
from desra_jax.convert.registry import resolve_model
from desra_jax.data.bundled import LR_DEGRADATIONS, MORE_PHOTOGRAPH_NAMES, PHOTOGRAPH_NAMES
from desra_jax.models.discriminators import DISCRIMINATORS

PHASES = ("pixel", "gan")
DATA_SOURCES = ("images", "tfds")


def value(config, dotted: str):
    """The value at a dotted key, e.g. value(config, 'data.hr_patch')."""
    for part in dotted.split("."):
        config = config[part]
    return config


def require(config, ok: bool, key: str, message: str) -> None:
    """ValueError 'config.<key>=<value>: <message>' unless `ok`."""
    if not ok:
        raise ValueError(f"config.{key}={value(config, key)!r}: {message}")


def model_found(spec: str) -> bool:
    """Whether `spec` names a model `load_sr_model` reads: a path, or the bare name of an installed ncnn model."""
    try:
        resolve_model(spec)
    except FileNotFoundError:
        return False
    return True


def is_finite_number(x) -> bool:
    """Whether `x` is an int or float (not a bool) and neither NaN nor infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_train(config) -> None:
    """`config.train`'s schedule and optimiser, as every job has them, and `config.loss`'s weights: every period a
    positive whole number (a step count modulo 0 fails at step 1), the learning rate, decay factor and loss
    weights finite (a NaN trains for hours into NaN weights), milestones increasing step numbers."""
    train = config.train
    for key in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        period = train[key]
        require(config, isinstance(period, int) and not isinstance(period, bool) and period > 0, f"train.{key}",
                "must be a positive whole number")
    require(config, is_finite_number(train.learning_rate) and train.learning_rate > 0, "train.learning_rate",
            "must be a positive finite number")
    require(config, is_finite_number(train.gamma) and train.gamma > 0, "train.gamma",
            "must be a positive finite number (the learning rate's factor at each milestone)")
    milestones = list(train.milestones)
    require(config, all(isinstance(m, int) and m > 0 for m in milestones) and milestones == sorted(set(milestones)),
            "train.milestones", "must be increasing positive step numbers")
    if "ema_decay" in train:
        require(config, is_finite_number(train.ema_decay) and 0 <= train.ema_decay < 1, "train.ema_decay",
                "must lie in [0, 1)")
    for key, weight in config.loss.items():
        if key.endswith("_weight"):
            require(config, is_finite_number(weight) and weight >= 0, f"loss.{key}", "must be a finite number >= 0")


def check(config, num_devices: int) -> None:
    """Checks `config` for the job it names (`config.job`, default 'sr') on `num_devices` devices."""
    job = config.get("job", "sr")
    if job not in JOBS:
        raise ValueError(f"config.job={job!r}: choose one of {sorted(JOBS)}")
    JOBS[job](config, num_devices)


def check_sr(config, num_devices: int) -> None:
    """A GAN-SR training config (and its `pretrain` phase, which runs first when `init_from` is empty)."""
    require(config, config.phase in PHASES, "phase", f"choose one of {PHASES}")
    require(config, config.scale in (1, 2, 4), "scale", "RRDBNet supports scales 1, 2 and 4")
    require(config, config.data.hr_patch % config.scale == 0, "data.hr_patch",
            f"must be a multiple of the scale {config.scale}")
    require(config, config.data.batch_size > 0 and config.data.batch_size % num_devices == 0, "data.batch_size",
            f"the global batch must be positive and split evenly over the {num_devices} devices")
    check_train(config)
    require(config, 0 <= config.train.discriminator_warmup < config.train.num_steps, "train.discriminator_warmup",
            f"must lie in [0, train.num_steps={config.train.num_steps}): the generator trains after it")
    require(config, config.eval.tile > config.eval.overlap >= 0, "eval.tile",
            f"must exceed eval.overlap={config.eval.overlap} >= 0")
    for key in ("data.train_dir", "data.val_dir", "data.tfds_data_dir"):
        path = value(config, key)
        require(config, not path or os.path.exists(path), key, "no such file or directory")
    require(config, not config.init_from or model_found(config.init_from), "init_from",
            "no such model directory or file, nor an installed ncnn model name")
    require(config, config.data.source in DATA_SOURCES, "data.source", f"choose one of {DATA_SOURCES}")
    if config.data.source == "tfds":
        for key in ("data.train_dir", "data.val_dir"):
            require(config, not value(config, key), key, "data.source='tfds' reads the builder's splits, not folders")
        builder_scale = re.search(r"_x(\d+)\b", config.data.tfds_name)
        require(config, builder_scale is None or int(builder_scale[1]) == config.scale, "data.tfds_name",
                f"its LR images are not for config.scale={config.scale}")
    if len(config.degradation):
        require(config, config.degradation.scale == config.scale, "degradation.scale",
                f"must be config.scale={config.scale}")
        require(config, config.data.source == "images", "data.source",
                "the on-device degradation makes the LR of HR images; a tfds builder brings its own LR")
        require(config, config.degradation.queue_size % config.data.batch_size == 0, "degradation.queue_size",
                f"the training-pair pool holds whole batches: a multiple of data.batch_size={config.data.batch_size}")
    if config.phase == "gan":
        try:
            losses = arguments.gan_losses(config)
        except ValueError as error:
            raise ValueError(f"config.loss: {error}") from None
        require(config, config.discriminator.kind in DISCRIMINATORS, "discriminator.kind",
                f"choose one of {DISCRIMINATORS}")
        if config.discriminator.kind == "vgg":
            require(config, config.data.hr_patch % 32 == 0, "data.hr_patch",
                    "the VGG-style discriminator needs a multiple of 32")
        if losses.perceptual_weight and losses.perceptual == "vgg":
            require(config, bool(config.loss.vgg19) and os.path.exists(config.loss.vgg19), "loss.vgg19",
                    "the perceptual loss needs ImageNet VGG19 weights (a torchvision vgg19 .pth or a directory from "
                    "`python -m experiments.convert vgg19`); none are downloaded. Or set loss.perceptual_weight=0")
        if losses.perceptual_weight and losses.perceptual == "lpips":
            for key in ("loss.lpips_weights", "loss.lpips_backbone"):
                require(config, bool(value(config, key)) and os.path.exists(value(config, key)), key,
                        "loss.perceptual='lpips' needs the lpips package's weights and torchvision's backbone file; "
                        "none are downloaded")
        require(config, bool(config.init_from) or "pretrain" in config, "init_from",
                "a GAN phase starts from an MSE-SR model: give its directory or .pth file")
        if not config.init_from and "pretrain" in config:
            try:
                check_sr(config.pretrain, num_devices)
            except ValueError as error:  # named from the top: config.pretrain.<key>
                raise ValueError(str(error).replace("config.", "config.pretrain.", 1)) from None


def check_finetune(config, num_devices: int) -> None:
    """A DeSRA fine-tuning config: the GAN-SR checks, plus its models and folders."""
    check_sr(config, num_devices)
    for key in ("init_from", "mse_model"):
        require(config, bool(value(config, key)) and model_found(value(config, key)), key,
                "required: a model directory or file, or an installed ncnn model name")
    bundled = config.data.bundled
    if bundled.degradation:
        require(config, bundled.degradation in LR_DEGRADATIONS, "data.bundled.degradation",
                f"choose one of {', '.join(LR_DEGRADATIONS)}, or '' for the folders data.lr_dir and data.eval_lr_dir")
        for key in ("fine_tune", "held_out"):
            unknown = sorted(set(bundled[key]) - set(PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES))
            require(config, bool(bundled[key]) and not unknown, f"data.bundled.{key}",
                    f"expected bundled photograph names ({', '.join(PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES)})"
                    + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        smallest = 16 * config.scale
        require(config, bundled.crop >= smallest, "data.bundled.crop", f"expected at least {smallest}")
        # A folder given beside the bundled sets replaces its set (experiments.finetune.data_folders); held-out
        # labels or HR images without their held-out LR would be compared with the bundled photographs.
        for key in ("data.lr_dir", "data.eval_lr_dir"):
            path = value(config, key)
            require(config, not path or os.path.exists(path), key, "no such folder")
        for key in ("data.eval_mask_dir", "data.eval_hr_dir"):
            require(config, not value(config, key) or bool(config.data.eval_lr_dir), key,
                    "given without data.eval_lr_dir: it would be matched with the bundled held-out LR images; "
                    "give data.eval_lr_dir too")
    else:
        for key in ("data.lr_dir", "data.eval_lr_dir"):
            path = value(config, key)
            require(config, bool(path) and os.path.exists(path), key, "required, and must exist")
    for key in ("discriminator_from", "data.eval_mask_dir", "data.eval_hr_dir", "detection.segformer",
                "detection.class_adjustment", "eval.lpips_weights", "eval.lpips_backbone"):
        path = value(config, key)
        require(config, not path or os.path.exists(path), key, "no such file or directory")
    if config.online:
        require(config, os.path.isdir(config.online_settings.incoming_dir), "online_settings.incoming_dir",
                "no such folder")


def check_localizer(config, num_devices: int) -> None:
    """An artifact-localizer config."""
    data = config.data
    require(config, data.batch_size > 0 and data.batch_size % num_devices == 0, "data.batch_size",
            f"the global batch must be positive and split evenly over the {num_devices} devices")
    require(config, data.patch > 0 and data.patch % config.model.output_stride == 0, "data.patch",
            f"must be a positive multiple of model.output_stride={config.model.output_stride}")
    check_train(config)
    require(config, config.model.num_classes == 1, "model.num_classes",
            "the localizer predicts one artifact logit per pixel")
    require(config, config.loss.bce_weight > 0 or config.loss.dice_weight > 0, "loss.bce_weight",
            "loss.bce_weight and loss.dice_weight cannot both be 0")
    require(config, 0 < config.eval.threshold < 1, "eval.threshold", "must lie in (0, 1)")
    for image_key, mask_key in (("image_dir", "mask_dir"), ("val_image_dir", "val_mask_dir")):
        require(config, bool(data[image_key]) == bool(data[mask_key]), f"data.{mask_key}",
                f"give data.{image_key} and data.{mask_key} together")
    require(config, bool(data.image_dir) or not data.val_image_dir, "data.val_image_dir",
            "held-out folders need training folders (data.image_dir, data.mask_dir)")
    require(config, not data.image_dir or bool(data.val_image_dir), "data.val_image_dir",
            "training on your own folders needs held-out ones too")
    for key in ("image_dir", "mask_dir", "val_image_dir", "val_mask_dir"):
        require(config, not data[key] or os.path.isdir(data[key]), f"data.{key}", "no such folder")
    require(config, not config.init_backbone or os.path.isfile(config.init_backbone), "init_backbone",
            "no such file")


#: The check of each job that `config.job` can name.
JOBS = {"sr": check_sr, "desra_finetune": check_finetune, "localizer": check_localizer}
