"""The artifact localizer: BCE + soft Dice against float64 references, (image, mask) pairing and its
errors, step-addressed training crops, and the tiny job end to end on DeSRA masks of the bundled photographs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from desra_jax.data.image_io import write_image
from desra_jax.data.mask_pairs import MaskPatchSampler, load_mask_pairs, pair_mask_files
from desra_jax.losses.segmentation import binary_cross_entropy_with_logits, segmentation_loss, soft_dice_loss
from tests.conftest import photo_crop


@pytest.fixture
def logits_and_targets(photo_batch):
    """Logits from the luminance of two photographs (|x| up to ~10, so the stable form matters), targets where
    the red channel of the same scenes two pixels lower is bright: correlated, but not equal."""
    images = photo_batch(34, 32)
    logits = (images[:, :32, :, :1] + images[:, :32, :, 1:2] - 1.0) * 10.0
    targets = (images[:, 2:, :, :1] > 0.5).astype(np.float32)
    return logits.astype(np.float32), targets


def _reference_losses(logits: np.ndarray, targets: np.ndarray, smooth: float) -> tuple[float, float]:
    """(BCE, soft Dice) in float64 numpy: BCE = log(1 + e^x) - t x (PyTorch's documented formula), Dice per image."""
    x, t = logits.astype(np.float64), targets.astype(np.float64)
    bce = np.mean(np.logaddexp(0.0, x) - t * x)
    p = 1.0 / (1.0 + np.exp(-x))
    dice = 1 - (2 * (p * t).sum((1, 2, 3)) + smooth) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + smooth)
    return bce, dice.mean()


def test_losses_match_a_float64_reference(logits_and_targets):
    logits, targets = logits_and_targets
    assert 0.1 < targets.mean() < 0.9 and np.abs(logits).max() > 5

    @jax.jit  # one compilation for all the values below
    def ours(x, t):
        total, terms = segmentation_loss(x, t, bce_weight=2.0, dice_weight=0.5)
        return dict(bce=binary_cross_entropy_with_logits(x, t), dice=soft_dice_loss(x, t), total=total, **terms,
                    dice_smooth_10=soft_dice_loss(x, t, smooth=10.0),
                    bce_grad=jax.grad(binary_cross_entropy_with_logits)(x, t))

    got = ours(logits, targets)
    bce, dice = _reference_losses(logits, targets, smooth=1.0)
    np.testing.assert_allclose(got["bce"], bce, rtol=1e-5)
    np.testing.assert_allclose(got["dice"], dice, rtol=1e-5)
    np.testing.assert_allclose([got["total"], got["l_bce"], got["l_dice"]], [2 * bce + 0.5 * dice, 2 * bce, 0.5 * dice],
                               rtol=1e-5)
    np.testing.assert_allclose(got["dice_smooth_10"], _reference_losses(logits, targets, smooth=10.0)[1], rtol=1e-5)
    # d BCE / d x = (sigmoid(x) - t) / number of elements.
    expected = (1.0 / (1.0 + np.exp(-logits.astype(np.float64))) - targets) / logits.size
    np.testing.assert_allclose(got["bce_grad"], expected, rtol=1e-4, atol=1e-10)


def test_losses_by_hand():
    bce, dice = jax.jit(binary_cross_entropy_with_logits), jax.jit(soft_dice_loss)
    zeros = np.zeros((2, 4, 4, 1), np.float32)
    half = np.concatenate([np.ones((2, 2, 4, 1)), np.zeros((2, 2, 4, 1))], axis=1).astype(np.float32)
    # p = 1/2 everywhere: BCE = ln 2 whatever the target; Dice = 1 - (2 * 4 + 1) / (8 + 8 + 1).
    np.testing.assert_allclose(bce(zeros, half), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(dice(zeros, half), 1 - 9 / 17, rtol=1e-6)
    # Confident and right: both near 0, without overflow at |x| = 100; confident and wrong: BCE = |x|.
    confident = 200.0 * half - 100.0
    assert float(bce(confident, half)) < 1e-30 and float(dice(confident, half)) < 1e-6
    np.testing.assert_allclose(bce(-confident, half), 100.0, rtol=1e-6)
    # No artifact anywhere and none predicted: the smoothing makes the Dice 0, not 0 / 0.
    assert float(dice(np.full_like(zeros, -100.0), zeros)) < 1e-6
    _, terms = jax.eval_shape(lambda: segmentation_loss(zeros, half, bce_weight=0.0, dice_weight=1.0))
    assert set(terms) == {"l_dice"}
    with pytest.raises(ValueError, match="both 0"):
        segmentation_loss(zeros, half, bce_weight=0.0, dice_weight=0.0)
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 1\) and \(2, 4, 4\)"):
        soft_dice_loss(zeros, half[..., 0])


