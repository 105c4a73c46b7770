"""The main job (`python -m experiments.main`) end to end on the tiny configs: a whole run from scratch, resume
after a SIGTERM, 1 against 8 devices, and bad configs or data failing with messages that name them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import xla_flags

REPO = Path(__file__).resolve().parents[1]


def main_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.main", *args]


def run_main(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        main_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flat_params(model_dir: Path) -> dict[str, np.ndarray]:
    import jax

    from desra_jax.models.directory import load_model

    _, variables = load_model(model_dir)
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(variables)}


@pytest.mark.slow
def test_ragp_fft_tiny_runs_from_scratch_and_beats_bicubic_after_pretraining(tmp_path):
    from desra_jax.data.image_io import read_image
    from desra_jax.models import RRDBNet, VGGStyleDiscriminator
    from desra_jax.models.directory import load_model

    workdir = tmp_path / "run"
    result = run_main("--config=configs/ragp_fft.py:tiny", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    # The log holds the project's own lines and warnings: no INFO line from orbax (about 25 per checkpoint) or JAX.
    ours = {path.name for folder in ("desra_jax", "experiments") for path in (REPO / folder).rglob("*.py")}
    sources = {match[1] for match in re.finditer(r"^I\d{4} [\d:.]+ +\d+ (\S+):\d+\]", result.stderr, re.M)}
    assert sources and sources <= ours, sources - ours

    # The MSE phase ran first in the same workdir, and its EMA model beats bicubic on the validation photographs.
    # Measured (configs/mse.py:tiny, config.seed 0-4): +0.20 to +0.37 dB PSNR-Y, +0.013 to +0.017 SSIM-Y; the PSNR
    # bound at the minimum - 0.1 dB.
    pretrain = json.loads((workdir / "pretrain" / "eval_0000800.json").read_text())["summary"]
    assert pretrain["psnr_y"] > pretrain["bicubic_psnr_y"] + 0.1, pretrain
    assert pretrain["ssim_y"] > pretrain["bicubic_ssim_y"], pretrain

    # The GAN phase logged every loss term of RaGP + FFT, finite, and evaluated at its end.
    records = read_jsonl(workdir / "metrics.jsonl")
    losses = [r for r in records if "l_g_total" in r]
    assert [r["step"] for r in losses] == list(range(10, 41, 10))
    for name in ("l_pix", "l_fft", "l_g_gan", "l_d_gan", "l_d_gp"):
        assert all(np.isfinite(r[name]) for r in losses), name
    assert "l_percep" not in losses[0]  # tiny runs have no VGG19 weights: the term is off, not faked
    assert any("val/psnr_y" in r and r["step"] == 40 for r in records)
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))

    grid = read_image(workdir / "samples" / "step_0000040.png")
    assert grid.shape[1] == 3 * 600 and grid.std() > 0.05  # [bicubic | SR | HR] of whole images, coffee is widest

    generator, variables = load_model(workdir / "model")
    assert isinstance(generator, RRDBNet) and (generator.num_feat, generator.num_block) == (16, 1)
    discriminator, d_variables = load_model(workdir / "discriminator")
    assert isinstance(discriminator, VGGStyleDiscriminator) and "batch_stats" in d_variables

    # Rerunning the finished command does no work and reports the same result.
    again = run_main("--config=configs/ragp_fft.py:tiny", f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already trained" in again.stderr
    assert result.stdout.strip().splitlines()[-1] == again.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_run_killed_by_sigterm_resumes_to_the_same_parameters(tmp_path):
    from configs import mse
    from experiments import train

    steps, overrides = 60, ["--config.train.log_every=1", "--config.train.checkpoint_every=25"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        main_command("--config=configs/mse.py:tiny", f"--workdir={killed}", f"--config.train.num_steps={steps}",
                     *overrides),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 600
    while not (metrics.exists() and len(read_jsonl(metrics)) >= 10):
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "rerun the same command to resume" in stderr
    stopped_at = max(r["step"] for r in read_jsonl(metrics))
    assert 10 <= stopped_at < steps and not (killed / "model").exists()

    resumed = run_main("--config=configs/mse.py:tiny", f"--workdir={killed}", f"--config.train.num_steps={steps}",
                       *overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {stopped_at}" in resumed.stderr
    # The log reads like one run: each step once, in order.
    assert [r["step"] for r in read_jsonl(metrics) if "l_pix" in r] == list(range(1, steps + 1))

    config = mse.get_config("tiny")
    config.train.update(num_steps=steps, log_every=1, checkpoint_every=25)
    train.train_and_evaluate(config, str(tmp_path / "straight"))
    straight, after_resume = flat_params(tmp_path / "straight" / "model"), flat_params(killed / "model")
    assert straight.keys() == after_resume.keys()
    for name in straight:
        np.testing.assert_allclose(after_resume[name], straight[name], rtol=0, atol=1e-6, err_msg=name)


DEVICES_SCRIPT = """
import json, sys
import jax, numpy as np
from configs import ragp_fft
from experiments import train
from desra_jax.models import RRDBNet
from desra_jax.models.directory import save_model
from desra_jax.training.sharding import data_mesh

config = ragp_fft.get_config("tiny")
config.train.update(num_steps=4, log_every=1, eval_every=100)
# The GAN phase (generator + discriminator + penalty + FFT) from a saved MSE-SR model; the pixel phase's sharding
# is checked by the two-process test.
generator = RRDBNet(scale=config.scale, **config.model)
config.init_from = save_model(f"{sys.argv[1]}/mse_sr", generator,
                              generator.init(jax.random.key(1), np.zeros((1, 16, 16, 3), np.float32))["params"])
