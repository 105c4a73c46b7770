"""A damaged newest checkpoint: training resumes from the newest one that restores, logs which one it skipped and
why, and keeps the damaged one aside (``<step>.damaged``), never deleted (``training.loop.restore_newest``)."""

import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.training.evaluation import Evaluation
from desra_jax.training.loop import Schedule, train_loop
from desra_jax.training.sharding import data_mesh


def count_steps(workdir: Path, num_steps: int) -> float:
    """Trains the smallest job there is: the state ``total`` adds each step's batch value (the step number), so
    the final total says which steps ran after the checkpoint it resumed from. Returns it."""
    states = {"total": jnp.zeros(())}

    def step_fn(states, batch, key):
        del key
        return {"total": states["total"] + batch["x"].sum()}, {"loss": jnp.zeros(())}

    def make_batch(step: int) -> dict:
        return {"x": np.full((jax.device_count(),), (step + 1) / jax.device_count(), np.float32)}

    states, _ = train_loop(str(workdir), states, make_batch, step_fn,
                           lambda states, step: Evaluation({"total": float(states["total"])}), jax.random.key(0),
                           data_mesh(), Schedule(num_steps, log_every=1, eval_every=100, checkpoint_every=1),
                           name="count")
    return float(states["total"])


def damage(step_folder: Path) -> str:
    """Truncates the largest file of a checkpoint step to half; returns its path relative to the step."""
    files = [Path(folder, name) for folder, _, names in os.walk(step_folder) for name in names]
    largest = max(files, key=lambda path: path.stat().st_size)
    with open(largest, "r+b") as file:
        file.truncate(largest.stat().st_size // 2)
    return str(largest.relative_to(step_folder))


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_resumes(tmp_path, caplog):
    assert count_steps(tmp_path, 4) == 1 + 2 + 3 + 4
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["2", "3", "4"]
    damage(checkpoints / "4")

    with caplog.at_level(logging.WARNING):
        total = count_steps(tmp_path, 6)

    assert total == 1 + 2 + 3 + 4 + 5 + 6  # resumed from step 3: steps 4, 5, 6 ran again
    skipped = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].startswith("checkpoint 4 does not restore (")
    assert skipped[0].endswith(f"moved aside to {checkpoints / '4.damaged'}, resuming from step 3")
    assert (checkpoints / "4.damaged").is_dir()  # kept, with its damaged file
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["4", "5", "6"]


def test_when_no_checkpoint_restores_nothing_is_moved_and_the_error_names_the_newest(tmp_path):
    count_steps(tmp_path, 2)
    checkpoints = tmp_path / "checkpoints"
    for step in ("1", "2"):
        damage(checkpoints / step)
    with pytest.raises(ValueError) as raised:
        count_steps(tmp_path, 3)
    assert str(raised.value).startswith(f"{checkpoints}/2: no checkpoint restores; the newest fails with: ")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1", "2"]
