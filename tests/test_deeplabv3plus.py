"""DeepLabV3Plus against the PyTorch reference in references/deeplab_torch.py, through the converters.

Tiny widths (backbone width 8, 16-channel ASPP and decoder) keep torch and XLA fast; the full ResNet-50/101 key
layout is checked on shapes only (meta tensors, zero-copy zeros) against torchvision's published sizes.
"""

import jax
import numpy as np
import pytest
import torch

from desra_jax.convert import ConversionError
from desra_jax.convert.deeplab import (
    deeplabv3_from_torchvision,
    deeplabv3plus_from_torch,
    load_backbone_into,
    merge_variables,
    resnet_backbone_from_torch,
)
from desra_jax.models import DeepLabV3Plus
from desra_jax.models.resnet import RESNET50_LAYERS, RESNET101_LAYERS
from desra_jax.models.layers import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import photo_crop
from references import deeplab_torch

TINY = dict(backbone_width=8, aspp_channels=16, decoder_projection=8, decoder_channels=16)


def torch_model(layers, output_stride, seed, dropout=0.1, aspp_channels=16, decoder_convs=2):
    """A random tiny reference with non-trivial BatchNorm statistics, its logits scaled to order 1 so that an
    absolute tolerance of 1e-4 means something (fresh weights give logits of order 0.01)."""
    torch.manual_seed(seed)
    rates = tuple(rate * 16 // output_stride for rate in (6, 12, 18))
    model = deeplab_torch.DeepLabV3Plus(1, layers, 8, rates, aspp_channels, 8, 16, output_stride, dropout,
                                        decoder_convs)
    deeplab_torch.randomize_batch_norm(model, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.classifier.classifier[-1].weight.mul_(50.0)
    return model


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    """The reference on (N, H, W, 3) [0, 1] images, standardised as DeepLabV3Plus does inside; NHWC logits."""
    x = (images - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return model(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()


def photographs(h: int, w: int) -> np.ndarray:
    return np.concatenate([photo_crop("astronaut", (h, w), 100, 150), photo_crop("coffee", (h, w), 50, 200)])


@pytest.fixture(scope="module")
def tiny_pair():
    """(torch reference in eval mode, DeepLabV3Plus, converted variables): layers (1, 1, 1, 1), output stride 16."""
    reference = torch_model((1, 1, 1, 1), 16, seed=0).eval()
    model = DeepLabV3Plus(backbone_layers=(1, 1, 1, 1), **TINY)
    return reference, model, deeplabv3plus_from_torch(reference.state_dict(), model)


def test_logits_match_torch_reference(tiny_pair):
    reference, model, variables = tiny_pair
    images = photographs(64, 64)
    expected = torch_logits(reference, images)
    logits = np.asarray(jax.jit(model.apply)(variables, images))
    assert logits.shape == (2, 64, 64, 1)
    assert expected.std() > 0.1  # the tolerance below is small against the logits' spread
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


def test_logits_match_torch_reference_output_stride_8_odd_size_vainf_decoder():
    # (2, 1, 2, 1): dilated blocks after the first of a stage; 50x70: every feature map has an odd size and the
    # upsampling factors are not integers; one decoder conv, as in VainF's checkpoints.
    reference = torch_model((2, 1, 2, 1), 8, seed=1, decoder_convs=1).eval()
    model = DeepLabV3Plus(backbone_layers=(2, 1, 2, 1), output_stride=8, decoder_convs=1, **TINY)
    variables = deeplabv3plus_from_torch(reference.state_dict(), model)
    images = photographs(50, 70)
    expected = torch_logits(reference, images)
    assert expected.std() > 0.1
    np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(variables, images)), expected, rtol=0, atol=1e-4)


def test_train_mode_updates_batch_stats_as_torch(tiny_pair):
    variables = tiny_pair[2]
    model = DeepLabV3Plus(backbone_layers=(1, 1, 1, 1), aspp_dropout=0.0, **TINY)
    reference = torch_model((1, 1, 1, 1), 16, seed=0, dropout=0.0).train()  # tiny_pair's weights
    images = photographs(64, 64)
    expected = torch_logits(reference, images)  # one step of torch's running averages (momentum 0.1)

    logits, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, images)

    # batch statistics of few values (2 per channel in the pooling branch) amplify float32 rounding: the logits
    # (up to 6) differ by 7e-4; run in float64, the two agree to 1e-12
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=2e-3)
    updated = deeplabv3plus_from_torch(reference.state_dict(), model)["batch_stats"]
    moved = jax.tree.map(lambda new, old: np.abs(new - old).max(), updated, variables["batch_stats"])
    assert min(jax.tree.leaves(moved)) > 1e-4  # every statistic moved, so the comparison below can fail
    # the ASPP pooling branch sees 2 values per channel: biased and unbiased variance differ by a factor 2 there
    jax.tree.map(lambda ours, theirs: np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6),
                 updates["batch_stats"], updated)


