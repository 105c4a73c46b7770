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


#: A training job whose three checkpoints (30,000 random float32 each) overflow a 300 KiB disk at the third; it
#: prints an OSError as the drivers do (experiments.main: one line).
FILLS_THE_DISK = """
import sys, jax, jax.numpy as jnp, numpy as np
from desra_jax.training.evaluation import Evaluation
from desra_jax.training.loop import Schedule, train_loop
from desra_jax.training.sharding import data_mesh
try:
    train_loop(sys.argv[1], {"w": jax.random.normal(jax.random.key(1), (30000,))},
               lambda step: {"x": np.ones((jax.device_count(),), np.float32)},
               lambda states, batch, key: ({"w": states["w"] + batch["x"].sum()}, {"loss": jnp.zeros(())}),
               lambda states, step: Evaluation({"w0": float(states["w"][0])}), jax.random.key(0), data_mesh(),
               Schedule(6, log_every=1, eval_every=100, checkpoint_every=2), name="disk")
except OSError as error:
    sys.exit(f"error: {error}")
"""


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 KiB tmpfs (mounting needs root: skipped otherwise), unmounted afterwards."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                                           check=False, capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_while_checkpointing_is_one_error_and_leaves_no_temporary_folder(tiny_disk):
    import subprocess
    import sys

    from tests.faults import REPO

    result = subprocess.run([sys.executable, "-c", FILLS_THE_DISK, str(tiny_disk / "run")], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"})
    checkpoints = tiny_disk / "run" / "checkpoints"
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and last == (f"error: {checkpoints}: cannot write the checkpoint (the disk is "
                                               "full); free space and rerun the same command to resume from step 4")
    assert "Traceback" not in result.stderr and "RESOURCE_EXHAUSTED" not in result.stderr
    assert "Event loop is closed" not in result.stderr and "ERROR:absl" not in result.stderr
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2", "4"]  # no *.orbax-checkpoint-tmp
