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
from desra_jax.data.ade20k import ade20k_class_names
from desra_jax.detection import adjustment, detect_artifacts, load_class_adjustment
from desra_jax.detection.settings import DetectionSettings, SemanticSettings
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
    from desra_jax.data.result_pairs import pair_results

    for name in ("gan/x.png", "gan/sub/y.png", "gan/dup.png", "gan/dup.jpg", "mse/x.jpg", "mse/sub/y.png",
                 "mse/dup.png", "gt/sub/y.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    pairs, problems = pair_results(tmp_path / "gan", tmp_path / "mse", tmp_path / "gt")
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


# --- the semantic path: experiments.calibrate, then experiments.detect --segformer --class_adjustment -------------
#
# The calibrate CLI runs as a user runs it (a subprocess); detection runs through the CLI's `run` in this process,
# so that its compilations (SegFormer, the pipeline) also serve the direct computation it is checked against (test
# time), and the detect flags are checked by a subprocess that stops at an unreadable SegFormer.

#: Pairs of one size for the semantic path: 3 pairs with batch size 2, so the second batch is padded (the padding
#: must not be counted by the calibration).
SEMANTIC = ("astronaut", "coffee", "sub/no_gt")


def tiny_segformer(directory):
    """A randomly initialised SegFormer with ADE20K's 150 labels, saved as transformers saves a model.

    One encoder stage (with sequence reduction): compiling it costs ~2 s of CPU in each process, a fifth of b0's.
    """
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    names = ade20k_class_names()
    config = SegformerConfig(num_encoder_blocks=1, depths=[1], sr_ratios=[2], hidden_sizes=[8], patch_sizes=[7],
                             strides=[4], num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=8,
                             num_labels=len(names), id2label=dict(enumerate(names)),
                             label2id={name: i for i, name in enumerate(names)})
    SegformerForSemanticSegmentation(config).eval().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory):
    """Calibrates with the calibrate CLI, then detects with that table; returns (root, calibrate process,
    detection summary). Whole images at their resolution (size 0 / None): the default 512 x 512 is slow on a CPU."""
    from desra_jax.tools import detect

    root = tmp_path_factory.mktemp("semantic_cli")
    segformer = tiny_segformer(root / "segformer")
    for name in SEMANTIC:
        gan, mse = gan_like_pair(*GOOD[name])
        write_image(root / "gan" / f"{name}.png", gan)
        write_image(root / "mse" / f"{name}.png", mse)
    calibrate = subprocess.run([sys.executable, "-m", "experiments.calibrate", f"--gan_dir={root / 'gan'}",
                                f"--mse_dir={root / 'mse'}", f"--segformer={segformer}", "--batch_size=2",
                                "--segformer_size=0", f"--out={root / 'adjustment.json'}"],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert calibrate.returncode == 0, calibrate.stderr
    semantics = SemanticSettings(str(segformer), str(root / "adjustment.json"), segformer_size=None)
    summary = detect.run(detect.DetectOptions(root / "gan", root / "mse", root / "out", batch_size=2,
                                              detection=DetectionSettings(min_area=MIN_AREA, semantics=semantics)))
    return root, calibrate, summary


@pytest.fixture(scope="module")
def direct(semantic_run):
    """What the CLIs should compute, computed here with the library: (gans, mses, labels, D) of the pairs in name
    order, batched as the CLIs batch them (pairs of 2, the last batch padded)."""
    from desra_jax.convert import load_segformer
    from desra_jax.detection import indicator_d, segment

    root = semantic_run[0]
    model, params, _ = load_segformer(root / "segformer")
    gans = [read_image(root / "gan" / f"{name}.png") for name in SEMANTIC]
    mses = [read_image(root / "mse" / f"{name}.png") for name in SEMANTIC]
    labels, ds = [], []
    for start in (0, 2):
        gan, mse = gans[start : start + 2], mses[start : start + 2]
        pad = 2 - len(gan)
        gan_batch, mse_batch = np.stack(gan + gan[-1:] * pad), np.stack(mse + mse[-1:] * pad)
        labels += list(np.asarray(segment(gan_batch, model, params, size=None))[: len(gan)])
        ds += list(np.asarray(indicator_d(gan_batch, mse_batch))[: len(gan)])
    return gans, mses, np.stack(labels), np.stack(ds)


@pytest.mark.slow
def test_calibrate_cli_writes_the_calibration_of_the_segmented_pairs(semantic_run, direct):
    from desra_jax.detection import calibrate_class_adjustment

    root, calibrate, _ = semantic_run
    assert re.search(r"calibrated on 3 of 3 pairs .* table: .*adjustment\.json", calibrate.stderr)
    _, _, labels, ds = direct
    expected = calibrate_class_adjustment([(ds, labels)], ade20k_class_names())
    table = json.loads((root / "adjustment.json").read_text())
    classes = table["classes"]
    assert len(classes) == 150 and table["percentile"] == 85 and table["resolution"] == 1 / 4000
    np.testing.assert_array_equal([c["pixels"] for c in classes], expected.pixels)
    assert sum(c["pixels"] for c in classes) == len(SEMANTIC) * 64 * 80  # the padded row was not counted
    np.testing.assert_array_equal([c["bin"] for c in classes], expected.bins)
    np.testing.assert_allclose([c["A_exact"] for c in classes], expected.exact, rtol=1e-12)
    assert [c["seen"] for c in classes] == list(expected.seen)
    # the textured squares lower D: some class present needs an adjustment below 1
    assert min(c["A_binned"] for c in classes if c["seen"]) < 1


@pytest.mark.slow
def test_detect_cli_with_segformer_matches_the_library(semantic_run, direct):
    from desra_jax import report

    root, _, returned = semantic_run
    gans, mses, labels, _ = direct
    adjustment, names = load_class_adjustment(root / "adjustment.json")
    masks = []
    for start in (0, 2):  # batched as the CLI batches, so the compilation is shared
        gan, mse, label = gans[start : start + 2], mses[start : start + 2], labels[start : start + 2]
        pad = 2 - len(gan)
        mask, _ = detect_artifacts(np.stack(gan + gan[-1:] * pad), np.stack(mse + mse[-1:] * pad),
                                   labels=np.concatenate([label, label[-1:]] if pad else [label]),
                                   class_adjustment=adjustment, threshold=0.7, min_area=MIN_AREA)
        masks += list(np.asarray(mask)[: len(gan)])
    out = root / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(returned))
    assert summary["settings"]["semantics"] == {"segformer": str(root / "segformer"), "segment": "gan",
                                                "segformer_size": None, "segformer_resize": "square",
                                                "class_adjustment": str(root / "adjustment.json")}
    records = {record["name"]: record for record in summary["images"]}
    page = (out / "index.html").read_text()
    for i, name in enumerate(SEMANTIC):
        written = read_mask(out / "masks" / f"{name}.png", shape=gans[i].shape[:2])
        np.testing.assert_array_equal(written, masks[i], err_msg=name)
        present = {names[k]: (labels[i] == k).mean() for k in np.unique(labels[i])}
        assert records[name]["classes"] == pytest.approx(present, abs=1e-6)
        colours = report.colorize_labels(labels[i], len(names))
        np.testing.assert_allclose(read_image(out / "segmentation" / f"{name}.png"), np.round(colours * 255) / 255,
                                   atol=1e-6)
        largest = max(present, key=present.get)
        assert f"{largest} {present[largest]:.1%}" in page  # the legend names the classes
    assert page.count("<img ") == 5 * len(SEMANTIC) and "segmentation (classes)" in page


