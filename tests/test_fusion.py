"""Multi-model fusion on constructed deraining outputs: bundled photographs with rain-like damage in known,
different regions per "model", and the damage masks as the localizer's artifact probabilities."""

import numpy as np
import pytest

from desra_jax.fusion import confidence_weights, fuse
from desra_jax.metrics import psnr
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
