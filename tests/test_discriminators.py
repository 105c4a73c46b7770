"""The Flax discriminators against the PyTorch references, through the converter, on bundled photographs."""

import jax
import numpy as np
import pytest
import torch

from desra_jax.convert.discriminators import discriminator_from_torch, load_discriminator
from desra_jax.convert.torch_state import ConversionError
from desra_jax.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from desra_jax.models.layers import resize_bilinear
from desra_jax.models.directory import load_model, save_model
from tests.conftest import photo_crop
from references import discriminators_torch as reference_arch

NUM_FEAT = 8


def to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the state_dict: torch updates BN statistics and SN vectors in place during a train forward."""
    return {key: value.clone() for key, value in model.state_dict().items()}


def vgg_reference(input_size: int) -> reference_arch.VGGStyleDiscriminator:
    """A random VGG-style discriminator whose BatchNorm statistics come from two other photographs."""
    torch.manual_seed(0)
    model = reference_arch.VGGStyleDiscriminator(3, NUM_FEAT, input_size)
    warmup = np.concatenate([photo_crop(name, (input_size, input_size), 0, 0) for name in ("chelsea", "rocket")])
    reference_arch.randomize_batch_norm(model, to_nchw(warmup))
    return model


def unet_reference(skip_connection: bool, warmup: np.ndarray) -> reference_arch.UNetDiscriminatorSN:
    """A random U-Net whose u, v have had three train-mode power iterations, as in a checkpoint from training."""
    torch.manual_seed(0)
    model = reference_arch.UNetDiscriminatorSN(3, NUM_FEAT, skip_connection).train()
    with torch.no_grad():
        for _ in range(3):
            model(to_nchw(warmup))
    return model


@pytest.mark.parametrize("input_size", [64, 128])
def test_vgg_discriminator_eval_matches_torch(photo_batch, input_size):
    reference = vgg_reference(input_size).eval()
    module, variables = discriminator_from_torch(snapshot(reference))
    assert module == VGGStyleDiscriminator(num_in_ch=3, num_feat=NUM_FEAT, input_size=input_size)
    images = photo_batch(input_size, input_size)
    with torch.no_grad():
        expected = reference(to_nchw(images)).numpy()

    got = np.asarray(module.apply(variables, images))

    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert abs(expected[0, 0] - expected[1, 0]) > 1e-3, "the two photographs should get different logits"


def test_vgg_discriminator_train_mode_matches_torch(photo_batch):
    reference = vgg_reference(64).train()
    before = snapshot(reference)
    module, variables = discriminator_from_torch(before)
    images = photo_batch(64, 64)
    with torch.no_grad():
        expected = reference(to_nchw(images)).numpy()

    got, updates = module.apply(variables, images, train=True, mutable=["batch_stats"])

    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-4)
    after = reference.state_dict()
    for name, stats in updates["batch_stats"].items():
        old_mean = before[f"{name}.running_mean"].numpy()
        assert not np.allclose(after[f"{name}.running_mean"].numpy(), old_mean), name
        np.testing.assert_allclose(stats["mean"], after[f"{name}.running_mean"].numpy(), rtol=1e-4, atol=1e-5)
        # torch's running variance averages in the unbiased batch variance; so does layers.BatchNorm.
        np.testing.assert_allclose(stats["var"], after[f"{name}.running_var"].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("skip_connection", [True, False])
def test_unet_discriminator_eval_matches_torch(photo_batch, skip_connection):
    images = photo_batch(32, 48)  # not square, so a swapped H/W would show
    reference = unet_reference(skip_connection, warmup=images[::-1]).eval()
    module, variables = discriminator_from_torch(snapshot(reference), skip_connection=skip_connection)
    assert module == UNetDiscriminatorSN(num_in_ch=3, num_feat=NUM_FEAT, skip_connection=skip_connection)
    with torch.no_grad():
        expected = reference(to_nchw(images)).numpy().transpose(0, 2, 3, 1)

    got = np.asarray(module.apply(variables, images))

    assert got.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # without skips the random net's logits vary little (std ~2e-4), so also bound the error by their spread
    assert np.abs(got - expected).max() < 1e-3 * expected.std()


def test_unet_discriminator_power_iteration_matches_torch(photo_batch):
    images = photo_batch(32, 32)
    reference = unet_reference(True, warmup=images[::-1])
    module, variables = discriminator_from_torch(snapshot(reference))
    with torch.no_grad():
        expected = reference(to_nchw(images)).numpy().transpose(0, 2, 3, 1)

    got, updates = module.apply(variables, images, train=True, mutable=["spectral"])

    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-4)
    _, torch_updated = discriminator_from_torch(snapshot(reference))
    for name, vectors in updates["spectral"].items():
        for vector in ("u", "v"):
            assert not np.allclose(variables["spectral"][name][vector], torch_updated["spectral"][name][vector])
            np.testing.assert_allclose(
                vectors[vector], torch_updated["spectral"][name][vector], rtol=0, atol=1e-5, err_msg=f"{name}.{vector}"
            )
    # and evaluation with the updated vectors agrees as well
    with torch.no_grad():
        expected_eval = reference.eval()(to_nchw(images)).numpy().transpose(0, 2, 3, 1)
    got_eval = module.apply({"params": variables["params"], **updates}, images)
    np.testing.assert_allclose(np.asarray(got_eval), expected_eval, rtol=0, atol=1e-4)


def test_upsample_bilinear_x2_matches_torch_interpolate(photo_batch):
    images = photo_batch(12, 20)
    expected = torch.nn.functional.interpolate(to_nchw(images), scale_factor=2, mode="bilinear", align_corners=False)
    got = np.asarray(resize_bilinear(images, (24, 40)))
    np.testing.assert_allclose(got, expected.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6)


def test_unet_discriminator_gradients_match_torch(photo_batch):
    """Gradients flow through sigma's dependence on the kernel but not through u and v, as in torch."""
    images = photo_batch(16, 16)
    reference = unet_reference(True, warmup=images[::-1])
    module, variables = discriminator_from_torch(snapshot(reference))
    reference(to_nchw(images)).mean().backward()

    @jax.jit
    def loss(params):
        out, _ = module.apply({**variables, "params": params}, images, train=True, mutable=["spectral"])
        return out.mean()

    grads = jax.grad(loss)(variables["params"])

    # Against each kernel's largest gradient entry (measured: 2.8e-4 to 6.7e-2, errors 3e-7 to 9e-7 of it); a kernel
    # whose gradient lay below the float32 resolution of the network's largest one would be rounding noise, compared
    # as zero to that resolution.
    resolution = np.finfo(np.float32).eps * max(p.grad.abs().max().item() for p in reference.parameters()
                                                if p.grad is not None)
    for name in ("conv0", "conv3", "conv9"):
        layer = getattr(reference, name)
        torch_grad = (layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight).grad.numpy()
        expected = torch_grad.transpose(2, 3, 1, 0)
        scale = np.abs(expected).max()
        atol = 1e-4 * scale if scale > resolution else resolution
        np.testing.assert_allclose(grads[name]["kernel"], expected, rtol=0, atol=atol)


