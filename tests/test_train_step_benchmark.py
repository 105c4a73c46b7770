"""benchmarks/train_step.py's MSE step at the quick sizes, one warm-up and one timed step, in a fresh process (the
benchmark sets JAX's matmul precision and PyTorch's threads for the whole process)."""

import subprocess
import sys


def test_mse_step_agrees_with_pytorch_and_prints_its_times():
    run = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--quick", "--step", "mse", "--steps", "1",
                          "--warmup", "1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr  # 1 when the losses disagree
    assert "losses agree" in run.stdout
    row = next(line.split() for line in run.stdout.splitlines() if line.strip().startswith("mse "))
    jax_ms, torch_ms, ratio = map(float, row[1:])
    assert jax_ms > 0 and torch_ms > 0 and abs(ratio - jax_ms / torch_ms) <= 0.01 * ratio + 0.01
