"""SRVGGNetCompact and its Real-ESRGAN .pth converter against a PyTorch twin, and its ncnn-style bicubic resize."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from desra_jax.convert import ConversionError, load_sr_model, srvgg_from_torch
from desra_jax.models import SRVGGNetCompact
from desra_jax.models.layers import pixel_shuffle
from desra_jax.models.srvgg import resize_bicubic
from tests.conftest import photo_crop
from references.srvgg_torch import SRVGGNetCompactTorch, random_prelu_slopes

TOLERANCE = 1e-5  # float32 on CPU, on outputs of size ~1 (the nearest-upsampled input is added)


def reference(act_type="prelu", num_feat=16, num_conv=3, upscale=4, seed=0, **kwargs) -> SRVGGNetCompactTorch:
    generator = torch.manual_seed(seed)
    model = SRVGGNetCompactTorch(num_feat=num_feat, num_conv=num_conv, upscale=upscale, act_type=act_type, **kwargs)
    random_prelu_slopes(model, generator)
    return model.eval()


def torch_forward(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def jax_forward(model, params, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.apply({"params": params}, jnp.asarray(x)))


@pytest.mark.parametrize("act_type,upscale", [("prelu", 4), ("prelu", 2), ("relu", 3), ("leakyrelu", 4)])
def test_matches_torch_reference_on_an_odd_sized_crop(act_type, upscale):
    x = photo_crop("astronaut", (19, 23), 100, 150)
    ref = reference(act_type, upscale=upscale)
    model, params = srvgg_from_torch(ref.state_dict(), act_type=None if act_type == "prelu" else act_type)
    assert (model.num_feat, model.num_conv, model.upscale, model.act_type) == (16, 3, upscale, act_type)
    np.testing.assert_allclose(jax_forward(model, params, x), torch_forward(ref, x), atol=TOLERANCE, rtol=0)


def test_released_sizes_read_from_the_keys():
    """realesr-general-x4v3: 64 features, 32 convs; realesr-animevideov3: 64, 16; wrapped in params_ema."""
    for num_conv in (32, 16):
        state = {"params_ema": reference(num_feat=64, num_conv=num_conv).state_dict()}
        model, params = srvgg_from_torch(state)
        assert (model.num_feat, model.num_conv, model.upscale) == (64, num_conv, 4)
        assert params[f"body_{2 * num_conv + 1}"]["negative_slope"].shape == (64,)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_sr_model_detects_srvgg_in_a_file(tmp_path, suffix):
    ref = reference()
    path = tmp_path / f"realesr-tiny{suffix}"
    if suffix == ".pth":
        torch.save({"params": ref.state_dict()}, path)
    else:
        from safetensors.torch import save_file

        save_file(ref.state_dict(), str(path))
    module, variables, found = load_sr_model(path)
    assert isinstance(module, SRVGGNetCompact) and found == str(path)
    x = photo_crop("coffee", (16, 20), 50, 200)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), torch_forward(ref, x), atol=TOLERANCE, rtol=0)


def test_bad_state_dicts_raise_errors_naming_the_key():
    state = reference().state_dict()
    with pytest.raises(ConversionError, match=r"'extra\.weight'"):
        srvgg_from_torch({**state, "extra.weight": torch.zeros(3)})
    bad = dict(state)
    bad["body.3.weight"] = torch.zeros(8)
    with pytest.raises(ConversionError, match=r"'body\.3\.weight' has shape \(8,\), expected \(16,\)"):
        srvgg_from_torch(bad)
    relu_state = reference("relu").state_dict()
    with pytest.raises(ConversionError, match="pass act_type='relu' or 'leakyrelu'"):
        srvgg_from_torch(relu_state)
    with pytest.raises(ConversionError, match=r"body\.1\.weight \(a PReLU\) is there"):
        srvgg_from_torch(state, act_type="relu")


def test_pixel_shuffle_matches_torch_channel_order():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3 * 9)).astype(np.float32)
    expected = F.pixel_shuffle(torch.from_numpy(x).permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(jnp.asarray(x), 3)), expected)


@pytest.mark.parametrize("scale", [0.5, 0.75, 2.0])
def test_bicubic_resize_matches_torch_bicubic(scale):
    """ncnn's Interp bicubic (a = -0.75, half-pixel, edges clamped, no antialias) is torch's bicubic."""
    x = photo_crop("astronaut", (76, 92), 80, 120)
    size = (int(76 * scale), int(92 * scale))
    expected = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="bicubic", align_corners=False)
    got = np.asarray(resize_bicubic(jnp.asarray(x), scale))
    np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=0)
