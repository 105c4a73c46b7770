"""Perceptual loss on a random VGG19Features against float64 numpy: sum_k w_k * criterion(phi_k(SR), phi_k(HR))."""

import functools

import jax
import numpy as np
import pytest

from desra_jax.losses import ESRGAN_LAYER_WEIGHTS, REAL_ESRGAN_LAYER_WEIGHTS, perceptual_loss
from desra_jax.models import VGG19Features
from tests.conftest import photo_crop

LAYER_WEIGHTS = REAL_ESRGAN_LAYER_WEIGHTS


@pytest.fixture(scope="module")
def setup():
    """A randomly initialised VGG19 (Real-ESRGAN's five layers) and 32x32 crops: HR, and SR shifted by 3 pixels."""
    vgg = VGG19Features(layer_names=tuple(LAYER_WEIGHTS))
    hr = np.concatenate([photo_crop("astronaut", (32, 32), 100, 150), photo_crop("coffee", (32, 32), 50, 200)])
    sr = np.concatenate([photo_crop("astronaut", (32, 32), 103, 150), photo_crop("coffee", (32, 32), 50, 197)])
    params = jax.jit(vgg.init)(jax.random.key(0), hr)["params"]
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
    _, _, sr, hr = setup
    shallow = {"conv1_2": 0.1, "conv2_2": 0.1}  # Real-ESRGAN's first two layers keep the backward pass cheap to compile
    vgg = VGG19Features(layer_names=tuple(shallow))
    params = jax.jit(vgg.init)(jax.random.key(1), hr)["params"]
    loss = functools.partial(perceptual_loss, vgg, params, layer_weights=shallow, criterion="fro")
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    grad_sr, grad_hr = grad(sr, hr)
    assert np.isfinite(grad_sr).all() and np.abs(grad_sr).max() > 0
    np.testing.assert_array_equal(grad_hr, 0.0)
    assert float(loss(hr, hr)) == 0.0
    assert np.isfinite(grad(hr, hr)[0]).all()  # a zero feature difference: the Frobenius norm's gradient is 0


def test_errors_name_the_problem(setup):
    vgg, params, sr, hr = setup
    with pytest.raises(ValueError, match=r"also needs \['relu5_4'\]"):
        perceptual_loss(vgg, params, sr, hr, {"conv5_4": 1.0, "relu5_4": 1.0})
    with pytest.raises(ValueError, match="criterion"):
        perceptual_loss(vgg, params, sr, hr, LAYER_WEIGHTS, criterion="cosine")


def test_published_weightings(setup):
    vgg, params, sr, hr = setup
    conv5_4 = vgg.apply({"params": params}, sr)["conv5_4"] - vgg.apply({"params": params}, hr)["conv5_4"]
    esrgan_vgg = VGG19Features()  # conv5_4 only; the same parameters, which run up to conv5_4
    np.testing.assert_allclose(
        perceptual_loss(esrgan_vgg, params, sr, hr), np.abs(np.asarray(conv5_4, np.float64)).mean(), rtol=1e-5
    )
    assert ESRGAN_LAYER_WEIGHTS == {"conv5_4": 1.0}
    assert REAL_ESRGAN_LAYER_WEIGHTS == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}
