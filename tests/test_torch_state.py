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
