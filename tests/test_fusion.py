"""Multi-model fusion on constructed deraining outputs: bundled photographs with rain-like damage in known,
different regions per "model", and the damage masks as the localizer's artifact probabilities. Then
experiments.fuse end to end with a tiny random-init DeepLabV3Plus localizer saved by save_model: the written
images are fusion.fuse of the same outputs and the localizer's probabilities (the plumbing, not the quality)."""

import json

import jax
import numpy as np
import pytest

from desra_jax.data.image_io import read_image, write_image
from desra_jax.fusion import confidence_weights, fuse
from desra_jax.metrics import psnr
from desra_jax.models import DeepLabV3Plus
from desra_jax.models.directory import save_model
from desra_jax.tools.fuse import FuseOptions, run
from tests.conftest import photo_crop

SIZE = 64
#: Damaged box (top, left, side) of each model; 16 px apart, more than the feather reach of 3 * sigma.
REGIONS = ((8, 8, 16), (40, 8, 16), (8, 40, 16))
FEATHER = 2.0
REACH = 6  # ceil(3 * FEATHER): the blur window's radius


def box(top, left, side, grow=0):
    mask = np.zeros((SIZE, SIZE), bool)
    mask[max(top - grow, 0) : top + side + grow, max(left - grow, 0) : left + side + grow] = True
    return mask


@pytest.fixture(scope="module")
def constructed():
    """(clean (N, H, W, 3), outputs (M, N, H, W, 3), masks (M, N, H, W)) for N = 2 photographs, M = 3 models."""
    crops = photo_crop("astronaut", (SIZE, SIZE), 100, 150), photo_crop("coffee", (SIZE, SIZE), 50, 200)
    clean = np.concatenate(crops)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    streaks = 0.6 * ((rows + 2 * cols) % 7 < 2)[None, :, :, None]  # bright diagonal rain streaks
    rng = np.random.default_rng(0)
    outputs, masks = [], []
    for region in REGIONS:
        mask = np.broadcast_to(box(*region), clean.shape[:3])
        residual = 0.01 * rng.normal(size=clean.shape)  # every model is a little off everywhere
        outputs.append(np.clip(clean + residual + streaks * mask[..., None], 0, 1).astype(np.float32))
        masks.append(mask.astype(np.float32))
    return clean, np.stack(outputs), np.stack(masks)


def test_fusion_beats_every_model(constructed):
    clean, outputs, masks = constructed

    fused = fuse(outputs, masks, 0, feather=FEATHER)

    fused_psnr = np.asarray(psnr(fused, clean))
    model_psnr = np.stack([np.asarray(psnr(o, clean)) for o in outputs])
    assert np.all(fused_psnr > model_psnr.max(axis=0) + 5), (fused_psnr, model_psnr)


def test_base_is_kept_outside_its_artifacts_and_others_fill_them(constructed):
    _, outputs, masks = constructed

    fused = np.asarray(fuse(outputs, masks, 0, feather=FEATHER))

    untouched = ~box(*REGIONS[0], grow=REACH)
    np.testing.assert_array_equal(fused[:, untouched], outputs[0][:, untouched])
    inside = box(*REGIONS[0])  # both other models are clean here: equal weights
    np.testing.assert_allclose(fused[:, inside], 0.5 * (outputs[1] + outputs[2])[:, inside], atol=1e-6)
    seam = box(*REGIONS[0], grow=REACH) & ~inside
    assert np.abs(fused[:, seam] - outputs[0][:, seam]).max() > 1e-3  # the feathering reaches outside


def test_weights_follow_confidence_and_temperature():
    probs = np.array([0.8, 0.2]).reshape(2, 1, 1, 1)  # model A fairly sure of an artifact, model B not

    linear = np.asarray(confidence_weights(probs, temperature=1.0))[:, 0, 0, 0]
    sharp = np.asarray(confidence_weights(probs, temperature=0.1))[:, 0, 0, 0]
    flat = np.asarray(confidence_weights(probs, temperature=1e3))[:, 0, 0, 0]

    np.testing.assert_allclose(linear, [0.2, 0.8], atol=1e-5)  # proportional to 1 - p
    np.testing.assert_allclose(sharp, [0.25**10 / (1 + 0.25**10), 1 / (1 + 0.25**10)], rtol=1e-4)
    np.testing.assert_allclose(flat, [0.5, 0.5], atol=1e-3)