@pytest.mark.parametrize("layers, keys, torchvision_params", [(RESNET50_LAYERS, 320, 25_557_032),
                                                              (RESNET101_LAYERS, 626, 44_549_160)])
def test_resnet_key_layout_fills_the_backbone(layers, keys, torchvision_params):
    # torchvision's resnet50 / resnet101 have 320 / 626 state_dict entries and 25,557,032 / 44,549,160
    # parameters (its model table); the fc layer (2048 x 1000 + 1000) is dropped.
    with torch.device("meta"):
        shapes = {key: tuple(t.shape) for key, t in deeplab_torch.ResNet(layers).state_dict().items()}
    assert len(shapes) == keys
    state = {key: np.broadcast_to(np.float32(0), shape) for key, shape in shapes.items()}
    model = DeepLabV3Plus(backbone_layers=layers)
    converted = resnet_backbone_from_torch(state, model)

    assert sum(a.size for a in jax.tree.leaves(converted["params"])) == torchvision_params - 2048 * 1000 - 1000
    template = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32))
    for collection in ("params", "batch_stats"):
        ours = jax.tree_util.tree_structure(converted[collection]["backbone"])
        assert ours == jax.tree_util.tree_structure(template[collection]["backbone"]), collection
    merge_variables(template, converted)  # every shape as the model expects


def test_resnet_conversion_errors_name_keys_and_shapes():
    with torch.device("meta"):
        shapes = {key: tuple(t.shape) for key, t in deeplab_torch.ResNet((1, 1, 1, 1), 8).state_dict().items()}
    model = DeepLabV3Plus(backbone_layers=(1, 1, 1, 1), **TINY)
    state = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}

    with pytest.raises(ConversionError, match=r"'layer2.0.conv2.weight' has shape \(16, 16, 5, 5\), expected "
                                              r"\(16, 16, 3, 3\)"):
        resnet_backbone_from_torch({**state, "layer2.0.conv2.weight": np.zeros((16, 16, 5, 5))}, model)
    with pytest.raises(ConversionError, match=r"unexpected keys 'layer1.1.conv1.weight' \(8, 32, 1, 1\)"):
        resnet_backbone_from_torch({**state, "layer1.1.conv1.weight": np.zeros((8, 32, 1, 1))}, model)
    del state["layer4.0.downsample.1.running_var"]
    with pytest.raises(ConversionError, match=r"missing key 'layer4.0.downsample.1.running_var'"):
        resnet_backbone_from_torch(state, model)
    with pytest.raises(ConversionError, match=r"'conv1.weight' has shape \(8, 3, 7, 7\), expected \(64, 3, 7, 7\)"):
        resnet_backbone_from_torch(state, DeepLabV3Plus())  # a width-8 checkpoint for a width-64 model


def test_deeplabv3_converts_backbone_and_aspp_only(tiny_pair, tmp_path):
    # torchvision's deeplabv3 layout at tiny width: its ASPP has torchvision's fixed 256 channels.
    torch.manual_seed(2)
    v3 = deeplab_torch.DeepLabV3(num_classes=21, layers=(1, 1, 1, 1), width=8)
    deeplab_torch.randomize_batch_norm(v3, torch.Generator().manual_seed(2))
    model = DeepLabV3Plus(backbone_layers=(1, 1, 1, 1), **{**TINY, "aspp_channels": 256})
    # the same tensors under the V3+ reference's names: its full conversion (checked numerically above) is
    # what the V3 conversion must give for the backbone and ASPP
    v3plus = torch_model((1, 1, 1, 1), 16, seed=3, aspp_channels=256)
    renamed = {key.replace("classifier.0.", "classifier.aspp."): value for key, value in v3.state_dict().items()
               if key.startswith(("backbone.", "classifier.0."))}
    v3plus.load_state_dict(renamed, strict=False)
    expected = deeplabv3plus_from_torch(v3plus.state_dict(), model)
    # stands in for model.init (slow on CPU): variables of the same model with other values
    fresh = deeplabv3plus_from_torch(torch_model((1, 1, 1, 1), 16, seed=4, aspp_channels=256).state_dict(), model)

    converted = deeplabv3_from_torchvision(v3.state_dict(), model)
    assert set(converted["params"]) == {"backbone", "aspp"}
    merged = merge_variables(fresh, converted)
    for collection in ("params", "batch_stats"):
        for name, subtree in merged[collection].items():
            source = expected if name in ("backbone", "aspp") else fresh
            jax.tree.map(np.testing.assert_array_equal, subtree, source[collection][name])

    torch.save(v3.state_dict(), tmp_path / "deeplabv3.pth")
    loaded = load_backbone_into(tmp_path / "deeplabv3.pth", model, fresh)
    jax.tree.map(np.testing.assert_array_equal, loaded, merged)
    with pytest.raises(ConversionError, match=r"/aspp/convs_0/conv/kernel has shape \(1, 1, 256, 256\), the model "
                                              r"expects \(1, 1, 256, 16\)"):
        merge_variables(tiny_pair[2], converted)
