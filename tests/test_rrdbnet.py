"""RRDBNet against the PyTorch reference, its converter, and the saved-model layout (models/directory)."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
from torch.nn import functional as F

from desra_jax.convert import ConversionError, load_rrdbnet, rrdbnet_from_torch
from desra_jax.models import RRDBNet
from desra_jax.models.layers import pixel_unshuffle
from desra_jax.models.directory import count_parameters, load_model, save_model
from tests.conftest import photo_crop
from references.rrdbnet_torch import RRDBNetTorch

TOLERANCE = 1e-4  # float32 on CPU; observed differences are about 1e-7


def reference(scale=4, num_feat=16, num_grow_ch=8, num_block=2, seed=0, **kwargs) -> RRDBNetTorch:
    torch.manual_seed(seed)
    return RRDBNetTorch(scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch, **kwargs).eval()


def torch_forward(model: RRDBNetTorch, x: np.ndarray) -> np.ndarray:
    """NHWC numpy in, NHWC numpy out."""
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def jax_forward(model: RRDBNet, params, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.apply({"params": params}, jnp.asarray(x)), np.float32)


def esrgan_names(state: dict) -> dict:
    """A BasicSR-named state_dict renamed to the original ESRGAN repository's names."""
    renames = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", key)
        prefix, suffix = key.rsplit(".", 1)
        renamed[f"{renames.get(prefix, prefix)}.{suffix}"] = value
    return renamed