def test_other_base_and_bad_shapes(constructed):
    clean, outputs, masks = constructed
    fused = np.asarray(fuse(outputs, masks, 2, feather=0.0))
    inside = box(*REGIONS[2])
    np.testing.assert_allclose(fused[:, inside], 0.5 * (outputs[0] + outputs[1])[:, inside], atol=1e-6)
    np.testing.assert_array_equal(fused[:, ~inside], outputs[2][:, ~inside])

    with pytest.raises(ValueError, match="M >= 2"):
        fuse(outputs[:1], masks[:1])
    with pytest.raises(ValueError, match="base 3 is not one of the 3 models"):
        fuse(outputs, masks, 3)


PHOTOS = {"001": ("astronaut", 100, 150), "002": ("coffee", 50, 200)}


@pytest.fixture(scope="module")
def cli_folders(tmp_path_factory):
    """base/, other1/, other2/ with two photographs each (different rain-like damage per model), and a tiny
    DeepLabV3Plus saved in localizer/. base/003.png has no partners, other1/004.png no base."""
    root = tmp_path_factory.mktemp("fuse")
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for m, model in enumerate(("base", "other1", "other2")):
        streaks = (0.4 * ((rows + (m + 1) * cols) % 9 < 2))[..., None]
        for name, (photo, top, left) in PHOTOS.items():
            clean = photo_crop(photo, (SIZE, SIZE), top, left)[0]
            write_image(root / model / f"{name}.png", np.clip(clean + streaks, 0, 1))
    write_image(root / "base" / "003.png", photo_crop("chelsea", (SIZE, SIZE))[0])
    write_image(root / "other1" / "004.png", photo_crop("chelsea", (SIZE, SIZE))[0])
    localizer = DeepLabV3Plus(num_classes=1, backbone_layers=(1, 1, 1, 1), backbone_width=8, aspp_channels=16,
                              decoder_projection=8, decoder_channels=16)
    params, batch_stats = random_variables(localizer)
    save_model(root / "localizer", localizer, params, {"batch_stats": batch_stats})
    return root, localizer, {"params": params, "batch_stats": batch_stats}


def random_variables(module):
    """(params, batch_stats) drawn in numpy: weights N(0, 1 / fan_in), biases N(0, 0.1), BN scales and
    statistics 1. Eager flax init compiles each of DeepLabV3Plus's ~160 initialisers separately (a minute on 2
    loaded cores); only the shapes are traced here."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), np.float32))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if leaf.ndim > 1:
            return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
        if "bias" in name:
            return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        return np.ones(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes["params"]), jax.tree.map(
        lambda leaf: np.ones(leaf.shape, np.float32), shapes["batch_stats"])


@pytest.mark.slow
def test_fused_images_are_fuse_of_the_localizer_probabilities(cli_folders):
    root, localizer, variables = cli_folders
    outputs = {name: np.stack([read_image(root / m / f"{name}.png") for m in ("base", "other1", "other2")])
               for name in PHOTOS}
    logits = jax.jit(lambda images: localizer.apply(variables, images, train=False)[..., 0])
    probs = {name: np.asarray(jax.nn.sigmoid(logits(images))) for name, images in outputs.items()}
    # random weights give arbitrary probabilities: a threshold at their median repairs half of the bases
    threshold = float(np.median([p[0] for p in probs.values()]))

    summary = run(FuseOptions(root / "base", (root / "other1", root / "other2"), root / "localizer", root / "out",
                              feather=2.0, threshold=threshold, temperature=0.5))

    assert summary["fused"] == 2 and len(summary["problems"]) == 2
    missing_base, missing_other = sorted(summary["problems"], key=lambda problem: "no other file" in problem)
    assert "other1/004.png: no base file named '004'" in missing_base
    assert "base/003.png: no other file named '003'" in missing_other and "other2" in missing_other
    for name in PHOTOS:
        expected = np.asarray(fuse(outputs[name][:, None], probs[name][:, None], 0, feather=2.0,
                                   threshold=threshold, temperature=0.5))[0]
        written = read_image(root / "out" / f"{name}.png")
        assert np.abs(written - np.round(expected * 255) / 255).max() <= 1 / 255 + 1e-6
        assert np.abs(written - outputs[name][0]).max() > 0.1  # the base was repaired somewhere
    saved = json.loads((root / "out" / "summary.json").read_text())
    assert [image["name"] for image in saved["images"]] == ["001", "002"]
    fractions = [image["base_artifact_fraction"] for image in saved["images"]]
    np.testing.assert_allclose(fractions, [np.mean(probs[n][0] >= threshold) for n in PHOTOS], atol=0.01)