@pytest.mark.slow
def test_detect_cli_semantic_flags_and_an_unreadable_segformer(tmp_path):
    command = [sys.executable, "-m", "experiments.detect", f"--gan_dir={tmp_path}", f"--mse_dir={tmp_path}",
               f"--out_dir={tmp_path / 'out'}", f"--segformer={tmp_path / 'no_model'}", "--segment=mse",
               "--segformer_size=640", f"--class_adjustment={adjustment.ADE20K_ADJUSTMENT_AUTHORS_TXT}"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert re.search(r"no_model: no such SegFormer checkpoint", completed.stderr), completed.stderr


def test_class_adjustment_without_segformer_is_an_error_naming_the_file(tmp_path):

    with pytest.raises(ValueError, match=r"table\.json: a class adjustment table needs --segformer"):
        DetectionSettings.from_values({"class_adjustment": str(tmp_path / "table.json")})


def test_label_colours_and_legend():
    from desra_jax import report

    labels = np.array([[0, 0, 2], [2, 2, 255]])
    legend = report.label_legend(labels, ["wall", "building", "sky"])
    assert [(e["name"], e["fraction"]) for e in legend] == [("sky", 0.5), ("wall", pytest.approx(1 / 3, abs=1e-6))]
    colours = report.colorize_labels(labels, 3)
    palette = report.label_palette(3)
    np.testing.assert_array_equal(colours[0, 0], palette[0])
    np.testing.assert_array_equal(colours[1, 2], [0, 0, 0])  # outside the classes: black
    assert legend[0]["colour"] == "#{:02x}{:02x}{:02x}".format(*np.round(palette[2] * 255).astype(int))
    assert len({tuple(c) for c in np.round(report.label_palette(150) * 255).astype(int)}) == 150


@pytest.mark.slow
def test_a_table_with_other_class_names_is_applied_by_index_with_a_warning(semantic_run, tmp_path, caplog):
    from desra_jax.tools import detect

    root = semantic_run[0]
    table = json.loads((root / "adjustment.json").read_text())
    table["classes"][2]["name"] = "heaven"
    (tmp_path / "renamed.json").write_text(json.dumps(table))
    semantics = SemanticSettings(str(root / "segformer"), str(tmp_path / "renamed.json"), segformer_size=None)
    detect.run(detect.DetectOptions(root / "gan", root / "mse", tmp_path / "out", batch_size=2,
                                    detection=DetectionSettings(min_area=MIN_AREA, semantics=semantics)))
    assert re.search(r"renamed\.json: 1 class name\(s\) differ .* 2: 'heaven' vs 'sky'", caplog.text)
    for name in SEMANTIC:
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / f"{name}.png", shape=(64, 80)),
                                      read_mask(root / "out" / "masks" / f"{name}.png", shape=(64, 80)))
