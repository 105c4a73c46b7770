"""LPIPS in JAX against a PyTorch reference of the lpips package, through .pth files in the released key layouts."""

import numpy as np
import pytest
import torch

from desra_jax.convert.lpips import load_lpips, lpips_from_torch
from desra_jax.convert.torch_state import ConversionError
from desra_jax.metrics.lpips import lpips, tap_widths
from tests.conftest import photo_crop
from references.lpips_torch import LPIPSTorch, random_lpips, save_released_layout


@pytest.fixture(scope="module", params=["alex", "vgg"])
def converted(request, tmp_path_factory):
    """(net, torch reference, params converted from .pth files laid out as the package's and torchvision's)."""
    net = request.param
    reference = random_lpips(net)
    _, params = load_lpips(*save_released_layout(reference, tmp_path_factory.mktemp(f"lpips_{net}"), net), net)
    return net, reference, params


def image_pairs():
    """Two bundled-photo crops (2, 64, 64, 3) and the same scenes shifted by 3 and 5 pixels."""
    x = np.concatenate([photo_crop("astronaut", (64, 64), 100, 150), photo_crop("coffee", (64, 64), 50, 200)])
    y = np.concatenate([photo_crop("astronaut", (64, 64), 103, 150), photo_crop("coffee", (64, 64), 50, 205)])
    return x, y


def torch_lpips(reference, x, y):
    def to_torch(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))) * 2 - 1
    with torch.no_grad():
        return reference(to_torch(x), to_torch(y)).numpy()


def test_matches_torch_reference(converted):
    net, reference, params = converted
    x, y = image_pairs()

    expected = torch_lpips(reference, x, y)
    got = np.asarray(lpips(x, y, params, net))

    assert expected.shape == (2,) and np.all(expected > 1e-3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("converted", ["alex"], indirect=True)  # properties of the formula: one net is enough
def test_identical_images_give_zero(converted):
    net, _, params = converted
    x, _ = image_pairs()
    # not bit-exact: XLA may round the two halves of the batch differently (about 1e-16 here)
    np.testing.assert_array_less(np.asarray(lpips(x, x, params, net)), 1e-12)


@pytest.mark.parametrize("converted", ["alex"], indirect=True)
def test_symmetric_and_grows_with_distortion(converted):
    net, _, params = converted
    x, _ = image_pairs()
    noise = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    mild, strong = np.clip(x + 0.02 * noise, 0, 1), np.clip(x + 0.2 * noise, 0, 1)

    d_mild, d_strong = np.asarray(lpips(x, mild, params, net)), np.asarray(lpips(x, strong, params, net))

    np.testing.assert_allclose(np.asarray(lpips(mild, x, params, net)), d_mild, rtol=1e-6)
    assert np.all(d_strong > 2 * d_mild)


def test_mismatched_files_are_reported():
    torch.manual_seed(0)
    reference = LPIPSTorch("alex")
    backbone, lins = reference.backbone.state_dict(), reference.lins.state_dict()
    vgg_lins = {f"lin{k}.model.1.weight": torch.ones(1, w, 1, 1) for k, w in enumerate(tap_widths("vgg"))}

    with pytest.raises(ConversionError, match=r"'lin1.model.1.weight' has shape \(1, 128, 1, 1\)"):
        lpips_from_torch(vgg_lins, backbone, "alex")
    with pytest.raises(ConversionError, match="unexpected keys 'extra'"):
        lpips_from_torch(lins, {**backbone, "extra": torch.zeros(1)}, "alex")
    with pytest.raises(ValueError, match="unknown net 'squeeze'"):
        lpips_from_torch(lins, backbone, "squeeze")
