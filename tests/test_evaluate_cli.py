"""experiments.evaluate: pairing of the released deraining test layouts, and scores of bundled-photograph pairs
against hand-computed PSNR and the PyTorch LPIPS reference."""

import csv
import json

import numpy as np
import pytest
import torch

from desra_jax.data.image_io import read_image, write_image
from desra_jax.data.reference_pairs import load_reference_pair, pair_references, pairing_key
from desra_jax.tools.evaluate import NO_WEIGHTS, EvaluateOptions, run
from tests.conftest import photo_crop, write_derained_pairs
from references.lpips_torch import random_lpips, save_released_layout

SIZE = 48


@pytest.mark.parametrize(
    "relative, key, role",
    [
        ("rain-001.png", "001", "rainy"),  # Rain100L / Rain12, JORDER and PReNet releases
        ("norain-001.png", "001", "clean"),
        ("rainy/rain-001.png", "001", "rainy"),
        ("norain/norain-001.png", "001", "clean"),
        ("gt/735gt.png", "735", "clean"),  # SPA-Data real_test_1000
        ("rain/735.png", "735", "rainy"),
        ("target/12_GT.jpg", "12", "clean"),
        ("test_syn/7.jpg", "test_syn/7", None),  # Rain800: no marks
        ("gt.png", "gt", None),
    ],
)
def test_pairing_key(relative, key, role):
    assert pairing_key(relative) == (key, role)


def write_dummy(path, width=SIZE):
    write_image(path, np.full((SIZE, width, 3), 0.5, np.float32))


def test_pairs_of_the_released_layouts(tmp_path):
    rain100l, pred = tmp_path / "Rain100L", tmp_path / "pred"
    for i in (1, 2, 3):
        write_dummy(rain100l / "rainy" / f"rain-00{i}.png")
        write_dummy(rain100l / f"norain-00{i}.png")
    for i in (1, 2, 4):
        write_dummy(pred / f"rain-00{i}.png")

    pairs, problems = pair_references(pred, rain100l)

    assert [(p.name, p.pred.name, p.gt.name) for p in pairs] == [
        ("001", "rain-001.png", "norain-001.png"), ("002", "rain-002.png", "norain-002.png")]
    assert len(problems) == 2
    assert "rain-004.png: no ground truth" in problems[0] and "norain-003.png: no derained image" in problems[1]

    spa, spa_pred = tmp_path / "real_test_1000", tmp_path / "spa_pred"
    write_dummy(spa / "rain" / "735.png")
    write_dummy(spa / "gt" / "735gt.png")
    write_dummy(spa_pred / "735.png")
    pairs, problems = pair_references(spa_pred, spa)
    assert [(p.name, p.gt.name) for p in pairs] == [("735", "735gt.png")] and problems == []


def test_rain800_side_by_side_ground_truth_gives_its_left_half(tmp_path):
    clean, rainy = photo_crop("chelsea", (SIZE, SIZE), 50, 50)[0], photo_crop("rocket", (SIZE, SIZE), 50, 50)[0]
    write_image(tmp_path / "test_syn" / "1.png", np.concatenate([clean, rainy], axis=1))
    write_image(tmp_path / "pred" / "1.png", rainy)

    (pair,), problems = pair_references(tmp_path / "pred", tmp_path / "test_syn")
    pred, gt = load_reference_pair(pair)

    assert problems == [] and gt.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(gt, read_image(tmp_path / "test_syn" / "1.png")[:, :SIZE])


@pytest.fixture(scope="module")
def scored_folders(tmp_path_factory):
    """pred/ and gt/ with two photographs (the predictions with noise) and one pair whose sizes differ."""
    root = tmp_path_factory.mktemp("evaluate")
    write_derained_pairs(root, SIZE)
    write_dummy(root / "gt" / "norain-003.png")
    write_dummy(root / "pred" / "rain-003.png", width=SIZE + 2)
    return root


def y_psnr(x, y):
    """PSNR on the BT.601 Y channel, [0, 255] scale, written out by hand."""
    def luma(im):
        return 16.0 + im.astype(np.float64) @ np.array([65.481, 128.553, 24.966])
    return 10 * np.log10(255.0**2 / np.mean((luma(x) - luma(y)) ** 2))


def test_scores_without_lpips_weights(scored_folders):
    root = scored_folders

    summary = run(EvaluateOptions(root / "pred", root / "gt", root / "out", dataset="Rain100L"))

    assert summary["processed"] == 2 and len(summary["problems"]) == 1
    assert "rain-003.png: size (48, 50) differs" in summary["problems"][0]
    for image in summary["images"]:
        pred, gt = read_image(image["pred"]), read_image(image["gt"])
        assert image["psnr"] == pytest.approx(y_psnr(pred, gt), abs=1e-3)
        assert 0.3 < image["ssim"] < 0.95 and image["lpips"] == NO_WEIGHTS
    rows = list(csv.DictReader(open(root / "out" / "per_image.csv")))
    assert [r["name"] for r in rows] == ["001", "002"] and rows[0]["lpips"] == NO_WEIGHTS
    table = (root / "out" / "summary.md").read_text().splitlines()
    mean_psnr = np.mean([i["psnr"] for i in summary["images"]])
    assert table[0] == "| dataset | PSNR | SSIM | LPIPS |"
    assert table[2].startswith(f"| Rain100L | {mean_psnr:.2f} | ") and table[2].endswith(f"| {NO_WEIGHTS} |")
    assert json.loads((root / "out" / "summary.json").read_text())["means"]["lpips"] == NO_WEIGHTS


def test_lpips_column_matches_torch_reference(scored_folders):
    root = scored_folders
    reference = random_lpips("alex")
    lin_path, backbone_path = save_released_layout(reference, root, "alex")

    summary = run(EvaluateOptions(root / "pred", root / "gt", root / "out_lpips", metrics=("lpips",), color="rgb",
                                  lpips_weights=lin_path, lpips_backbone=backbone_path))

    for image in summary["images"]:
        pred, gt = (torch.from_numpy(read_image(image[k]).transpose(2, 0, 1))[None] * 2 - 1 for k in ("pred", "gt"))
        with torch.no_grad():
            expected = float(reference(pred, gt)[0])
        assert set(image) == {"name", "pred", "gt", "height", "width", "lpips"}
        assert expected > 1e-3 and image["lpips"] == pytest.approx(expected, rel=1e-5)
