"""Where the commands write, and what they will not write: the pixel limits (``--max_pixels`` on every image
read, ``--max_output_pixels`` and the model's scale on upscale's results), outputs that would land on an input or
on each other (refused before any work, naming both paths), a command's own output folder never read back as
input, upscale's options record beside its results (other options refused unless ``--overwrite``), and
detection's batches no larger than the pairs there are."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from desra_jax.data.image_io import read_image, write_image
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.models import SRVGGNetCompact
from desra_jax.models.directory import save_model
from desra_jax.tools import detect, fuse, upscale
from tests.bad_inputs import GIANT_ERROR, GIANT_SIDE, declared_giant_png
from tests.conftest import photo_crop, xla_flags
from tests.faults import REPO

#: Side of the good images: the x4 results are large enough for D's window and min_area 4.
SIZE = 16


def tiny_sr(folder, scale: int = 4):
    """A model directory of a small random SRVGGNetCompact that upscales by ``scale``."""
    model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=scale)
    save_model(folder, model, model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"])
    return folder


def photos(folder, names, size=(SIZE, SIZE)):
    """Writes a different crop of a photograph to each of ``names`` (relative paths) under ``folder``."""
    for i, name in enumerate(names):
        write_image(folder / name, photo_crop("astronaut", size, 40 + 20 * i, 100)[0])
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_sr(tmp_path_factory.mktemp("model") / "srvgg")


def run_cli(module: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags()}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def options(source, out, model, **values) -> upscale.UpscaleOptions:
    return upscale.UpscaleOptions(source, out, str(model), tile=0, **values)


@pytest.mark.slow
def test_a_declared_giant_is_skipped_by_name_and_the_rest_run_until_max_pixels_is_raised(tmp_path, model):
    inputs = photos(tmp_path / "in", ["good_1.png", "good_2.png"])
    (inputs / "giant.png").write_bytes(declared_giant_png(GIANT_SIDE, GIANT_SIDE))
    refused = f"{inputs / 'giant.png'}: {GIANT_ERROR} (raise it with --max_pixels)"
    first = run_cli("experiments.upscale", "--input", inputs, "--output", tmp_path / "out", "--model", model)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr[-3000:]  # some input failed
    assert refused in first.stderr and "wrote 2 of 3 image(s)" in first.stdout, first.stderr[-3000:]
    raised = run_cli("experiments.upscale", "--input", inputs, "--output", tmp_path / "out", "--model", model,
                     "--max_pixels", GIANT_SIDE**2)  # read, then found short (a decoder's peak: one row)
    assert f"{inputs / 'giant.png'}: not a readable image file" in raised.stderr, raised.stderr[-3000:]
    assert "skipped 2 finished file(s)" in raised.stdout and raised.returncode == 1

    partners = photos(tmp_path / "mse", ["good_1.png", "good_2.png"])
    (partners / "giant.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    result = run_cli("experiments.detect", "--gan_dir", inputs, "--mse_dir", partners, "--out_dir",
                     tmp_path / "detect", "--min_area", 4)
    assert result.returncode == 0 and refused in result.stderr, result.stderr[-3000:]  # some pair was processed
    summary = json.loads((tmp_path / "detect" / "summary.json").read_text())
    assert summary["processed"] == 2 and summary["problems"] == [f"{refused}; skipped"]
    low = detect.run(detect.DetectOptions(inputs, partners, tmp_path / "low", max_pixels=SIZE * SIZE - 1))
    assert low["processed"] == 0 and all("more than the limit of 255 (raise it with --max_pixels)" in p
                                         for p in low["problems"])


def test_a_result_over_max_output_pixels_is_refused_by_name_before_any_work(tmp_path, model):
    inputs = photos(tmp_path / "in", ["big.png"], (64, 64))
    summary = upscale.run(options(inputs, tmp_path / "out", model, outscale=1000.0))
    assert summary["written"] == [] and summary["problems"] == [
        f"{inputs / 'big.png'}: 64 x 64 upscaled x1000 would be 64000 x 64000 = 4,096,000,000 pixels, more than "
        f"the limit of {upscale.MAX_OUTPUT_PIXELS:,} (raise it with --max_output_pixels); skipped"]
    photos(inputs, ["small.png"], (8, 8))
    summary = upscale.run(options(inputs, tmp_path / "low", model, max_output_pixels=32 * 32))
    assert [os.path.basename(p) for p in summary["written"]] == ["small_out.png"]
    assert summary["problems"][0].startswith(f"{inputs / 'big.png'}: 64 x 64 upscaled x4 would be 256 x 256")


def test_a_model_that_scales_beyond_any_sr_model_is_refused_at_load(tmp_path):
    huge = tiny_sr(tmp_path / "x32", scale=32)
    with pytest.raises(ValueError, match=f"^{huge}: scales images by 32; an SR model this runs scales by at most 16$"):
        upscale.run(options(photos(tmp_path / "in", ["a.png"]), tmp_path / "out", huge))


def test_a_desra_mask_and_a_result_of_one_path_are_refused_naming_both(tmp_path, model):
    inputs = photos(tmp_path / "in", ["a.png", "masks/a.png"])
    out = tmp_path / "out"
    with pytest.raises(ValueError) as raised:
        upscale.run(options(inputs, out, model, mse_model=str(model), suffix="", detection=DetectionSettings(
            min_area=4)))
    assert str(raised.value).startswith(f"{out / 'masks' / 'a.png'}: would be written twice, as a DeSRA file of "
                                        f"{inputs / 'a.png'} and as the result of {inputs / 'masks' / 'a.png'}")
    assert [p.name for p in out.rglob("*")] == []  # before any work: not even the options record


def test_an_output_on_an_input_is_refused(tmp_path, model):
    inputs = photos(tmp_path / "in", ["a.png"])
    with pytest.raises(ValueError, match=f"^{inputs}: is the input folder; give another output folder"):
        upscale.run(options(inputs, inputs, model))
    with pytest.raises(ValueError, match=f"^{inputs / 'a.png'}: would be written as the result of "
                                         f"{inputs / 'a.png'}, and is the input {inputs / 'a.png'}"):
        upscale.run(options(inputs / "a.png", inputs, model, suffix=""))
    assert sorted(p.name for p in inputs.iterdir()) == ["a.png"]


def test_one_stem_with_two_extensions_gives_two_results_or_is_refused(tmp_path, model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    levels = np.round(photo_crop("coffee", (SIZE, SIZE), 60, 60)[0] * 255).astype(np.uint8)
    for suffix in (".bmp", ".tif"):
        cv2.imwrite(str(inputs / f"pic{suffix}"), levels)
    summary = upscale.run(options(inputs, tmp_path / "auto", model))
    assert sorted(os.path.basename(p) for p in summary["written"]) == ["pic_out.png", "pic_out.tif"]
    assert summary["images"] == 2 and summary["problems"] == []
    with pytest.raises(ValueError, match=f"^{tmp_path / 'png' / 'pic_out.png'}: would be written twice, as the "
                                         f"result of {inputs / 'pic.bmp'} and as the result of {inputs / 'pic.tif'}"):
        upscale.run(options(inputs, tmp_path / "png", model, ext="png"))


def test_a_rerun_with_other_options_is_refused_unless_overwrite(tmp_path, model):
    inputs, out = photos(tmp_path / "in", ["a.png"]), tmp_path / "out"
    upscale.run(options(inputs, out, model, outscale=4.0))
    assert read_image(out / "a_out.png").shape == (4 * SIZE, 4 * SIZE, 3)
    assert upscale.run(options(inputs, out, model, outscale=4.0))["skipped"] == [str(inputs / "a.png")]
    with pytest.raises(ValueError) as raised:
        upscale.run(upscale.UpscaleOptions(inputs, out, str(model), outscale=2.0, tile=64))
    assert str(raised.value) == (f"{out}: holds results made with other options: outscale 4.0 (now 2.0), tile 0 "
                                 "(now 64); rerun with --overwrite to replace them, or give another output folder")
    summary = upscale.run(upscale.UpscaleOptions(inputs, out, str(model), outscale=2.0, tile=64, overwrite=True))
    assert summary["skipped"] == [] and len(summary["written"]) == 1
    assert read_image(out / "a_out.png").shape == (2 * SIZE, 2 * SIZE, 3)
    assert json.loads((out / upscale.OPTIONS_RECORD).read_text())["outscale"] == 2.0


def test_detect_never_reads_its_own_outputs_and_refuses_an_input_folder_as_out_dir(tmp_path):
    folder = photos(tmp_path / "d", ["a.png", "b.png", "sub/c.png"])
    counts = []
    for _ in range(3):
        summary = detect.run(detect.DetectOptions(folder, folder, folder / "out", detection=DetectionSettings(
            min_area=4)))
        assert summary["pairs"] == 3 and summary["problems"] == []
        counts.append(sum(1 for p in (folder / "out").rglob("*") if p.is_file()))
    assert counts[0] == counts[1] == counts[2]
    with pytest.raises(ValueError, match=f"^{folder}: is the input folder --gan_dir; give another --out_dir"):
        detect.run(detect.DetectOptions(folder, tmp_path / "elsewhere", folder))
    with pytest.raises(ValueError, match=f"^{folder / 'out' / 'masks' / 'a.png'}: would be written as a detection "
                                         f"file of {folder / 'out' / 'masks' / 'a.png'}, and is the input"):
        detect.run(detect.DetectOptions(folder / "out" / "masks", folder / "out" / "masks", folder / "out"))


def test_detect_batches_hold_at_most_the_pairs_there_are(tmp_path, monkeypatch):
    folder = photos(tmp_path / "d", ["a.png", "b.png", "c.png"])
    sizes = []
    batch = Detector.batch

    def recorded(self, gans, mses, batch_size):
        sizes.append((len(gans), batch_size))
        return batch(self, gans, mses, batch_size)

    monkeypatch.setattr(Detector, "batch", recorded)
    summary = detect.run(detect.DetectOptions(folder, folder, tmp_path / "out", batch_size=300,
                                              detection=DetectionSettings(min_area=4)))
    assert summary["processed"] == 3 and sizes == [(3, 3)]  # padded to 3 pairs, not to 300


def test_fuse_refuses_an_input_folder_as_its_output_folder(tmp_path):
    base, other = photos(tmp_path / "base", ["a.png"]), photos(tmp_path / "other", ["a.png"])
    with pytest.raises(ValueError, match=f"^{base}: is an input folder; give another --out"):
        fuse.run(fuse.FuseOptions(base, (other,), tmp_path / "no-localizer", base))  # before the localizer is read
    assert sorted(p.name for p in base.iterdir()) == ["a.png"]
