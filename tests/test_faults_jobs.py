"""The main job killed (SIGKILL) at its named moments and run again ends where an uninterrupted run ends: the same
models, the same evaluation and metric records (each once), and no leftovers. The GAN phase of configs/ragan.py
(tiny) from a saved generator, so that the run has both a generator and a discriminator to save."""

import jax
import numpy as np
import pytest

from desra_jax.data.image_io import write_image
from desra_jax.models import RRDBNet
from desra_jax.models.directory import save_model
from tests.conftest import photo_crop, xla_flags
from tests.faults import assert_same_results, leftovers, python_module, run_killed, run_to_end

#: Where the runs are killed, in order, each rerun going on from what the previous one left.
KILL_POINTS = ("checkpoint:3", "write:eval_0000006.json", "save_model:discriminator")


@pytest.mark.slow
def test_gan_job_killed_at_each_save_resumes_to_the_uninterrupted_result(tmp_path):
    generator = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8)
    save_model(tmp_path / "init", generator, generator.init(jax.random.key(0), np.zeros((1, 16, 16, 3)))["params"])
    for name, top, left in (("chelsea", 40, 80), ("coffee", 100, 200)):
        write_image(tmp_path / "val" / f"{name}.png", photo_crop(name, (64, 96), top, left)[0])

    def command(workdir):
        return python_module(
            "experiments.main", "--config=configs/ragan.py:tiny", f"--workdir={workdir}",
            f"--config.init_from={tmp_path / 'init'}", f"--config.data.val_dir={tmp_path / 'val'}",
            "--config.train.num_steps=6", "--config.train.checkpoint_every=3", "--config.train.eval_every=6",
            "--config.train.log_every=1")

    env = {"XLA_FLAGS": xla_flags(), "JAX_PLATFORMS": "cpu"}
    run_to_end(command(tmp_path / "straight"), env=env)
    for point in KILL_POINTS:
        run_killed(command(tmp_path / "killed"), point, env=env)
    assert leftovers(tmp_path / "killed")  # the staged discriminator of the last killed writer
    rerun = run_to_end(command(tmp_path / "killed"), env=env)
    assert "resumed from step 6" in rerun.stderr
    assert_same_results(tmp_path / "straight", tmp_path / "killed", ignored=("tensorboard/*", "checkpoints/*"))