losses = {}
for n in (1, 8):
    workdir = f"{sys.argv[1]}/devices_{n}"
    train.train_and_evaluate(config, workdir, data_mesh(jax.devices()[:n]))
    losses[n] = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl") if "steps_per_s" in line]
print(json.dumps(losses))
"""


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_losses(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", DEVICES_SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=8"), "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    one, eight = losses["1"], losses["8"]
    assert [r["step"] for r in one] == [r["step"] for r in eight] == list(range(1, 5))
    # Only the order of float32 reductions differs, and Adam's first steps (about sign(g) * lr) amplify it where a
    # gradient is near 0. Measured: losses agree to 5e-6..1e-4 relative; the mean logits (sums of terms of both
    # signs near 0) to ~5e-4 absolute. A sharding mistake (per-device batch statistics or means) is order 1.
    for a, b in zip(one, eight):
        for name in a:
            if name.startswith("l_"):
                assert b[name] == pytest.approx(a[name], rel=1e-4, abs=5e-4), (a["phase"], a["step"], name)
            elif name.startswith("out_d_"):
                assert b[name] == pytest.approx(a[name], abs=3e-3), (a["phase"], a["step"], name)


@pytest.mark.parametrize(
    "override, named",
    [
        ("--config.train.num_stepz=5", "num_stepz"),
        ("--config.loss.gan_kind=ragann", "ragann"),
        ("--config.discriminator.kind=patchgan", "discriminator.kind"),
        ("--config.data.train_dir=/no/such/folder", "/no/such/folder"),
        ("--config.data.batch_size=0", "data.batch_size"),
        ("--config.pretrain.train.checkpoint_every=0", "config.pretrain.train.checkpoint_every=0: must be"),
        ("--config.train.learning_rate=nan", "config.train.learning_rate=nan: must be a positive finite number"),
    ],
)
def test_a_bad_config_fails_before_any_work_naming_the_key(tmp_path, override, named):
    result = run_main("--config=configs/ragp_fft.py:tiny", f"--workdir={tmp_path}", override)
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr or "num_stepz" in named  # absl reports unknown keys itself
    assert not (tmp_path / "checkpoints").exists()


def test_an_unknown_variant_and_bad_data_folders_are_named(tmp_path):
    result = run_main("--config=configs/mse.py:huge", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "huge" in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main("--config=configs/mse.py:tiny", f"--workdir={tmp_path / 'a'}", f"--config.data.train_dir={empty}")
    assert result.returncode == 1 and str(empty) in result.stderr

    import cv2

    small = tmp_path / "small"
    small.mkdir()
    cv2.imwrite(str(small / "tiny.png"), np.full((32, 40, 3), 128, np.uint8))
    result = run_main("--config=configs/mse.py:tiny", f"--workdir={tmp_path / 'b'}", f"--config.data.train_dir={small}")
    assert result.returncode == 1 and "tiny.png" in result.stderr


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_as_many_devices(tmp_path):
    """Multi-host through jax.distributed on localhost: 2 processes x 2 CPU devices against 1 process x 4 devices.
    Each process feeds its half of the global batch; both must log the single-process losses, and process 0 alone
    writes the final model, equal to the single-process one."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    overrides = ["--config.train.num_steps=3", "--config.train.log_every=1", "--config.train.eval_every=3"]
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2"), "JAX_PLATFORMS": "cpu",
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
    workers = [
        subprocess.Popen(
            main_command("--config=configs/mse.py:tiny", f"--workdir={tmp_path / 'two'}", *overrides, "--distributed",
                         f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"),
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    single = run_main("--config=configs/mse.py:tiny", f"--workdir={tmp_path / 'one'}", *overrides,
                      env={"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4"), "JAX_PLATFORMS": "cpu"})
    assert single.returncode == 0, single.stderr[-3000:]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]

    two, one = (read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("two", "one"))
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for a, b in zip(one, two):
        for name in a:
            if name.startswith(("l_", "val/")):
                assert b[name] == pytest.approx(a[name], rel=1e-5), (a["step"], name)
    one_params, two_params = flat_params(tmp_path / "one" / "model"), flat_params(tmp_path / "two" / "model")
    for name in one_params:
        np.testing.assert_allclose(two_params[name], one_params[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_realesrgan_tiny_degrades_on_the_device_through_both_stages(tmp_path):
    """configs/realesrgan.py:tiny: the Real-ESRNet stage (L1 on degraded pairs, pair pool) then the GAN stage (U-Net
    discriminator, vanilla GAN, sharpened targets), both on pairs degraded inside the step; a rerun trains nothing."""
    from desra_jax.models import UNetDiscriminatorSN
    from desra_jax.models.directory import load_model

    workdir = tmp_path / "run"
    args = ("--config=configs/realesrgan.py:tiny", f"--workdir={workdir}", "--config.pretrain.train.num_steps=20",
            "--config.pretrain.train.eval_every=20", "--config.train.num_steps=10", "--config.train.eval_every=10",
            "--config.train.log_every=1")
    result = run_main(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    pretrain = read_jsonl(workdir / "pretrain" / "metrics.jsonl")
    assert all(np.isfinite(r["l_pix"]) for r in pretrain if "l_pix" in r)
    losses = [r for r in read_jsonl(workdir / "metrics.jsonl") if "l_g_gan" in r]
    assert len(losses) == 10 and all(np.isfinite([r["l_pix"], r["l_g_gan"], r["l_d_gan"]]).all() for r in losses)
    assert isinstance(load_model(workdir / "discriminator")[0], UNetDiscriminatorSN)
    again = run_main(*args)
    assert again.returncode == 0 and "already trained" in again.stderr
