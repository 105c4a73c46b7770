"""``python -m experiments.convert``, run as a user runs it, in a subprocess."""

import os
import subprocess
import sys

import numpy as np
import torch

from desra_jax.models.directory import load_model
from references.rrdbnet_torch import RRDBNetTorch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.convert", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_converted_rrdbnet_directory_matches_the_torch_reference(tmp_path, photo_batch):
    torch.manual_seed(0)
    reference = RRDBNetTorch(scale=2, num_feat=16, num_block=2, num_grow_ch=8).eval()
    torch.save({"params_ema": reference.state_dict()}, tmp_path / "in.pth")

    result = convert("rrdbnet", tmp_path / "in.pth", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "RRDBNet(scale=2, num_feat=16, num_block=2, num_grow_ch=8" in result.stdout
    parameters = sum(p.numel() for p in reference.parameters())
    assert f"parameters: {parameters:,}" in result.stdout

    model, variables = load_model(tmp_path / "out")
    x = photo_batch(16, 16)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.abs(np.asarray(model.apply(variables, x)) - expected).max() < 1e-4


def test_bad_input_file_exits_1_naming_it(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint at all")
    result = convert("rrdbnet", bad, tmp_path / "out")
    assert result.returncode == 1
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_wrong_network_for_the_subcommand_names_the_key(tmp_path):
    torch.save({"conv0_0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "disc.pth")
    result = convert("rrdbnet", tmp_path / "disc.pth", tmp_path / "out")
    assert result.returncode == 1
    assert f"{tmp_path / 'disc.pth'}: missing key 'conv_first.weight'" in result.stderr
    assert "Traceback" not in result.stderr