def _photo_and_mask(name: str, top: int, left: int, size=(40, 48)):
    """A photograph crop and a mask that is a function of its pixels (reddish), so alignment can be checked."""
    image = photo_crop(name, size, top, left)[0]
    return image, _reddish(image)


def _reddish(image):
    return image[..., 0] > image[..., 1] + 0.1


def _write_pair_folders(root, masks_as=".png"):
    """images/{a.png, sub/b.png} and masks/{a, sub/b}<masks_as> from two photographs; returns the folders."""
    images, masks = root / "images", root / "masks"
    for name, (photo, top, left) in {"a": ("astronaut", 100, 150), "sub/b": ("coffee", 50, 200)}.items():
        image, mask = _photo_and_mask(photo, top, left)
        write_image(images / f"{name}.png", image)
        if masks_as == ".png":
            write_image(masks / f"{name}.png", mask)
        else:  # labelme: one rectangle over the left half
            (masks / name).parent.mkdir(parents=True, exist_ok=True)
            shape = {"shape_type": "rectangle", "points": [[0, 0], [23, 39]]}
            (masks / f"{name}.json").write_text(json.dumps({"shapes": [shape], "imageHeight": 40, "imageWidth": 48}))
    return images, masks


def test_pairs_by_relative_name_from_pngs_labelme_and_a_detect_folder(tmp_path):
    images, masks = _write_pair_folders(tmp_path / "png")
    loaded = load_mask_pairs(images, masks)
    assert [name for name, _, _ in loaded] == [str(images / "a.png"), str(images / "sub" / "b.png")]
    for (_, image, mask), (photo, top, left) in zip(loaded, [("astronaut", 100, 150), ("coffee", 50, 200)]):
        expected_image, expected_mask = _photo_and_mask(photo, top, left)
        np.testing.assert_allclose(image, expected_image, atol=0.5 / 255)
        np.testing.assert_array_equal(mask, expected_mask)
        assert 0.05 < mask.mean() < 0.95

    images, masks = _write_pair_folders(tmp_path / "labelme", masks_as=".json")
    (_, _, mask), _ = load_mask_pairs(images, masks)
    assert mask[:, :24].all() and not mask[:, 24:].any()

    # The --out_dir of experiments.detect (summary.json + masks/) stands for its masks/ folder.
    detect_out = tmp_path / "png"
    (detect_out / "summary.json").write_text("{}")
    assert [m for _, _, m in pair_mask_files(images, detect_out)] == [detect_out / "masks" / "a.png",
                                                                       detect_out / "masks" / "sub" / "b.png"]


def test_pair_errors_name_the_files(tmp_path):
    images, masks = _write_pair_folders(tmp_path)
    (masks / "sub" / "b.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) without a mask: .*sub/b\.png: no mask .*masks/sub/b"):
        pair_mask_files(images, masks)
    write_image(masks / "sub" / "b.png", np.zeros((40, 40), bool))
    expected = r"masks/sub/b\.png: expected a mask of size \(40, 48\) \(H, W\), got \(40, 40\)"
    with pytest.raises(ValueError, match=expected):
        load_mask_pairs(images, masks)
    (images / "a.jpg").write_bytes((images / "a.png").read_bytes())
    with pytest.raises(ValueError, match=r"a\.png: same name as .*a\.jpg"):
        pair_mask_files(images, masks)
    with pytest.raises(ValueError, match="nowhere: not a folder of masks"):
        pair_mask_files(images, tmp_path / "nowhere")


def test_sampler_crops_are_aligned_reproducible_and_split_over_processes():
    pairs = [("astronaut", *_photo_and_mask("astronaut", 100, 150)),
             ("coffee", *_photo_and_mask("coffee", 50, 200, (36, 30)))]
    sampler = MaskPatchSampler(pairs, patch=16, batch_size=8, seed=3)
    batch = sampler.batch(5)
    assert batch["image"].shape == (8, 16, 16, 3) and batch["mask"].shape == (8, 16, 16, 1)
    # Flipped and rotated together: each mask is still the colour test of its own crop.
    np.testing.assert_array_equal(batch["mask"][..., 0], _reddish(batch["image"]))
    assert 0.05 < batch["mask"].mean() < 0.95 and len({b.tobytes() for b in batch["image"]}) == 8
    for key in batch:
        np.testing.assert_array_equal(MaskPatchSampler(pairs, 16, 8, seed=3).batch(5)[key], batch[key])
        halves = [MaskPatchSampler(pairs, 16, 8, seed=3, process_index=p, process_count=2).batch(5)[key]
                  for p in (0, 1)]
        np.testing.assert_array_equal(np.concatenate(halves), batch[key])
    assert not np.array_equal(sampler.batch(6)["image"], batch["image"])
    with pytest.raises(ValueError, match="coffee: image of 36x30 is smaller than the patch 32x32"):
        MaskPatchSampler(pairs, patch=32, batch_size=8, seed=3)
    expected = r"astronaut: expected a mask of the image's size \(40, 48\), got shape \(40, 47\)"
    with pytest.raises(ValueError, match=expected):
        MaskPatchSampler([("astronaut", pairs[0][1], pairs[0][2][:, :47])], patch=16, batch_size=8, seed=3)


