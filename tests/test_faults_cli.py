"""Commands killed (SIGKILL) inside their atomic saves and run again give what an uninterrupted run gives, with no
leftovers: ``experiments.convert`` (``save_model``), ``experiments.evaluate`` and ``experiments.upscale``
(``write_bytes_atomic``). Also
checks that the harness in tests/faults.py notices each kind of difference it is there to catch."""

import json

import numpy as np
import pytest
import torch

from desra_jax.convert import load_rrdbnet
from desra_jax.data.image_io import write_image
from desra_jax.models.directory import remove_stale_partials, save_model
from desra_jax.tools.upscale import OPTIONS_RECORD
from tests.conftest import photo_crop, write_derained_pairs
from tests.faults import (
    assert_same_model,
    assert_same_results,
    leftovers,
    python_module,
    run_killed,
    run_to_end,
)
from references.rrdbnet_torch import RRDBNetTorch


def tiny_rrdbnet_file(path, seed):
    """A one-block PyTorch RRDBNet's state_dict as a .safetensors file (read without torch: a faster command)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(RRDBNetTorch(scale=2, num_feat=4, num_block=1, num_grow_ch=2).state_dict(), path)
    return path


@pytest.mark.slow
def test_convert_killed_while_saving_the_model_reruns_to_the_same_model(tmp_path):
    first = tiny_rrdbnet_file(tmp_path / "a.safetensors", 0)
    second = tiny_rrdbnet_file(tmp_path / "b.safetensors", 1)
    def convert(source, out, *flags):
        return python_module("experiments.convert", "rrdbnet", source, out, *flags)
    run_to_end(convert(first, tmp_path / "straight" / "model"))

    run_killed(convert(first, tmp_path / "killed" / "model"), "save_model:model")
    assert not (tmp_path / "killed" / "model").exists()
    assert len(leftovers(tmp_path / "killed")) == 1  # the staged model of the killed writer
    run_to_end(convert(first, tmp_path / "killed" / "model"))
    assert_same_results(tmp_path / "straight", tmp_path / "killed")

    # Replacing a model, killed between moving the old one aside and moving the new one in: the old one comes back.
    save_model(tmp_path / "second" / "model", *load_rrdbnet(second))  # what the command writes, in this process
    run_killed(convert(second, tmp_path / "killed" / "model", "--overwrite"), "save_model:model:moved_aside")
    assert not (tmp_path / "killed" / "model").exists() and len(leftovers(tmp_path / "killed")) == 2
    remove_stale_partials(tmp_path / "killed" / "model")
    assert_same_results(tmp_path / "straight", tmp_path / "killed")
    run_to_end(convert(second, tmp_path / "killed" / "model", "--overwrite"))
    assert_same_results(tmp_path / "second", tmp_path / "killed")


SIZE = 24


@pytest.fixture(scope="module")
def derained(tmp_path_factory):
    """pred/ and gt/ folders of two photograph pairs, the predictions with noise, and one prediction without gt."""
    root = tmp_path_factory.mktemp("derained")
    write_derained_pairs(root, SIZE)
    write_image(root / "pred" / "rain-003.png", photo_crop("chelsea", (SIZE, SIZE))[0])
    return root


@pytest.mark.slow
def test_evaluate_killed_while_writing_its_summary_reruns_to_the_same_files(derained, tmp_path):
    def evaluate(out):
        return python_module(
            "experiments.evaluate", f"--pred={derained / 'pred'}", f"--gt={derained / 'gt'}", f"--out={out}",
            "--metrics=psnr,ssim",
        )
    run_to_end(evaluate(tmp_path / "straight"))

    run_killed(evaluate(tmp_path / "killed"), "write:summary.json")
    assert sorted(p.name for p in (tmp_path / "killed").iterdir() if not p.name.startswith(".")) == [
        "per_image.csv", "summary.md"]
    assert [p.split(".")[1] for p in leftovers(tmp_path / "killed")] == ["summary"]
    run_to_end(evaluate(tmp_path / "killed"))

    assert_same_results(tmp_path / "straight", tmp_path / "killed")
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["processed"] == 2 and "rain-003.png: no ground truth" in summary["problems"][0]


def test_the_comparison_notices_each_kind_of_difference(tmp_path):
    from desra_jax.models.rrdbnet import RRDBNet
    import jax

    model = RRDBNet(scale=2, num_feat=4, num_block=1, num_grow_ch=2)
    params = model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"]
    for run in ("a", "b"):
        save_model(tmp_path / run / "model", model, params)
        (tmp_path / run / "summary.json").write_text(json.dumps({"psnr": 30.0, "steps_per_s": len(run),
                                                                 "out": str(tmp_path / run / "x.png")}))
        (tmp_path / run / "tensorboard").mkdir()
        (tmp_path / run / "tensorboard" / f"events.{run}").write_bytes(run.encode())
        write_image(tmp_path / run / "x.png", photo_crop("coffee", (8, 8))[0])
    assert_same_results(tmp_path / "a", tmp_path / "b")  # timing fields, own paths, TensorBoard events aside

    (tmp_path / "b" / ".x.png.1-00000000-00000000.tmp").write_bytes(b"")
    with pytest.raises(AssertionError, match="leftovers"):
        assert_same_results(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / ".x.png.1-00000000-00000000.tmp").unlink()
    write_image(tmp_path / "b" / "x.png", photo_crop("coffee", (8, 8), 1)[0])
    with pytest.raises(AssertionError, match="x.png differs"):
        assert_same_results(tmp_path / "a", tmp_path / "b")
    write_image(tmp_path / "b" / "x.png", photo_crop("coffee", (8, 8))[0])
    (tmp_path / "b" / "summary.json").write_text(json.dumps({"psnr": 30.01, "steps_per_s": 1,
                                                             "out": str(tmp_path / "b" / "x.png")}))
    with pytest.raises(AssertionError, match="summary.json differs"):
        assert_same_results(tmp_path / "a", tmp_path / "b")

    nudged = jax.tree.map(lambda p: p, params)
    nudged["conv_last"]["bias"] = params["conv_last"]["bias"].at[0].add(np.float32(2**-20))
    save_model(tmp_path / "c", model, nudged)
    with pytest.raises(AssertionError, match=r"\['conv_last'\]\['bias'\] differs"):
        assert_same_model(tmp_path / "a" / "model", tmp_path / "c")


@pytest.mark.slow
def test_upscale_killed_while_writing_a_result_reruns_to_the_same_bytes(tmp_path):
    """Killed with the second of three results complete but not yet renamed: the rerun skips the finished first
    one, writes the other two, and the folder is byte for byte that of an uninterrupted run."""
    from desra_jax.models import SRVGGNetCompact

    import jax

    model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    save_model(tmp_path / "model", model, model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"])
    for i, photo in enumerate(("astronaut", "coffee", "chelsea")):
        write_image(tmp_path / "in" / f"{i}.png", photo_crop(photo, (12, 16), 40, 60)[0])
    def upscale(out):
        return python_module("experiments.upscale", "--input", tmp_path / "in", "--output", out,
                                            "--model", tmp_path / "model", "--tile", 0, "--batch_size", 1)
    run_to_end(upscale(tmp_path / "straight"))

    run_killed(upscale(tmp_path / "killed"), "write:1_out.png")
    staged = leftovers(tmp_path / "killed")
    assert len(staged) == 1 and staged[0].startswith(".1_out.png.")  # the complete, unrenamed second result
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == sorted(["0_out.png", OPTIONS_RECORD, *staged])
    rerun = run_to_end(upscale(tmp_path / "killed"))
    assert "skipped 1 finished file(s)" in rerun.stdout and "wrote 2 of 3 image(s)" in rerun.stdout
    assert_same_results(tmp_path / "straight", tmp_path / "killed")