def test_pixel_unshuffle_matches_torch_channel_order():
    x = photo_crop("chelsea", (8, 12), 40, 60)
    for factor in (2, 4):
        expected = F.pixel_unshuffle(torch.from_numpy(x).permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(np.asarray(pixel_unshuffle(jnp.asarray(x), factor)), expected)


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("num_feat, num_grow_ch", [(16, 8), (24, 12)])
def test_matches_torch_reference(photo_batch, scale, num_feat, num_grow_ch):
    ref = reference(scale, num_feat, num_grow_ch)
    model, params = rrdbnet_from_torch(ref.state_dict())
    assert (model.scale, model.num_feat, model.num_grow_ch, model.num_block) == (scale, num_feat, num_grow_ch, 2)
    x = photo_batch(16, 16)
    expected = torch_forward(ref, x)
    got = jax_forward(model, params, x)
    assert got.shape == (2, 16 * scale, 16 * scale, 3)
    assert np.abs(got - expected).max() < TOLERANCE
    # The two photographs must give different outputs, or the test would not see a wrong input path.
    assert np.abs(expected[0] - expected[1]).mean() > 1e-3


def test_original_esrgan_names_convert_to_the_same_network(photo_batch):
    ref = reference(scale=4)
    state = esrgan_names(ref.state_dict())
    assert "RRDB_trunk.1.RDB3.conv5.weight" in state and "HRconv.bias" in state
    model, params = rrdbnet_from_torch(state)
    x = photo_batch(16, 16)
    assert np.abs(jax_forward(model, params, x) - torch_forward(ref, x)).max() < TOLERANCE


def test_params_ema_is_preferred_over_params(photo_batch):
    ema, raw = reference(seed=1), reference(seed=2)
    model, params = rrdbnet_from_torch({"params": raw.state_dict(), "params_ema": ema.state_dict()})
    x = photo_batch(16, 16)
    got = jax_forward(model, params, x)
    assert np.abs(got - torch_forward(ema, x)).max() < TOLERANCE
    assert np.abs(got - torch_forward(raw, x)).max() > 1e-2
    _, params_only = rrdbnet_from_torch({"params": raw.state_dict()})
    assert np.abs(jax_forward(model, params_only, x) - torch_forward(raw, x)).max() < TOLERANCE


def test_numpy_and_torch_values_give_the_same_params():
    state = reference().state_dict()
    _, from_torch = rrdbnet_from_torch(state)
    _, from_numpy = rrdbnet_from_torch({k: v.numpy() for k, v in state.items()})
    jax.tree.map(np.testing.assert_array_equal, from_torch, from_numpy)
    kernel = from_numpy["body_1"]["rdb2"]["conv3"]["kernel"]
    np.testing.assert_array_equal(kernel, state["body.1.rdb2.conv3.weight"].numpy().transpose(2, 3, 1, 0))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_rrdbnet_from_file(tmp_path, photo_batch, suffix):
    ref = reference(scale=2)
    path = tmp_path / f"net{suffix}"
    if suffix == ".pth":
        torch.save({"params_ema": ref.state_dict()}, path)
    else:
        from safetensors.torch import save_file

        save_file(ref.state_dict(), str(path))
    model, params = load_rrdbnet(path)
    assert model.scale == 2
    x = photo_batch(16, 16)
    assert np.abs(jax_forward(model, params, x) - torch_forward(ref, x)).max() < TOLERANCE


def test_bad_state_dicts_raise_errors_naming_the_key():
    state = reference().state_dict()
    misshaped = dict(state, **{"body.1.rdb2.conv3.weight": torch.zeros(8, 32, 1, 1)})
    with pytest.raises(ConversionError, match=r"'body\.1\.rdb2\.conv3\.weight' has shape \(8, 32, 1, 1\)"):
        rrdbnet_from_torch(misshaped)
    unknown = dict(state, **{"body.0.rdb1.conv6.weight": torch.zeros(3)})
    with pytest.raises(ConversionError, match=r"unexpected keys 'body\.0\.rdb1\.conv6\.weight'"):
        rrdbnet_from_torch(unknown)
    missing = {k: v for k, v in state.items() if k != "conv_hr.bias"}
    with pytest.raises(ConversionError, match=r"missing key 'conv_hr\.bias'"):
        rrdbnet_from_torch(missing)


def test_input_channel_ambiguity_is_resolved_by_overrides():
    gray_x4 = reference(scale=4, num_in_ch=1).state_dict()
    with pytest.raises(ConversionError, match="conv_first takes 1 input channels"):
        rrdbnet_from_torch(gray_x4)
    model, _ = rrdbnet_from_torch(gray_x4, num_in_ch=1)
    assert (model.scale, model.num_in_ch) == (4, 1)
    # 12 input channels read as RGB x2 by default, or as a 12-channel x4 network when told.
    twelve = reference(scale=4, num_in_ch=12).state_dict()
    assert (rrdbnet_from_torch(twelve)[0].scale, rrdbnet_from_torch(twelve)[0].num_in_ch) == (2, 3)
    model, _ = rrdbnet_from_torch(twelve, scale=4)
    assert (model.scale, model.num_in_ch) == (4, 12)


def test_bfloat16_computation_keeps_float32_params_and_stays_close():
    model, params = rrdbnet_from_torch(reference(num_block=1).state_dict())
    x = photo_crop("coffee", (8, 8), 120, 260)
    half = model.clone(dtype=jnp.bfloat16)
    shapes = jax.eval_shape(half.init, jax.random.key(0), jnp.asarray(x))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    out = jax.jit(half.apply)({"params": params}, jnp.asarray(x))  # jit: op-by-op bfloat16 compiles slowly
    assert out.dtype == jnp.bfloat16
    assert np.abs(np.asarray(out, np.float32) - jax_forward(model, params, x)).max() < 0.02


def test_save_and_load_model_round_trip(tmp_path, photo_batch):
    model, params = rrdbnet_from_torch(reference(scale=1, num_feat=24, num_grow_ch=12).state_dict())
    path = save_model(tmp_path / "generator", model, params)
    loaded, variables = load_model(path)
    assert loaded == model and set(variables) == {"params"}
    assert count_parameters(variables["params"]) == count_parameters(params)
    x = photo_batch(16, 16)
    np.testing.assert_array_equal(jax_forward(loaded, variables["params"], x), jax_forward(model, params, x))


def test_saved_config_keeps_the_computation_dtype(tmp_path):
    model, params = rrdbnet_from_torch(reference().state_dict())
    path = save_model(tmp_path / "generator", model.clone(dtype=jnp.bfloat16), params)
    with open(os.path.join(path, "model.json")) as f:
        assert json.load(f)["config"]["dtype"] == {"dtype": "bfloat16"}
    assert load_model(path)[0].dtype == jnp.bfloat16


def test_extra_collections_are_saved(tmp_path):
    model, params = rrdbnet_from_torch(reference().state_dict())
    stats = {"bn": {"mean": np.linspace(0, 1, 5, dtype=np.float32)}}
    _, variables = load_model(save_model(tmp_path / "m", model, params, {"batch_stats": stats}))
    np.testing.assert_array_equal(variables["batch_stats"]["bn"]["mean"], stats["bn"]["mean"])


def test_interrupted_save_leaves_no_model_and_keeps_the_old_one(tmp_path, monkeypatch):
    model, params = rrdbnet_from_torch(reference().state_dict())
    old_model, old_params = rrdbnet_from_torch(reference(seed=5).state_dict())
    save_model(tmp_path / "kept", old_model, old_params)

    def killed_while_writing(self, directory, *args, **kwargs):
        os.makedirs(directory)
        with open(os.path.join(directory, "half_written"), "w") as f:
            f.write("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "new", model, params)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "kept", model, params, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["kept"]
    monkeypatch.undo()
    _, variables = load_model(tmp_path / "kept")
    jax.tree.map(np.testing.assert_array_equal, variables["params"], old_params)


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    model, params = rrdbnet_from_torch(reference().state_dict())
    save_model(tmp_path / "m", model, params)
    with pytest.raises(FileExistsError, match="already exists"):
        save_model(tmp_path / "m", model, params)
    other_model, other_params = rrdbnet_from_torch(reference(seed=3).state_dict())
    save_model(tmp_path / "m", other_model, other_params, overwrite=True)
    _, variables = load_model(tmp_path / "m")
    jax.tree.map(np.testing.assert_array_equal, variables["params"], other_params)
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_load_model_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        load_model(tmp_path / "absent")
    model, params = rrdbnet_from_torch(reference().state_dict())
    path = save_model(tmp_path / "m", model, params)
    config_path = os.path.join(path, "model.json")
    with open(config_path) as f:
        saved = json.load(f)
    with open(config_path, "w") as f:
        json.dump(dict(saved, architecture="SwinIR"), f)
    with pytest.raises(ValueError, match="unknown architecture 'SwinIR'"):
        load_model(path)


def test_initialisation_follows_basicsr():
    """Dense-block convs: Kaiming normal times 0.1 (BasicSR default_init_weights); others: torch's default."""
    model = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8)
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))["params"]
    conv5 = np.asarray(params["body_0"]["rdb1"]["conv5"]["kernel"])  # fan_in 9 * (16 + 4 * 8) = 432
    assert abs(conv5.std() / (0.1 * np.sqrt(2 / 432)) - 1) < 0.05
    first = np.asarray(params["conv_first"]["kernel"])  # uniform(-1/sqrt(27), 1/sqrt(27))
    assert np.abs(first).max() <= 1 / np.sqrt(27) and np.abs(first).max() > 0.9 / np.sqrt(27)
    assert all(not np.any(b) for b in jax.tree.leaves(jax.tree.map(np.asarray, params)) if b.ndim == 1)