# --- the job, end to end on the tiny config ---------------------------------------------------------------------

#: Held-out mean IoU of the tiny run against 0.167 for flagging every pixel. Measured over config.seed 0-4 with the
#: tests' XLA flags and again with XLA's default optimisation (whose different float32 rounding alone moves a run
#: by up to 0.19): IoU 0.27-0.50, region precision 0.32-0.66, recall 0.37-0.65. Bounds at the minimum - 0.08.
MIN_HELD_OUT_IOU = 0.19


@pytest.mark.slow
def test_tiny_localizer_job(tmp_path, monkeypatch):
    """configs/localizer.py:tiny end to end: it learns the DeSRA masks, and a finished run is not trained again
    (tests/test_faults_jobs.py trains it on an experiments.detect folder, kills it and resumes it;
    tests/test_train.py resumes the loop they share after a SIGTERM)."""
    from configs import localizer as localizer_config
    from experiments import localizer

    config = localizer_config.get_config("tiny")
    data = localizer.load_data(config)
    with monkeypatch.context() as patch:  # the same data, without detecting it twice
        patch.setattr(localizer, "load_data", lambda _: data)
        summary = localizer.train_localizer(config, str(tmp_path / "run"))
    _check_learned_held_out_masks(config, tmp_path / "run", summary, data[1])


def _check_learned_held_out_masks(config, workdir, summary, held_out):
    from desra_jax.metrics.detection import mean_iou
    from desra_jax.models import DeepLabV3Plus
    from desra_jax.models.directory import load_model
    from desra_jax.training.evaluation import predict_masks
    from experiments import localizer

    assert [name for name, _, _ in held_out] == [f"{p}_{v}" for p in ("chelsea", "coffee") for v in range(16)]
    evaluation = json.loads((workdir / f"eval_{config.train.num_steps:07d}.json").read_text())
    assert evaluation["summary"] == summary and len(evaluation["per_image"]) == 32
    # Better than knowing nothing: flagging everything scores the artifact fraction, flagging nothing 0.
    targets = [mask for _, _, mask in held_out]
    all_artifact = mean_iou([np.ones_like(t) for t in targets], targets)
    np.testing.assert_allclose(all_artifact, np.mean([r["target_fraction"] for r in evaluation["per_image"]]))
    assert all_artifact < 0.2 and mean_iou([np.zeros_like(t) for t in targets], targets) == 0.0
    assert summary["mean_iou"] > max(MIN_HELD_OUT_IOU, all_artifact + 0.02), summary
    assert summary["recall"] > 0.29 and summary["precision"] > 0.24, summary

    # The saved model (params + BatchNorm statistics) reproduces the final evaluation.
    model, variables = load_model(workdir / "model")
    assert isinstance(model, DeepLabV3Plus) and set(variables) == {"params", "batch_stats"}
    predict = jax.jit(lambda v, x: model.apply(v, x[None], train=False)[0, ..., 0])
    preds = predict_masks(predict, variables, [image for _, image, _ in held_out], config.eval.threshold)
    np.testing.assert_allclose(mean_iou(preds, targets), summary["mean_iou"], atol=1e-6)

    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "l_total" in r]
    assert [r["step"] for r in losses] == list(range(10, config.train.num_steps + 1, 10))
    assert all(np.isfinite([r["l_bce"], r["l_dice"]]).all() for r in losses)
    assert np.mean([r["l_total"] for r in losses[-5:]]) < np.mean([r["l_total"] for r in losses[:5]])
    assert records[-1] == {"step": config.train.num_steps, "phase": "localizer",
                           **{f"val/{k}": summary[k] for k in ("mean_iou", "precision", "recall")}}
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert (workdir / f"samples/step_{config.train.num_steps:07d}.png").is_file()

    # A finished run is not trained again.
    assert localizer.train_localizer(config, str(workdir)) == summary


@pytest.mark.parametrize("overrides, message", [
    ({"data.batch_size": 7}, "config.data.batch_size=7: the global batch must be positive and split evenly"),
    ({"data.patch": 60}, "config.data.patch=60: must be a positive multiple of model.output_stride=16"),
    ({"data.mask_dir": "/nowhere"}, "config.data.mask_dir='/nowhere': give data.image_dir and data.mask_dir together"),
    ({"loss.bce_weight": 0.0, "loss.dice_weight": 0.0}, "loss.bce_weight and loss.dice_weight cannot both be 0"),
])
def test_bad_configs_name_the_key(overrides, message):
    from configs import localizer as localizer_config
    from configs.validation import check_localizer

    config = localizer_config.get_config("tiny")
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        config[section][key] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_localizer(config, num_devices=2)
