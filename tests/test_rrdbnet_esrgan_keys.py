"""ESRGAN's first-release key scheme (``model.0``, ``model.1.sub.N.RDBk.convM.0``, ...) against a PyTorch twin."""

import numpy as np
import pytest
import torch

from desra_jax.convert import ConversionError, load_sr_model, rrdbnet_from_torch
from desra_jax.models import RRDBNet
from tests.conftest import photo_crop
from references.esrgan_sequential_torch import ESRGANSequentialTorch

TOLERANCE = 1e-4  # float32 on CPU, as tests/test_rrdbnet.py


def reference(seed=0) -> ESRGANSequentialTorch:
    torch.manual_seed(seed)
    return ESRGANSequentialTorch(nf=16, nb=2, gc=8).eval()


def torch_forward(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def test_sequential_keys_convert_to_the_same_network(tmp_path):
    ref = reference()
    path = tmp_path / "RRDB_ESRGAN_x4_old_arch.pth"
    torch.save(ref.state_dict(), path)
    module, variables, _ = load_sr_model(path)
    assert isinstance(module, RRDBNet)
    assert (module.num_block, module.num_feat, module.num_grow_ch, module.scale) == (2, 16, 8, 4)
    x = photo_crop("astronaut", (19, 23), 100, 150)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), torch_forward(ref, x), atol=TOLERANCE, rtol=0)


def test_sequential_keys_errors_name_the_key():
    state = reference().state_dict()
    with pytest.raises(ConversionError, match=r"unexpected keys 'model\.12\.weight'"):
        rrdbnet_from_torch({**state, "model.12.weight": torch.zeros(3, 16, 3, 3)})
    missing = {k: v for k, v in state.items() if not k.startswith("model.6.")}
    with pytest.raises(ConversionError, match=r"missing key 'model\.6\.weight'"):
        rrdbnet_from_torch(missing)
