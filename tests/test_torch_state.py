"""The checkpoint wrappers that unwrap_state_dict removes, as the projects that write them nest their tensors."""

import numpy as np
import pytest

from desra_jax.convert import unwrap_state_dict

TENSORS = {"conv.weight": np.ones((2, 3, 3, 3), np.float32)}


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", "model_state"])
def test_known_wrappers_are_removed(wrapper):
    checkpoint = {wrapper: TENSORS, "optimizer_state": {"step": 3}, "cur_itrs": 1000}
    assert unwrap_state_dict(checkpoint).keys() == TENSORS.keys()


def test_basicsr_ema_weights_win_and_a_bare_state_dict_stays():
    assert unwrap_state_dict({"params": {"a": 1}, "params_ema": {"b": 2}}) == {"b": 2}
    assert unwrap_state_dict(TENSORS) == TENSORS


@pytest.mark.parametrize("network", ["vgg_discriminator", "unet_discriminator", "rrdbnet"])
def test_converted_weights_do_not_follow_the_torch_model(network):
    """tensor.numpy() shares the tensor's memory: converted weights must be copies, or training the torch model on
    (as tests/test_gan_step.py does) silently rewrites them."""
    import jax
    import torch

    from desra_jax.convert import discriminator_from_torch, rrdbnet_from_torch
    from references.discriminators_torch import UNetDiscriminatorSN, VGGStyleDiscriminator
    from references.rrdbnet_torch import RRDBNetTorch

    torch.manual_seed(0)
    module, convert = {
        "vgg_discriminator": (VGGStyleDiscriminator(num_feat=4, input_size=32), discriminator_from_torch),
        "unet_discriminator": (UNetDiscriminatorSN(num_feat=4), discriminator_from_torch),
        "rrdbnet": (RRDBNetTorch(scale=4, num_feat=4, num_block=1, num_grow_ch=2), rrdbnet_from_torch),
    }[network]
    variables = convert(module.state_dict())[1]
    before = [np.array(leaf) for leaf in jax.tree.leaves(variables)]
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.add_(1)
    for leaf, old in zip(jax.tree.leaves(variables), before):
        np.testing.assert_array_equal(np.asarray(leaf), old)
