"""VGG19Features against a torchvision-layout PyTorch VGG19, through the converter, on bundled photographs."""

import jax
import numpy as np
import pytest
import torch

from desra_jax.convert.torch_state import ConversionError
from desra_jax.convert.vgg import load_vgg19, vgg19_from_torch
from desra_jax.models.vgg import VGG19Features
from references.vgg_torch import NAMES, VGG19, extract_features

LAYERS = ("relu1_1", "conv2_2", "pool3", "conv4_4", "relu5_4")


@pytest.fixture(scope="module")
def reference() -> VGG19:
    torch.manual_seed(0)
    return VGG19().eval()


def to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def assert_features_match(got: dict, expected: dict, max_relative_error: float) -> None:
    """Max abs error relative to each layer's largest magnitude (about 1 with these random weights), so the
    bound also means something for trained weights, whose deep features reach the hundreds."""
    assert set(got) == set(expected)
    for name, value in expected.items():
        value = value.numpy().transpose(0, 2, 3, 1)
        assert got[name].shape == value.shape, name
        scale = np.abs(value).max()
        assert scale > 0.1, name
        error = np.abs(np.asarray(got[name]) - value).max() / scale
        assert error < max_relative_error, f"{name}: relative error {error:.2e} (scale {scale:.1f})"


def test_features_match_torch(reference, photo_batch):
    images = photo_batch(64, 64)
    module, params = vgg19_from_torch(reference.state_dict(), LAYERS)
    with torch.no_grad():
        expected = extract_features(reference, to_nchw(images), LAYERS)

    got = module.apply({"params": params}, images)

    assert got["pool3"].shape == (2, 8, 8, 256) and got["relu5_4"].shape == (2, 4, 4, 512)
    assert_features_match(got, expected, max_relative_error=1e-5)


def test_range_norm_and_no_input_norm_match_torch(reference, photo_batch):
    images = photo_batch(32, 32) * 2.0 - 1.0
    layers = ("conv1_2", "relu2_1")
    module, params = vgg19_from_torch(reference.state_dict(), layers, use_input_norm=False, range_norm=True)
    with torch.no_grad():
        expected = extract_features(reference, to_nchw(images), layers, use_input_norm=False, range_norm=True)

    got = module.apply({"params": params}, images)

    assert_features_match(got, expected, max_relative_error=1e-5)


def test_only_the_needed_convs_have_params(reference, photo_batch):
    module, params = vgg19_from_torch(reference.state_dict(), ("relu2_1",))
    assert set(params) == {"conv1_1", "conv1_2", "conv2_1"}
    initialised = module.init(jax.random.key(0), photo_batch(16, 16))
    assert set(initialised["params"]) == set(params)


def test_basicsr_feature_extractor_layout_is_read(reference, photo_batch):
    """BasicSR's VGGFeatureExtractor saves named layers up to the deepest one it uses, plus mean/std buffers."""
    state = {
        f"vgg_net.{NAMES[int(index)]}.{kind}": value
        for key, value in reference.state_dict().items()
        for _, index, kind in [key.split(".")]
        if int(index) <= NAMES.index("conv3_4")
    }
    state["mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    state["std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    images = photo_batch(32, 32)

    module, params = vgg19_from_torch(state, ("conv3_4",))

    with torch.no_grad():
        expected = extract_features(reference, to_nchw(images), ("conv3_4",))
    assert_features_match(module.apply({"params": params}, images), expected, max_relative_error=1e-5)


def test_load_vgg19_ignores_the_classifier(reference, tmp_path, photo_batch):
    state = dict(reference.state_dict())
    state.update({"classifier.0.weight": torch.zeros(16, 8), "classifier.6.bias": torch.zeros(16)})
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    images = photo_batch(16, 16)

    module, params = load_vgg19(path, ("relu1_2",))

    with torch.no_grad():
        expected = extract_features(reference, to_nchw(images), ("relu1_2",))
    assert_features_match(module.apply({"params": params}, images), expected, max_relative_error=1e-5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("features.2.bias"), "missing key 'features.2.bias'"),
        (lambda sd: sd.update({"features.30.weight": torch.zeros(512, 256, 3, 3)}), "'features.30.weight' has shape"),
        (lambda sd: sd.update({"features.1.running_mean": torch.zeros(64)}), "unexpected keys 'features.1.running"),
    ],
)
def test_bad_keys_are_named(reference, edit, message):
    state = dict(reference.state_dict())
    edit(state)
    with pytest.raises(ConversionError, match=message):
        vgg19_from_torch(state, ("relu1_1",))


def test_unknown_layer_name_is_refused(photo_batch):
    with pytest.raises(ValueError, match=r"unknown layer names \['relu6_1'\]"):
        VGG19Features(("relu1_1", "relu6_1")).init(jax.random.key(0), photo_batch(16, 16))
