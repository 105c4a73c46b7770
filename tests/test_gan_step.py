"""One `gan_step` of the ragp_fft configuration (L1 + VGG19 conv5_4 + FFT + RaGAN, then RaGAN + gradient penalty)
against the same step in PyTorch (tests/references/gan_step_torch.py, the penalty by create_graph double backward).
Both update with plain SGD, so each parameter's change is its gradient times the learning rate, compared directly
(Adam's first step is lr * sign(gradient), which would hide every magnitude). The learning rate is large so that
the change, not the float32 rounding of the updated parameter, carries the gradient's digits."""

from __future__ import annotations

import jax
import numpy as np
import optax
import torch

from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch, vgg19_from_torch
from desra_jax.training.state import create_state
from desra_jax.training.steps import GanLosses, gan_step
from tests.conftest import photo_crop
from tests.references.discriminators_torch import VGGStyleDiscriminator
from tests.references.gan_step_torch import TorchGanStep
from tests.references.rrdbnet_torch import RRDBNetTorch
from tests.references.vgg_torch import VGG19

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

    step = jax.jit(lambda g, d, batch, key, vp: gan_step(g, d, batch, key, vp, losses=LOSSES, vgg=vgg))
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
