"""The main job killed (SIGKILL) at its named moments and run again ends where an uninterrupted run ends: the same
models, the same evaluation and metric records (each once), and no leftovers. The GAN phase of configs/ragan.py
(tiny) from a saved generator, so that the run has both a generator and a discriminator to save; the DeSRA
fine-tune job (configs/desra_finetune.py, tiny), from its pseudo ground truth to its report and final models; its
online loop (`--online`), from the buffered samples through a fine-tuning round to the state after it; and the
artifact localizer (configs/localizer.py, tiny) trained on an experiments.detect folder."""

import json

import jax
import numpy as np
import pytest

from desra_jax.data.image_io import list_images, write_image
from desra_jax.models import RRDBNet
from desra_jax.models.directory import save_model
from tests.conftest import photo_crop, xla_flags
from tests.faults import (
    assert_same_results,
    compilation_cache,
    leftovers,
    python_module,
    run_killed,
    run_to_end,
)

def job_environment(tmp_path) -> dict[str, str]:
    """The environment of a test's job runs: the tests' XLA flags on the CPU, one compilation cache for its runs."""
    return {"XLA_FLAGS": xla_flags(), "JAX_PLATFORMS": "cpu", **compilation_cache(tmp_path / "xla_cache")}


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

    env = job_environment(tmp_path)
    run_to_end(command(tmp_path / "straight"), env=env)
    for point in KILL_POINTS:
        run_killed(command(tmp_path / "killed"), point, env=env)
    assert leftovers(tmp_path / "killed")  # the staged discriminator of the last killed writer
    rerun = run_to_end(command(tmp_path / "killed"), env=env)
    assert "resumed from step 6" in rerun.stderr
    assert_same_results(tmp_path / "straight", tmp_path / "killed", ignored=("tensorboard/*", "checkpoints/*"))


def finetune_setting(root):
    """The constructed GAN-SR / MSE-SR pair of tests/test_finetune.py saved under ``root``, and LR folders of 32x32
    crops (bicubic x4 of 128x128): three training images, two with artifacts, and one held-out image."""
    from desra_jax.data.bundled import bundled_photograph
    from desra_jax.data.degradations import bicubic_downsample
    from tests.test_finetune import constructed_generators

    model, mse, gan = constructed_generators()
    save_model(root / "mse", model, mse)
    save_model(root / "gan", model, gan)
    for folder, name, top, left in (("train", "0_astronaut", 0, 0), ("train", "1_rocket", 100, 100),
                                    ("train", "2_astronaut", 200, 250), ("held_out", "chelsea", 30, 60)):
        write_image(root / folder / f"{name}.png",
                    bicubic_downsample(bundled_photograph(name[2:] if name[0].isdigit() else name)
                                       [top : top + 128, left : left + 128], 4))


def finetune_command(root, workdir, *overrides):
    """The tiny DeSRA fine-tune job over ``finetune_setting(root)``: 4 steps, a checkpoint at 2, no perceptual term
    (no VGG19 to load: the kills are the point, not the losses)."""
    return python_module(
        "experiments.main", "--config=configs/desra_finetune.py:tiny", f"--workdir={workdir}",
        f"--config.init_from={root / 'gan'}", f"--config.mse_model={root / 'mse'}",
        f"--config.data.lr_dir={root / 'train'}", f"--config.data.eval_lr_dir={root / 'held_out'}",
        "--config.data.num_images=2", "--config.data.batch_size=2", "--config.loss.perceptual_weight=0",
        "--config.train.num_steps=4", "--config.train.checkpoint_every=2", "--config.train.eval_every=4",
        "--config.train.log_every=1", *overrides)


#: Where the fine-tune job is killed, in order: inside a pseudo-GT image's write, in the checkpoint of step 2, in
#: the report's write, in the final discriminator's save.
FINETUNE_KILL_POINTS = ("write:2_astronaut.png", "checkpoint:2", "write:index.html", "save_model:discriminator")


@pytest.mark.slow
def test_finetune_job_killed_at_each_save_resumes_to_the_uninterrupted_result(tmp_path):
    finetune_setting(tmp_path)
    env = job_environment(tmp_path)
    run_to_end(finetune_command(tmp_path, tmp_path / "straight"), env=env)
    for point in FINETUNE_KILL_POINTS:
        run_killed(finetune_command(tmp_path, tmp_path / "killed"), point, env=env)
    assert (tmp_path / "killed" / "model").is_dir() and not (tmp_path / "killed" / "discriminator").exists()
    rerun = run_to_end(finetune_command(tmp_path, tmp_path / "killed"), env=env)
    assert "resumed from step 4" in rerun.stderr
    assert_same_results(tmp_path / "straight", tmp_path / "killed", ignored=("tensorboard/*", "checkpoints/*"))
    index = (tmp_path / "killed" / "pseudo_gt" / "index.json").read_text()
    assert '"0_astronaut"' in index and '"2_astronaut"' in index and "1_rocket" not in index


