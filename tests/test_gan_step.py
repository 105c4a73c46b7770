"""One `gan_step` of the ragp_fft configuration (L1 + VGG19 conv5_4 + FFT + RaGAN, then RaGAN + gradient penalty)
against the same step in PyTorch (references/gan_step_torch.py, the penalty by create_graph double backward).
Both update with plain SGD, so each parameter's change is its gradient times the learning rate, compared directly
(Adam's first step is lr * sign(gradient), which would hide every magnitude). The learning rate is large so that
the change, not the float32 rounding of the updated parameter, carries the gradient's digits."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
import torch

from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch, vgg19_from_torch
from desra_jax.training.state import create_state
from desra_jax.training.steps import GanLosses, gan_step
from tests.conftest import photo_crop
from references.discriminators_torch import VGGStyleDiscriminator
from references.gan_step_torch import TorchGanStep
from references.rrdbnet_torch import RRDBNetTorch
from references.vgg_torch import VGG19

LOSSES = GanLosses(gradient_penalty_weight=10.0, fft_weight=0.3)  # configs/ragp_fft.py
LEARNING_RATE = 1e3


def _gradients(before: dict, after: dict) -> dict[str, np.ndarray]:
    """(before - after) / LEARNING_RATE per parameter: the gradient of an SGD step."""
    flat_before, flat_after = (
        {jax.tree_util.keystr(k): np.asarray(v, np.float64) for k, v in jax.tree_util.tree_leaves_with_path(tree)}
        for tree in (before, after)
    )
    assert flat_before.keys() == flat_after.keys()
    return {name: (flat_before[name] - flat_after[name]) / LEARNING_RATE for name in flat_before}


def test_gan_step_gradients_match_pytorch():
    torch.manual_seed(0)
    generator = RRDBNetTorch(scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    discriminator = VGGStyleDiscriminator(num_in_ch=3, num_feat=8, input_size=64)
    vgg19 = VGG19()
    g_module, g_params = rrdbnet_from_torch(generator.state_dict())
    d_module, d_variables = discriminator_from_torch(discriminator.state_dict())
    vgg, vgg_params = vgg19_from_torch(vgg19.state_dict(), layer_names=("conv5_4",))
    g_state = create_state(g_module, {"params": g_params}, optax.sgd(LEARNING_RATE), ema=True)
    d_state = create_state(d_module, d_variables, optax.sgd(LEARNING_RATE), ema=False)

    crops = [("astronaut", 100, 180), ("coffee", 60, 220), ("chelsea", 50, 120), ("astronaut", 300, 250)]
    hr = np.concatenate([photo_crop(name, (64, 64), top, left) for name, top, left in crops])
    lr = hr.reshape(4, 16, 4, 16, 4, 3).mean(axis=(2, 4))
    key = jax.random.key(7)
    eps = np.array(jax.random.uniform(key, (4, 1, 1, 1)))  # the interpolation weights gradient_penalty draws

    step = jax.jit(lambda g, d, batch, key, vp: gan_step(g, d, batch, key, vp, losses=LOSSES, perceptual_net=vgg))
    new_g, new_d, metrics = step(g_state, d_state, {"lr": lr, "hr": hr}, key, vgg_params)
    torch_step = TorchGanStep(generator, discriminator, vgg19, "cpu", LOSSES,
                              lambda params: torch.optim.SGD(params, lr=LEARNING_RATE))
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    torch_metrics = torch_step(nchw(lr), nchw(hr), torch.from_numpy(eps))

    # The losses are sums of non-negative terms: relative tolerance (measured: below 1e-6). The mean logits (0.017 and
    # 0.089 here) are sums of terms of both signs that could cancel to ~0: an absolute tolerance on the logit's own
    # scale, the unit over which the losses' softplus bends (measured: 1e-7 and 9e-7).
    for name, value in torch_metrics.items():
        atol = 2e-4 if name.startswith("out_d_") else 0.0
        np.testing.assert_allclose(metrics[name], value.item(), rtol=2e-4, atol=atol, err_msg=name)
    assert metrics["l_d_gp"] > 1.0  # the penalty is far from its minimum: its gradient is a large part of D's

    # Tolerance per network, against each parameter's largest gradient entry. Measured: discriminator 3e-5 (the
    # penalty's second derivatives dominate it); generator 8e-4, from the perceptual term's backward pass through 16
    # random VGG19 convolutions and ReLUs (3e-5 without that term). A tensor whose reference gradient lies below the
    # float32 resolution of the network's largest gradient entry (over all its tensors) is rounding noise, not a
    # scale: it must be zero to that resolution. That is the logit's bias, whose gradient cancels in
    # C(x_r) - E C(x_f) and in grad_x C (measured: -6e-8 from torch, 0 from jax, against a resolution of 2.5e-4).
    for jax_before, jax_after, torch_after, tolerance in (
        (g_state.params, new_g.params, rrdbnet_from_torch(generator.state_dict())[1], 3e-3),
        (d_state.params, new_d.params, discriminator_from_torch(discriminator.state_dict())[1]["params"], 2e-4),
    ):
        expected, got = _gradients(jax_before, torch_after), _gradients(jax_before, jax_after)
        resolution = np.finfo(np.float32).eps * max(np.abs(grad).max() for grad in expected.values())
        for name in expected:
            scale = np.abs(expected[name]).max()
            atol = tolerance * scale if scale > resolution else resolution
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=atol, err_msg=name)
        # Every parameter is trained but the logit's bias.
        untrained = [name for name, grad in expected.items() if not np.abs(grad).max() > resolution]
        assert untrained in ([], ["['linear2']['bias']"]), untrained


def test_lpips_perceptual_term_and_a_separate_target():
    """perceptual='lpips' adds the mean LPIPS distance of SR to the target; pixel and perceptual terms compare
    with batch['target'] (Real-ESRGAN's sharpened GT) while the discriminator sees batch['hr']."""
    from desra_jax.losses.pixel import l1_loss
    from desra_jax.metrics.lpips import LPIPS
    from desra_jax.models import RRDBNet, UNetDiscriminatorSN

    generator, discriminator, lpips_net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), UNetDiscriminatorSN(
        num_feat=4), LPIPS("alex")
    hr = np.concatenate([photo_crop("astronaut", (32, 32), 100, 180), photo_crop("coffee", (32, 32), 60, 220)])
    lr = hr.reshape(2, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    target = np.clip(hr * 1.2 - 0.1, 0, 1)  # anything unlike hr
    key = jax.random.key(0)
    g_params = generator.init(key, lr)["params"]
    lpips_params = lpips_net.init(key, hr, hr)["params"]
    g_state = create_state(generator, {"params": g_params}, optax.sgd(0.0), ema=True)
    d_state = create_state(discriminator, discriminator.init(key, hr), optax.sgd(0.0), ema=False)
    losses = GanLosses(pixel_weight=1.0, perceptual="lpips", perceptual_weight=0.5, gan_kind="gan", gan_weight=0.1)

    _, _, metrics = jax.jit(lambda g, d, p: gan_step(g, d, {"lr": lr, "hr": hr, "target": target}, key, p,
                                                     losses=losses, perceptual_net=lpips_net))(g_state, d_state,
                                                                                              lpips_params)
    sr = generator.apply({"params": g_params}, lr)
    expected_lpips = float(np.mean(lpips_net.apply({"params": lpips_params}, sr, target)))
    assert abs(expected_lpips) > 1e-3  # a distance the test can tell from 0 (random lin weights may be negative)
    np.testing.assert_allclose(metrics["l_percep"], 0.5 * expected_lpips, rtol=1e-4)
    np.testing.assert_allclose(metrics["l_pix"], float(l1_loss(sr, target)), rtol=1e-5)
    assert abs(float(l1_loss(sr, target)) - float(l1_loss(sr, hr))) > 1e-2  # so the target is what was used


def test_discriminator_warmup_trains_the_discriminator_alone_then_both():
    from desra_jax.models import RRDBNet
    from desra_jax.models.discriminators import make_discriminator
    from desra_jax.training import sharding
    from desra_jax.training.state import sr_states
    from desra_jax.training.steps import discriminator_step, sr_train_step

    generator = RRDBNet(scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    discriminator = make_discriminator("unet", 8, 32)
    hr = photo_crop("chelsea", (32, 32))
    lr = hr[:, ::4, ::4]
    g_params = jax.tree.map(np.asarray, generator.init(jax.random.key(0), lr)["params"])  # the step donates states
    d_variables = jax.tree.map(np.asarray, discriminator.init(jax.random.key(1), hr, train=False))
    losses = GanLosses(pixel_weight=1.0, perceptual_weight=0.0, gan_kind="gan", gan_weight=0.1)
    mesh = sharding.data_mesh()
    step = sr_train_step(mesh, losses=losses, discriminator_warmup=2)
    # SGD: Adam's first update is lr * sign(gradient), which float rounding flips where a gradient is near 0
    states = sr_states(generator, g_params, optax.sgd(1e-2), discriminator, d_variables)
    batch, key = {"lr": lr, "hr": hr}, jax.random.key(2)
    sr = generator.apply({"params": g_params}, lr)
    expected_d, _ = jax.jit(discriminator_step, static_argnames="losses")(states["discriminator"], hr, sr, key,
                                                                          losses=losses)

    states, metrics = step(states, batch, key)
    assert "l_pix" not in metrics and "l_d_gan" in metrics
    assert jax.tree.all(jax.tree.map(np.array_equal, states["generator"].params, g_params))
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), expected_d.params, d_variables["params"])
    assert min(jax.tree.leaves(moved)) > 0
    assert jax.tree.all(jax.tree.map(lambda a, b, m: np.abs(a - b).max() <= 1e-4 * m,
                                     states["discriminator"].params, expected_d.params, moved))
    states, _ = step(states, batch, key)
    assert int(states["generator"].step) == 0 and int(states["discriminator"].step) == 2
    states, metrics = step(states, batch, key)  # the warm-up is over: both networks move
    assert "l_pix" in metrics and int(states["generator"].step) == 1 and int(states["discriminator"].step) == 3

    resumed = sr_train_step(mesh, losses=losses, discriminator_warmup=2)  # a new process resuming at step 3
    _, metrics = resumed(states, batch, key)
    assert "l_pix" in metrics


@pytest.mark.parametrize("warmup", [-1, 10])
def test_a_warmup_that_leaves_the_generator_no_step_is_refused_naming_the_key(warmup):
    from configs import ragan
    from configs.validation import check_sr

    config = ragan.get_config("tiny")
    config.train.update(num_steps=10, discriminator_warmup=warmup)
    message = r"config.train.discriminator_warmup=-?\d+: must lie in \[0, train.num_steps=10\)"
    with pytest.raises(ValueError, match=message):
        check_sr(config, num_devices=1)
