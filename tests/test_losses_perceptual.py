"""Perceptual loss against a float64 numpy evaluation of sum_k w_k * criterion(phi_k(SR), phi_k(HR))."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.losses import ESRGAN_LAYER_WEIGHTS, REAL_ESRGAN_LAYER_WEIGHTS, perceptual_loss
from tests.conftest import photo_crop


class StandInFeatures(nn.Module):
    """Stands in for desra_jax.models.VGG19Features until it lands: a dict of named conv features."""

    layer_names: tuple[str, ...]

    @nn.compact
    def __call__(self, x):
        features = {}
        for index, name in enumerate(("conv1_2", "conv2_2", "conv3_4")):
            x = nn.Conv(8, (3, 3), strides=1 if index == 0 else 2, name=name)(x)
            features[name] = x
            x = nn.relu(x)
        return {name: features[name] for name in self.layer_names}


LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.5, "conv3_4": 1.0}


@pytest.fixture
def setup(photo_batch):
    vgg = StandInFeatures(layer_names=tuple(LAYER_WEIGHTS))
    hr = photo_batch(32, 32)
    sr = np.concatenate([photo_crop("astronaut", (32, 32), 103, 150), photo_crop("coffee", (32, 32), 50, 197)])
    params = vgg.init(jax.random.key(0), hr)["params"]
    return vgg, params, sr, hr


def numpy_perceptual(vgg, params, sr, hr, criterion):
    features_sr = vgg.apply({"params": params}, sr)
    features_hr = vgg.apply({"params": params}, hr)
    total = 0.0
    for name, weight in LAYER_WEIGHTS.items():
        diff = np.asarray(features_sr[name], np.float64) - np.asarray(features_hr[name], np.float64)
        if criterion == "l1":
            distance = np.abs(diff).mean()
        elif criterion == "l2":
            distance = np.square(diff).mean()
        else:
            distance = np.mean([np.linalg.norm(d.ravel()) for d in diff])
        total += weight * distance
    return total


@pytest.mark.parametrize("criterion", ["l1", "l2", "fro"])
def test_perceptual_loss_matches_numpy(setup, criterion):
    vgg, params, sr, hr = setup
    loss = jax.jit(functools.partial(perceptual_loss, vgg, layer_weights=LAYER_WEIGHTS, criterion=criterion))
    expected = numpy_perceptual(vgg, params, sr, hr, criterion)
    assert expected > 1e-3
    np.testing.assert_allclose(loss(params, sr, hr), expected, rtol=1e-5)


def test_gradient_flows_to_sr_only(setup):
    vgg, params, sr, hr = setup
    grad_sr, grad_hr = jax.grad(
        lambda s, h: perceptual_loss(vgg, params, s, h, LAYER_WEIGHTS, criterion="fro"), argnums=(0, 1)
    )(sr, hr)
    assert np.isfinite(grad_sr).all() and np.abs(grad_sr).max() > 0
    np.testing.assert_array_equal(grad_hr, 0.0)
    grad_same = jax.grad(lambda s: perceptual_loss(vgg, params, s, hr, LAYER_WEIGHTS, criterion="fro"))(hr)
    assert float(perceptual_loss(vgg, params, hr, hr, LAYER_WEIGHTS)) == 0.0
    assert np.isfinite(grad_same).all()


def test_errors_name_the_problem(setup):
    vgg, params, sr, hr = setup
    with pytest.raises(ValueError, match=r"also needs \['conv5_4'\]"):
        perceptual_loss(vgg, params, sr, hr, ESRGAN_LAYER_WEIGHTS)
    with pytest.raises(ValueError, match="criterion"):
        perceptual_loss(vgg, params, sr, hr, LAYER_WEIGHTS, criterion="cosine")


def test_published_weightings():
    assert ESRGAN_LAYER_WEIGHTS == {"conv5_4": 1.0}
    assert REAL_ESRGAN_LAYER_WEIGHTS == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}
