"""Adversarial losses and the gradient penalty against direct float64 numpy evaluations of their formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.losses import (
    ADVERSARIAL_KINDS,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)
from tests.conftest import photo_crop


def _log_sigmoid(x):
    return np.log(1.0 / (1.0 + np.exp(-x)))


def _bce(logits, label):
    """Binary cross-entropy of sigmoid(logits) against a constant label, averaged (torch BCEWithLogitsLoss)."""
    p = 1.0 / (1.0 + np.exp(-logits))
    return np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p)))


def reference_losses(kind, real, fake):
    """(L_D, L_G) of ``kind`` written out from Jolicoeur-Martineau (2018) / ESRGAN, float64."""
    relu = functools.partial(np.maximum, 0.0)
    if kind == "gan":
        return -np.mean(_log_sigmoid(real)) - np.mean(np.log(1 - 1 / (1 + np.exp(-fake)))), -np.mean(_log_sigmoid(fake))
    if kind == "wgan":
        return fake.mean() - real.mean(), -fake.mean()
    if kind == "rsgan":
        return -np.mean(_log_sigmoid(real - fake)), -np.mean(_log_sigmoid(fake - real))
    if kind.startswith("ra"):
        r, f = real - fake.mean(), fake - real.mean()
    else:
        center = np.concatenate([real.ravel(), fake.ravel()]).mean()  # equal sizes: the mean over both
        r, f = real - center, fake - center
    if kind.endswith("lsgan"):
        return (np.mean((r - 1) ** 2) + np.mean((f + 1) ** 2)) / 2, (np.mean((r + 1) ** 2) + np.mean((f - 1) ** 2)) / 2
    if kind.endswith("sgan"):  # ESRGAN as BasicSR: (BCE(r, 1) + BCE(f, 0)) / 2 and (BCE(r, 0) + BCE(f, 1)) / 2
        return (_bce(r, 1) + _bce(f, 0)) / 2, (_bce(r, 0) + _bce(f, 1)) / 2
    assert kind.endswith("hinge")
    return (np.mean(relu(1 - r)) + np.mean(relu(1 + f))) / 2, (np.mean(relu(1 + r)) + np.mean(relu(1 - f))) / 2


LOGIT_SHAPES = [(8,), (2, 4, 4, 1)]  # a VGG-style discriminator's (N,) and a U-Net's per-pixel map


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
def test_losses_match_the_formulas(kind, shape):
    rng = np.random.default_rng(0)
    real = rng.normal(0.5, 1.5, shape)
    fake = rng.normal(-0.3, 1.5, shape)
    expected_d, expected_g = reference_losses(kind, real, fake)
    loss_d = jax.jit(functools.partial(discriminator_loss, kind))(real.astype(np.float32), fake.astype(np.float32))
    loss_g = jax.jit(functools.partial(generator_loss, kind))(real.astype(np.float32), fake.astype(np.float32))
    np.testing.assert_allclose(loss_d, expected_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_g, expected_g, rtol=1e-5, atol=1e-6)


def test_the_halves_and_roles_are_not_interchangeable():
    """Guards against sign or /2 slips that the formula check would share: hand-computed values on two logits."""
    real, fake = jnp.array([2.0, 0.0]), jnp.array([0.0, -2.0])
    # average: r = real - (-1) = [3, 1], f = fake - 1 = [-1, -3]
    np.testing.assert_allclose(discriminator_loss("ralsgan", real, fake), ((4 + 0) / 2 + (0 + 4) / 2) / 2)
    np.testing.assert_allclose(discriminator_loss("rahinge", real, fake), 0.0)
    np.testing.assert_allclose(generator_loss("rahinge", real, fake), ((4 + 2) / 2 + (2 + 4) / 2) / 2)
    # centered: m = 0, r = [2, 0], f = [0, -2]
    np.testing.assert_allclose(discriminator_loss("rchinge", real, fake), ((0 + 1) / 2 + (1 + 0) / 2) / 2)


def test_large_logits_stay_finite():
    real, fake = jnp.array([200.0, 150.0]), jnp.array([-180.0, -220.0])
    np.testing.assert_allclose(discriminator_loss("gan", real, fake), 0.0, atol=1e-6)
    np.testing.assert_allclose(generator_loss("gan", real, fake), 200.0, rtol=1e-6)  # -log sigmoid(-200)
    np.testing.assert_allclose(discriminator_loss("rasgan", real, fake), 0.0, atol=1e-6)
    # r = real + 200 = [400, 350], f = fake - 175 = [-355, -395]; G wants r small, f large
    np.testing.assert_allclose(generator_loss("rasgan", real, fake), ((400 + 350) / 2 + (355 + 395) / 2) / 2)
    for kind in ADVERSARIAL_KINDS:
        grads = jax.grad(lambda r, f: discriminator_loss(kind, r, f), argnums=(0, 1))(real, fake)
        assert all(np.isfinite(g).all() for g in grads), kind


def test_bad_kind_and_unpaired_shapes():
    with pytest.raises(ValueError, match="unknown adversarial loss kind 'ragan'"):
        discriminator_loss("ragan", jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        generator_loss("rsgan", jnp.zeros(4), jnp.zeros(3))


# A critic with a closed-form input gradient: C_w(x) = 1/2 sum w x^2 over the non-batch axes, grad_x C = w * x.
def quadratic_critic(w, images):
    return 0.5 * jnp.sum(w * images**2, axis=(1, 2, 3))


@pytest.fixture
def real_and_fake():
    """Real: two 8x8 photograph crops; fake: a darker, shifted version of them (values in [0, 1])."""
    real = np.concatenate([photo_crop("astronaut", (8, 8), 120, 180), photo_crop("coffee", (8, 8), 60, 220)])
    fake = np.concatenate([photo_crop("astronaut", (8, 8), 124, 183), photo_crop("coffee", (8, 8), 64, 223)]) * 0.7
    return real, fake


def numpy_penalty(w, real, fake, eps, weight):
    """weight * mean((||w * x_hat||_2 - 1)^2), x_hat = eps real + (1 - eps) fake, float64."""
    x_hat = eps * real.astype(np.float64) + (1 - eps) * fake
    norms = np.sqrt(np.sum((w * x_hat) ** 2, axis=(1, 2, 3)))
    return weight * np.mean((norms - 1) ** 2)


def test_gradient_penalty_of_a_linear_critic_is_closed_form(real_and_fake):
    real, fake = real_and_fake
    w = np.random.default_rng(1).normal(0, 0.05, (8, 8, 3)).astype(np.float32)
    penalty = jax.jit(lambda r, f, k: gradient_penalty(lambda x: jnp.sum(w * x, axis=(1, 2, 3)), r, f, k))
    expected = 10.0 * (np.linalg.norm(w.astype(np.float64)) - 1) ** 2  # grad = w for every interpolate
    np.testing.assert_allclose(penalty(real, fake, jax.random.key(0)), expected, rtol=1e-5)


def test_gradient_penalty_value_and_gradients(real_and_fake):
    """The value, and the first derivatives with respect to the critic's parameters and to the fake images (the
    penalty is differentiated reverse-over-forward), against float64 central differences of the closed form."""
    real, fake = real_and_fake
    key = jax.random.key(3)
    eps = np.asarray(jax.random.uniform(key, (2, 1, 1, 1)), np.float64)  # the draw gradient_penalty makes
    assert eps.min() != eps.max()  # per-sample draws
    w = np.random.default_rng(2).uniform(0.5, 2.0, (8, 8, 3))

    def penalty(w, real, fake):
        return gradient_penalty(functools.partial(quadratic_critic, w), real, fake, key, weight=10.0)

    np.testing.assert_allclose(
        jax.jit(penalty)(w.astype(np.float32), real, fake), numpy_penalty(w, real, fake, eps, 10.0), rtol=1e-5
    )
    fake = fake.astype(np.float64)
    with jax.enable_x64(True):
        grads = jax.grad(penalty, argnums=(0, 2))(jnp.asarray(w), jnp.asarray(real, jnp.float64), jnp.asarray(fake))
        eps = np.asarray(jax.random.uniform(key, (2, 1, 1, 1), jnp.float64))  # a float64 draw differs from float32

    h = 1e-6
    checks = (  # (gradient, the float64 penalty with one argument shifted by `step`, the indices checked)
        (grads[0], lambda step: numpy_penalty(w + step, real, fake, eps, 10.0), [(0, 0, 0), (3, 5, 1), (7, 2, 2)]),
        (grads[1], lambda step: numpy_penalty(w, real, fake + step, eps, 10.0),
         [(0, 0, 0, 0), (0, 3, 5, 1), (1, 7, 2, 2)]),
    )
    for grad, shifted_penalty, indices in checks:
        for index in indices:
            step = np.zeros(grad.shape)
            step[index] = h
            central = (shifted_penalty(step) - shifted_penalty(-step)) / (2 * h)
            np.testing.assert_allclose(grad[index], central, rtol=1e-6)
            assert abs(central) > 1e-3  # an entry the penalty really depends on

