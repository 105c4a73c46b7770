"""Numeric config values that would fail or waste a run are refused before any work, naming the key: every job's
schedule, optimiser and loss weights (``configs.validation.check_train``)."""

import math

import pytest

from configs import desra_finetune, localizer, ragp_fft
from configs.validation import check

CONFIGS = {"sr": ragp_fft, "desra_finetune": desra_finetune, "localizer": localizer}
BAD_VALUES = [
    ("train.checkpoint_every", 0, "must be a positive whole number"),
    ("train.eval_every", -5, "must be a positive whole number"),
    ("train.log_every", 0, "must be a positive whole number"),
    ("train.keep_checkpoints", 0, "must be a positive whole number"),
    ("train.num_steps", 0, "must be a positive whole number"),
    ("train.learning_rate", math.nan, "must be a positive finite number"),
    ("train.learning_rate", math.inf, "must be a positive finite number"),
    ("train.learning_rate", 0.0, "must be a positive finite number"),
    ("train.learning_rate", -1e-4, "must be a positive finite number"),
    ("train.gamma", math.nan, "must be a positive finite number"),
    ("train.milestones", (30, 10), "must be increasing positive step numbers"),
]
#: Keys only the SR jobs (GAN-SR training, DeSRA fine-tuning) have.
SR_ONLY = [
    ("train.ema_decay", 1.0, "must lie in [0, 1)"),
    ("train.ema_decay", math.nan, "must lie in [0, 1)"),
    ("loss.pixel_weight", math.nan, "must be a finite number >= 0"),
    ("loss.gan_weight", -0.1, "must be a finite number >= 0"),
]
CASES = [(job, *case) for job in sorted(CONFIGS) for case in BAD_VALUES + (SR_ONLY if job != "localizer" else [
    ("loss.dice_weight", math.nan, "must be a finite number >= 0")])]


@pytest.mark.parametrize("job, key, bad, message", CASES)
def test_a_bad_number_is_refused_naming_the_key(job, key, bad, message):
    config = CONFIGS[job].get_config("tiny")
    config.job = job
    section, name = key.split(".")
    config[section][name] = bad
    with pytest.raises(ValueError) as raised:
        check(config, num_devices=1)
    assert str(raised.value).startswith(f"config.{key}={bad!r}: {message}")


@pytest.mark.parametrize("job", ["sr", "localizer"])  # the tiny fine-tune config names models that are not here
def test_the_tiny_configs_pass(job):
    config = CONFIGS[job].get_config("tiny")
    config.job = job
    check(config, num_devices=1)
