"""The detection CLI end to end, as a user runs it: a subprocess on small folders made from bundled photographs.

MSE-SR stand-in: a Gaussian-smoothed crop. GAN-SR stand-in: the same with a strong high-frequency texture in a
known square (the artifact). Next to three good pairs (two sizes, one in a sub-folder, ground truth as PNG and
labelme JSON) the folders hold the bad cases the CLI must report by name and survive: sizes that differ, an
alpha channel, an unreadable file and a file without a partner.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from desra_jax.data.image_io import read_image, write_image
from desra_jax.data.masks import read_mask
from desra_jax.detection import detect_artifacts
from desra_jax.metrics.detection import evaluate_detection
from tests.conftest import photo_crop

REPO = Path(__file__).resolve().parents[1]
MIN_AREA = 30
#: name -> (photograph, crop size, crop corner, textured square (top, left, size))
GOOD = {
    "astronaut": ("astronaut", (64, 80), (100, 150), (16, 24, 24)),
    "coffee": ("coffee", (64, 80), (50, 200), (24, 40, 20)),
    "sub/chelsea": ("chelsea", (48, 64), (20, 30), (10, 12, 20)),
    "sub/no_gt": ("coffee", (64, 80), (200, 300), (20, 30, 16)),  # 3 pairs of 64x80 with --batch_size=2: one padded
}


def gan_like_pair(photo, size, corner, square):
    """(gan, mse) float32 RGB: the smoothed crop, and the same with a checker-like texture in the square."""
    mse = cv2.GaussianBlur(photo_crop(photo, size, *corner)[0], (0, 0), 1.5)
    top, left, side = square
    rows, cols = np.mgrid[0:side, 0:side]
    texture = 0.5 + 0.4 * np.sign(np.sin(2.1 * rows + 1.3 * cols))
    gan = mse.copy()
    square_pixels = (slice(top, top + side), slice(left, left + side))
    gan[square_pixels] = 0.4 * gan[square_pixels] + 0.6 * texture[..., None]
    return gan, mse


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """Builds the folders, runs the CLI once; returns (root, completed process)."""
    root = tmp_path_factory.mktemp("detect_cli")
    gan_dir, mse_dir, gt_dir, out_dir = (root / name for name in ("gan", "mse", "gt", "out"))
    for name, (photo, size, corner, square) in GOOD.items():
        gan, mse = gan_like_pair(photo, size, corner, square)
        write_image(gan_dir / f"{name}.png", gan)
        write_image(mse_dir / f"{name}.png", mse)
        top, left, side = square
        if name == "sub/no_gt":
            continue
        if name == "coffee":  # labelme rectangle: corners inclusive
            shape = {"label": "artifact", "points": [[left, top], [left + side - 1, top + side - 1]],
                     "shape_type": "rectangle"}
            (gt_dir / "coffee.json").parent.mkdir(parents=True, exist_ok=True)
            (gt_dir / "coffee.json").write_text(json.dumps(
                {"shapes": [shape], "imageHeight": size[0], "imageWidth": size[1]}))
        else:
            gt = np.zeros(size, bool)
            gt[top : top + side, left : left + side] = True
            write_image(gt_dir / f"{name}.png", gt)
    smooth = photo_crop("rocket", (40, 40), 100, 100)[0]
    write_image(gan_dir / "bad_size.png", smooth)
    write_image(mse_dir / "bad_size.png", smooth[:32])
    bgra = np.concatenate([np.round(smooth[:, :, ::-1] * 255), np.full((40, 40, 1), 255.0)], axis=2)
    cv2.imwrite(str(gan_dir / "alpha.png"), bgra.astype(np.uint8))
    write_image(mse_dir / "alpha.png", smooth)
    (gan_dir / "broken.png").write_bytes(b"\x89PNG truncated")
    write_image(mse_dir / "broken.png", smooth)
    write_image(gan_dir / "orphan.png", smooth)
    command = [sys.executable, "-m", "experiments.detect", f"--gan_dir={gan_dir}", f"--mse_dir={mse_dir}",
               f"--gt_dir={gt_dir}", f"--out_dir={out_dir}", f"--min_area={MIN_AREA}", "--batch_size=2"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    return root, completed


@pytest.mark.slow
def test_cli_runs_and_reports_bad_files_by_name(cli_run):
    root, completed = cli_run
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert (summary["pairs"], summary["processed"]) == (7, 4)
    problems = "\n".join(summary["problems"])
    assert len(summary["problems"]) == 5, problems
    for expected in (r"gan/bad_size\.png: size \(40, 40\) differs from .*mse/bad_size\.png: \(32, 40\)",
                     r"gan/alpha\.png: has an alpha channel", r"gan/broken\.png: not a readable image",
                     r"gan/orphan\.png: no MSE-SR file", r"gt/sub/no_gt\.\*: no ground-truth mask"):
        assert re.search(expected, problems), expected
        assert re.search(expected, completed.stderr), expected  # also in the log
    for bad in ("bad_size", "alpha", "broken", "orphan"):
        assert not (root / "out" / "masks" / f"{bad}.png").exists()


@pytest.mark.slow
def test_cli_masks_match_the_library_and_the_summaries(cli_run):
    root, _ = cli_run
    out = root / "out"
    summary = json.loads((out / "summary.json").read_text())
    records = {record["name"]: record for record in summary["images"]}
    assert sorted(records) == sorted(GOOD)
    assert records["sub/no_gt"].get("iou") is None  # detected, but without ground truth: no metrics
    preds, gts = [], []
    for name in sorted(GOOD):
        gan, mse = read_image(root / "gan" / f"{name}.png"), read_image(root / "mse" / f"{name}.png")
        mask, _ = detect_artifacts(gan[None], mse[None], min_area=MIN_AREA)
        expected = np.asarray(mask[0])
        written = read_mask(out / "masks" / f"{name}.png", shape=gan.shape[:2])
        np.testing.assert_array_equal(written, expected)
        for folder in ("overlays", "d_maps"):
            assert read_image(out / folder / f"{name}.png").shape == gan.shape
        assert records[name]["artifact_pixels"] == int(expected.sum())
        if name == "sub/no_gt":
            continue
        gt_file = root / "gt" / (f"{name}.json" if name == "coffee" else f"{name}.png")
        preds.append(expected)
        gts.append(read_mask(gt_file, shape=gan.shape[:2]))
        # the detector finds the textured square: most of it lies inside the mask
        assert (expected & gts[-1]).sum() > 0.8 * gts[-1].sum(), name
    metrics = evaluate_detection(preds, gts)
    for key in ("mean_iou", "precision", "recall", "n_s", "n_t", "n_g", "n_r"):
        assert summary["metrics"][key] == pytest.approx(metrics[key], abs=1e-12), key
    for name, image in zip(sorted(set(GOOD) - {"sub/no_gt"}), metrics["per_image"]):
        assert records[name]["iou"] == pytest.approx(image["iou"], abs=1e-12)
    assert metrics["recall"] == 1.0 and metrics["mean_iou"] > 0.3
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("name,height,width,artifact_pixels") and len(csv_lines) == 1 + len(GOOD)
    assert not list(out.rglob(".*.tmp"))  # every file was completed


def find_chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium for this test")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


@pytest.mark.slow
def test_gallery_renders_in_headless_chromium(cli_run, tmp_path):
    root, _ = cli_run
    page = root / "out" / "index.html"
    text = page.read_text()
    assert text.count("<img ") == 4 * len(GOOD)
    assert "gan/alpha.png: has an alpha channel" in text  # the problems are listed at the top
    shot = tmp_path / "shot.png"
    command = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,900",
               page.as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    image = read_image(shot)
    assert image.shape == (900, 1400, 3)
    non_white = (image.min(axis=2) < 0.9).mean()
    red = ((image[:, :, 0] > 0.7) & (image[:, :, 1] < 0.3) & (image[:, :, 2] < 0.3)).mean()
    # text alone covers a few percent; the thumbnails fill most of the first screen, and the overlay's red shows
    assert non_white > 0.3, non_white
    assert red > 0.002, red


def test_pairing_by_relative_name_without_extension(tmp_path):
    from experiments.detect import pair_files

    for name in ("gan/x.png", "gan/sub/y.png", "gan/dup.png", "gan/dup.jpg", "mse/x.jpg", "mse/sub/y.png",
                 "mse/dup.png", "gt/sub/y.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    pairs, problems = pair_files(tmp_path / "gan", tmp_path / "mse", tmp_path / "gt")
    assert [(p.name, p.gan.name, p.mse.name, p.gt and p.gt.name) for p in pairs] == [
        ("dup", "dup.jpg", "dup.png", None), ("sub/y", "y.png", "y.png", "y.json"), ("x", "x.png", "x.jpg", None)]
    assert len(problems) == 1 and re.search(r"gan/dup\.png: same name as .*gan/dup\.jpg", problems[0])


@pytest.mark.slow
def test_cli_without_any_pair_exits_with_1_and_names_the_folder(tmp_path):
    (tmp_path / "gan").mkdir()
    command = [sys.executable, "-m", "experiments.detect", f"--gan_dir={tmp_path / 'gan'}",
               f"--mse_dir={tmp_path / 'missing'}", f"--out_dir={tmp_path / 'out'}"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert re.search(r"gan: no image files", completed.stderr) and re.search(r"missing: not a folder", completed.stderr)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["processed"] == 0