def test_fresh_spectral_vectors_estimate_the_largest_singular_value(photo_batch):
    variables = UNetDiscriminatorSN(num_feat=NUM_FEAT).init(jax.random.key(0), photo_batch(16, 16))
    for name, vectors in variables["spectral"].items():
        matrix = np.asarray(variables["params"][name]["kernel"]).reshape(-1, vectors["u"].shape[0])
        sigma = np.asarray(vectors["v"]) @ matrix @ np.asarray(vectors["u"])
        assert 0 < sigma <= np.linalg.svd(matrix, compute_uv=False)[0] * (1 + 1e-5), name


def test_load_discriminator_reads_a_basicsr_checkpoint(tmp_path, photo_batch):
    reference = vgg_reference(64).eval()
    path = tmp_path / "net_d_5000.pth"
    torch.save({"params": reference.state_dict()}, path)
    images = photo_batch(64, 64)

    module, variables = load_discriminator(path)

    with torch.no_grad():
        expected = reference(to_nchw(images)).numpy()
    np.testing.assert_allclose(np.asarray(module.apply(variables, images)), expected, rtol=0, atol=1e-4)


def test_converted_unet_survives_save_model_and_load_model(tmp_path, photo_batch):
    images = photo_batch(16, 24)
    module, variables = discriminator_from_torch(snapshot(unet_reference(True, warmup=images[::-1])))
    save_model(tmp_path / "net_d", module, variables["params"], {"spectral": variables["spectral"]})

    loaded, loaded_variables = load_model(tmp_path / "net_d")

    assert loaded == module
    jax.tree.map(np.testing.assert_array_equal, loaded_variables, variables)
    np.testing.assert_allclose(loaded.apply(loaded_variables, images), module.apply(variables, images), atol=1e-6)


def test_wrong_input_size_is_refused(photo_batch):
    reference = vgg_reference(64).eval()
    module, variables = discriminator_from_torch(snapshot(reference))
    with pytest.raises(ValueError, match=r"got shape \(2, 96, 96, 3\)"):
        module.apply(variables, photo_batch(96, 96))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("bn2_0.running_var"), "missing key 'bn2_0.running_var'"),
        (lambda sd: sd.update({"conv3_1.weight": torch.zeros(64, 64, 3, 3)}), "'conv3_1.weight' has shape"),
        (lambda sd: sd.update({"conv9.weight": torch.zeros(1)}), "unexpected keys 'conv9.weight'"),
        (lambda sd: sd.update({"linear1.weight": torch.zeros(100, 77)}), "linear1.weight has 77 inputs"),
    ],
)
def test_bad_vgg_keys_are_named(edit, message):
    state = snapshot(vgg_reference(64))
    edit(state)
    with pytest.raises(ConversionError, match=message):
        discriminator_from_torch(state)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("conv5.weight_v"), "missing key 'conv5.weight_v'"),
        (lambda sd: sd.update({"conv2.weight_u": torch.zeros(3)}), "'conv2.weight_u' has shape"),
        (lambda sd: sd.update({"conv4.weight": torch.zeros(1)}), "unexpected keys 'conv4.weight'"),
    ],
)
def test_bad_unet_keys_are_named(photo_batch, edit, message):
    state = snapshot(unet_reference(True, warmup=photo_batch(16, 16)))
    edit(state)
    with pytest.raises(ConversionError, match=message):
        discriminator_from_torch(state)


def test_unknown_architecture_is_refused():
    with pytest.raises(ConversionError, match="not a BasicSR discriminator.*'body.0.weight'"):
        discriminator_from_torch({"body.0.weight": torch.zeros(4, 3, 3, 3)})