#: Where the online loop is killed, in order: in the state write after its second incoming image (the first
#: sample is buffered), in the second sample's buffer write (samples are named by their incoming file's name), in
#: round 1's checkpoint and its final discriminator save, and in the state write after the round (its samples
#: already moved into round_001/data).
ONLINE_KILL_POINTS = ("write:state.json@2", "write:2_astronaut.png.png", "checkpoint:2", "save_model:discriminator",
                      "write:state.json")


@pytest.mark.slow
def test_online_loop_killed_at_each_save_resumes_to_the_uninterrupted_result(tmp_path):
    finetune_setting(tmp_path)

    def command(workdir):
        return finetune_command(tmp_path, tmp_path / workdir, "--config.online=True",
                                f"--config.online_settings.incoming_dir={tmp_path / 'train'}",
                                "--config.online_settings.buffer_size=2", "--config.online_settings.idle_polls=1",
                                "--config.online_settings.poll_seconds=0")

    env = job_environment(tmp_path)
    run_to_end(command("straight"), env=env)
    online = tmp_path / "straight" / "online"
    state = json.loads((online / "state.json").read_text())
    # Every incoming image seen once, keyed by its relative name; the two with artifacts made version 1.
    assert state == {"seen": list_images(tmp_path / "train"), "buffer": [], "version": 1}
    assert list_images(online / "round_001" / "data" / "lr") == ["0_astronaut.png.png", "2_astronaut.png.png"]
    assert (online / "round_001" / "model").is_dir() and (online / "round_001" / "discriminator").is_dir()
    for point in ONLINE_KILL_POINTS:
        run_killed(command("killed"), point, env=env)
    run_to_end(command("killed"), env=env)
    ignored = ("*tensorboard/*", "*checkpoints/*")
    assert_same_results(tmp_path / "straight", tmp_path / "killed", ignored=ignored)
    # Restarted with nothing new, the loop fine-tunes nothing and changes nothing.
    run_to_end(command("straight"), env=env)
    assert_same_results(tmp_path / "killed", tmp_path / "straight", ignored=ignored)


#: Where the localizer job is killed, in order: in the checkpoint of step 2, in the final model's save (BatchNorm
#: statistics and all).
LOCALIZER_KILL_POINTS = ("checkpoint:2", "save_model:model")


@pytest.mark.slow
def test_localizer_job_on_a_detect_folder_killed_at_each_save_resumes_to_the_uninterrupted_result(tmp_path):
    """configs/localizer.py:tiny on the --out_dir of experiments.detect (GAN-SR and MSE-SR folders -> detect ->
    the masks of the GAN-SR images by their relative names), killed and resumed."""
    from desra_jax.data.synthetic import synthetic_pair
    from desra_jax.detection.settings import DetectionSettings
    from desra_jax.tools import detect

    gan_dir, mse_dir, detect_dir = tmp_path / "gan", tmp_path / "mse", tmp_path / "detect"
    for seed, (name, top, left) in enumerate((("astronaut", 0, 150), ("sub/coffee", 100, 300), ("rocket", 150, 0))):
        gan, mse, _ = synthetic_pair(photo_crop(name.split("/")[-1], (128, 128), top, left)[0], seed=seed)
        write_image(gan_dir / f"{name}.png", gan)
        write_image(mse_dir / f"{name}.png", mse)
    options = detect.DetectOptions(gan_dir, mse_dir, detect_dir, detection=DetectionSettings(min_area=250))
    detected = detect.run(options)
    fractions = {str(gan_dir / f"{r['name']}.png"): r["artifact_fraction"] for r in detected["images"]}
    assert len(fractions) == 3 and all(f > 0.02 for f in fractions.values()), fractions

    def command(workdir):
        return python_module(
            "experiments.main", "--config=configs/localizer.py:tiny", f"--workdir={tmp_path / workdir}",
            f"--config.data.image_dir={gan_dir}", f"--config.data.mask_dir={detect_dir}",
            f"--config.data.val_image_dir={gan_dir}", f"--config.data.val_mask_dir={detect_dir / 'masks'}",
            "--config.train.num_steps=4", "--config.train.checkpoint_every=2", "--config.train.eval_every=4",
            "--config.train.log_every=1")

    env = job_environment(tmp_path)
    run_to_end(command("straight"), env=env)
    per_image = json.loads((tmp_path / "straight" / "eval_0000004.json").read_text())["per_image"]
    assert {r["name"]: r["target_fraction"] for r in per_image} == pytest.approx(fractions, abs=1e-9)
    for point in LOCALIZER_KILL_POINTS:
        run_killed(command("killed"), point, env=env)
    rerun = run_to_end(command("killed"), env=env)
    assert "resumed from step 4" in rerun.stderr
    assert_same_results(tmp_path / "straight", tmp_path / "killed", ignored=("tensorboard/*", "checkpoints/*"))
