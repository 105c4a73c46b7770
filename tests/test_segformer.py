"""SegFormer in Flax against transformers' SegformerForSemanticSegmentation (random weights, tiny widths), its
converters (Hugging Face directories, NVlabs/SegFormer and open-mmlab state_dicts renamed from transformers' ones)
and `segment` against transformers' post-processing, mmseg's slide inference and mmseg's keep-ratio 'whole'
inference written here in cv2 and torch."""

import json
import re
import shutil

import cv2
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from desra_jax.convert import ConversionError, load_segformer, segformer_from_state_dict  # noqa: E402
from desra_jax.detection import segment  # noqa: E402
from desra_jax.detection.semantic_model import (  # noqa: E402
    default_resize,
    keep_ratio_size,
    segment_logits,
    window_starts,
)
from desra_jax.models.layers import imagenet_normalize, resize_bilinear  # noqa: E402
from tests.conftest import photo_crop  # noqa: E402

#: MiT-b0's layout (depths, sr_ratios, heads, patch sizes) at an eighth of its widths, 150 ADE20K labels.
B0_TINY = dict(hidden_sizes=[4, 8, 20, 32], num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=16,
               num_labels=150)
#: Every per-stage setting away from the defaults; 7 labels.
ODD_TINY = dict(depths=[1, 2, 1, 1], hidden_sizes=[6, 12, 18, 24], num_attention_heads=[2, 3, 3, 4],
                sr_ratios=[4, 2, 2, 1], patch_sizes=[5, 3, 3, 3], mlp_ratios=[2, 3, 4, 2], decoder_hidden_size=12,
                num_labels=7)


def reference_model(config: dict, seed: int):
    """transformers' model with weights drawn at O(1) activations (its own init, std 0.02, makes logits ~bias)."""
    torch.manual_seed(seed)
    model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(**config)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim > 1:
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            else:
                is_scale = "norm" in name and name.endswith("weight")
                param.copy_(float(is_scale) + 0.2 * torch.randn(param.shape, generator=generator))
        norm = model.decode_head.batch_norm
        norm.running_mean.copy_(0.3 * torch.randn(norm.running_mean.shape, generator=generator))
        norm.running_var.copy_(0.5 + torch.rand(norm.running_var.shape, generator=generator))
    return model


def torch_logits(model, pixels: np.ndarray) -> np.ndarray:
    """transformers' logits, NHWC, of normalised NHWC pixels."""
    with torch.inference_mode():
        return model(torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2)).logits.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module", params=[("b0", B0_TINY), ("odd", ODD_TINY)], ids=lambda p: p[0])
def converted(request, tmp_path_factory):
    """(layout name, transformers model, its save_pretrained directory, (Segformer, params, id2label) from it)."""
    name, config = request.param
    reference = reference_model(config, seed=len(name))
    directory = tmp_path_factory.mktemp(f"segformer_{name}")
    reference.save_pretrained(directory)
    return name, reference, directory, load_segformer(directory)


#: Per layout, the photograph (name, top, left) and size of the parity check: each compile costs seconds of the
#: suite's time budget, so one square and one non-square size, one per layout.
PARITY_INPUTS = {"b0": ("astronaut", 0, 0, (512, 512)), "odd": ("hubble_deep_field", 200, 300, (320, 448))}


def test_logits_match_transformers(converted):
    name, reference, _, (model, params, _) = converted
    photo, top, left, size = PARITY_INPUTS[name]
    pixels = np.asarray(imagenet_normalize(photo_crop(photo, size, top, left)))
    expected = torch_logits(reference, pixels)
    # Unoptimised XLA code compiles in half the time and computes the same function.
    forward = jax.jit(model.apply, compiler_options={"xla_backend_optimization_level": 0})
    got = np.asarray(forward({"params": params}, pixels))
    assert got.shape == expected.shape == (1, size[0] // 4, size[1] // 4, model.num_labels)
    assert np.abs(expected).max() > 1.0  # the weights reach the logits
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_config_and_labels_from_directory(converted):
    _, reference, _, (model, _, id2label) = converted
    config = reference.config
    assert model.depths == tuple(config.depths) and model.num_attention_heads == tuple(config.num_attention_heads)
    assert model.sr_ratios == tuple(config.sr_ratios) and model.mlp_ratios == tuple(config.mlp_ratios)
    assert id2label == {int(k): v for k, v in config.id2label.items()}


def test_pytorch_model_bin_gives_the_same_params(converted, tmp_path):
    _, _, directory, (model, params, _) = converted
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    state = {k: torch.from_numpy(v) for k, v in load_file(directory / "model.safetensors").items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    bin_model, bin_params, _ = load_segformer(tmp_path)
    assert bin_model == model
    jax.tree.map(np.testing.assert_array_equal, bin_params, params)


#: transformers' published NVlabs -> Hugging Face renaming (convert_segformer_original_to_pytorch.py), backwards.
HF_TO_ORIGINAL = [
    ("segformer.encoder.", "backbone."), ("attention.self.query", "attn.q"), ("attention.output.dense", "attn.proj"),
    ("attention.self.layer_norm", "attn.norm"), ("attention.self.sr", "attn.sr"), ("attention.self.kv", "attn.kv"),
    ("mlp.dense1", "mlp.fc1"), ("mlp.dense2", "mlp.fc2"), ("layer_norm_1", "norm1"), ("layer_norm_2", "norm2"),
    ("decode_head.linear_fuse.", "decode_head.linear_fuse.conv."),
    ("decode_head.batch_norm.", "decode_head.linear_fuse.bn."), ("decode_head.classifier.", "decode_head.linear_pred."),
] + [
    pair for stage in range(4) for pair in [
        (f"backbone.patch_embeddings.{stage}.layer_norm.", f"backbone.patch_embed{stage + 1}.norm."),
        (f"backbone.patch_embeddings.{stage}.", f"backbone.patch_embed{stage + 1}."),
        (f"backbone.block.{stage}.", f"backbone.block{stage + 1}."),
        (f"backbone.layer_norm.{stage}.", f"backbone.norm{stage + 1}."),
        (f"decode_head.linear_c.{stage}.", f"decode_head.linear_c{stage + 1}."),
    ]
]


def original_segformer_keys(hf_state: dict) -> dict:
    """A transformers state_dict in the NVlabs/SegFormer layout: key and value stacked into ``attn.kv``, and the
    unused ``conv_seg`` classifier that mmseg's BaseDecodeHead always holds."""
    state = {}
    for key, value in hf_state.items():
        if ".attention.self.value." in key:
            continue
        if ".attention.self.key." in key:
            value = np.concatenate([value, hf_state[key.replace(".key.", ".value.")]])
            key = key.replace(".attention.self.key.", ".attention.self.kv.")
        for hf, original in HF_TO_ORIGINAL:
            key = key.replace(hf, original)
        state[key] = value
    state["decode_head.conv_seg.weight"] = np.zeros_like(hf_state["decode_head.classifier.weight"])
    state["decode_head.conv_seg.bias"] = np.zeros_like(hf_state["decode_head.classifier.bias"])
    return state


def test_original_segformer_state_dict_gives_the_same_model(converted, tmp_path):
    name, reference, directory, (model, params, _) = converted
    hf_state = load_file(directory / "model.safetensors")
    original = original_segformer_keys(hf_state)
    assert "backbone.block1.0.attn.kv.weight" in original and "backbone.norm4.weight" in original
    path = tmp_path / "segformer.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in original.items()}, "meta": {}}, path)
    # Heads cannot be read from shapes: the b0 layout has MiT's default heads, the odd one passes them.
    heads = {"num_attention_heads": reference.config.num_attention_heads}
    loaded, loaded_params, id2label = load_segformer(path, config=None if name == "b0" else heads)
    assert loaded == model
    jax.tree.map(np.testing.assert_array_equal, loaded_params, params)
    if name == "b0":  # 150 labels and no config: ADE20K's class names
        assert id2label[0] == "wall" and id2label[2] == "sky" and len(id2label) == 150
    else:
        assert id2label == {i: f"LABEL_{i}" for i in range(7)}


def test_bad_checkpoints_name_the_file_and_key(converted, tmp_path):
    _, _, directory, _ = converted
    weights = load_file(directory / "model.safetensors")
    (tmp_path / "no_config").mkdir()
    shutil.copy(directory / "model.safetensors", tmp_path / "no_config" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no_config/config\.json"):
        load_segformer(tmp_path / "no_config")

    def write(name: str, config: dict, weights: dict):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        save_file(weights, tmp_path / name / "model.safetensors")
        return tmp_path / name

    config = json.loads((directory / "config.json").read_text())
    renamed = dict(weights, **{"decode_head.classifier.kernel": weights["decode_head.classifier.weight"]})
    del renamed["decode_head.classifier.weight"]
    missing = r"renamed/model\.safetensors: missing key 'decode_head\.classifier\.weight'"
    with pytest.raises(ConversionError, match=missing):
        load_segformer(write("renamed", config, renamed))
    extra = dict(weights, **{"decode_head.auxiliary.weight": np.ones(3, np.float32)})
    with pytest.raises(ConversionError, match=r"extra/model\.safetensors: unexpected keys 'decode_head\.auxiliary"):
        load_segformer(write("extra", config, extra))
    depth = config["depths"][0]
    deeper = dict(config, depths=[depth + 1, *config["depths"][1:]])
    missing = rf"segformer\.encoder\.block\.0\.{depth}\.attention\.self\.query\.weight"
    with pytest.raises(ConversionError, match=rf"deeper/model\.safetensors: missing key '{missing}'"):
        load_segformer(write("deeper", deeper, weights))

    with pytest.raises(ConversionError, match="mmseg.pth: stage 0 has no transformer blocks"):
        segformer_from_state_dict({"backbone.layers.0.0.projection.weight": np.zeros((4, 3, 7, 7))}, source="mmseg.pth")


def test_resize_bilinear_upsamples_as_torch():
    image = photo_crop("coffee", (13, 20), 80, 120)
    expected = F.interpolate(torch.from_numpy(image).permute(0, 3, 1, 2), size=(40, 47), mode="bilinear",
                             align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(resize_bilinear(image, (40, 47))), expected, rtol=0, atol=1e-6)


def test_window_starts_follow_mmseg():
    assert window_starts(512, 512, 341) == (0,)
    assert window_starts(600, 512, 341) == (0, 88)
    assert window_starts(1100, 512, 341) == (0, 341, 588)


#: Two stages only (transformers' num_encoder_blocks): `segment`'s tests check its windows, not the encoder, and
#: each compile of a deeper model costs seconds of the suite's time budget.
TWO_STAGE_TINY = dict(num_encoder_blocks=2, depths=[1, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
                      sr_ratios=[2, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=8,
                      num_labels=7)


@pytest.fixture(scope="module")
def two_stage_model(tmp_path_factory):
    reference = reference_model(TWO_STAGE_TINY, seed=3)
    directory = tmp_path_factory.mktemp("segformer_segment")
    reference.save_pretrained(directory)
    return reference, load_segformer(directory)


def labels_agree(got: np.ndarray, logits: np.ndarray) -> None:
    """got == argmax(logits) wherever the reference's best two classes are more than 1e-4 apart."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 1e-4
    assert decided.mean() > 0.99
    np.testing.assert_array_equal(got[decided], logits.argmax(-1)[decided])


def test_segment_resizes_a_small_image_as_transformers_does(two_stage_model):
    """An image smaller than the model size: resized up to it, labels as transformers' post-processing gives."""
    reference, (model, params, _) = two_stage_model
    image = photo_crop("chelsea", (40, 56), 100, 150)
    processor = transformers.SegformerImageProcessorPil(do_resize=False, do_rescale=False)
    inputs = processor(images=list(image.transpose(0, 3, 1, 2)), input_data_format="channels_first",
                       return_tensors="pt")
    with torch.inference_mode():
        resized = F.interpolate(inputs["pixel_values"], size=(64, 64), mode="bilinear", align_corners=False)
        outputs = reference(pixel_values=resized)
        logits = F.interpolate(outputs.logits, size=(40, 56), mode="bilinear", align_corners=False)
        expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[(40, 56)])[0].numpy()
    logits = logits.permute(0, 2, 3, 1).numpy()
    got_logits = np.asarray(segment_logits(image, model, params, size=64))
    np.testing.assert_allclose(got_logits, logits, rtol=0, atol=1e-4)
    got = np.asarray(segment(image, model, params, size=64))
    assert got.shape == (1, 40, 56) and got.dtype == np.int32 and len(np.unique(expected)) > 1
    labels_agree(got[0], logits[0])
    assert (got[0] == expected).mean() > 0.999


def mmseg_slide_logits(reference, image: np.ndarray, crop: int, stride: int) -> np.ndarray:
    """mmseg's EncoderDecoder.slide_inference (logits upsampled per window, summed, divided by the count)."""
    pixels = torch.from_numpy(np.array(imagenet_normalize(image))).permute(0, 3, 1, 2)
    _, _, h_img, w_img = pixels.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = torch.zeros((1, reference.config.num_labels, h_img, w_img))
    count = torch.zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2, x2 = min(h_idx * stride + crop, h_img), min(w_idx * stride + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            with torch.inference_mode():
                logits = reference(pixels[:, :, y1:y2, x1:x2]).logits
            preds[:, :, y1:y2, x1:x2] += F.interpolate(logits, size=(y2 - y1, x2 - x1), mode="bilinear",
                                                       align_corners=False)
            count[:, :, y1:y2, x1:x2] += 1
    return (preds / count).permute(0, 2, 3, 1).numpy()


def test_segment_slides_windows_over_a_large_image_as_mmseg(two_stage_model):
    reference, (model, params, _) = two_stage_model
    image = photo_crop("astronaut", (64, 112), 40, 160)
    expected = mmseg_slide_logits(reference, image, crop=64, stride=42)  # 3 windows: left, middle, right
    got = np.asarray(segment_logits(image, model, params, size=64, stride=42, batch_size=2))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    labels_agree(np.asarray(segment(image, model, params, size=64, stride=42, batch_size=2))[0], expected[0])


def mmcv_rescale_size(width: int, height: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv 1.6's ``rescale_size((w, h), scale)`` for a tuple scale, as its source reads: (new w, new h)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * float(factor) + 0.5), int(height * float(factor) + 0.5)


@pytest.mark.parametrize("height,width", [
    (96, 128), (480, 640), (1536, 2048),  # 4:3 below, at and above 640 on the short side
    (90, 160), (1080, 1920), (2160, 3840),  # 16:9: the long side limits (2048 / 1920 < 640 / 1080) only from 1080p
    (128, 96), (1920, 1080), (641, 320),  # portrait
    (100, 1000), (640, 640), (37, 53),  # wider than 2048:640, square, odd sizes
])
def test_keep_ratio_size_follows_mmcv(height, width):
    new_w, new_h = mmcv_rescale_size(width, height, (2048, 640))
    assert keep_ratio_size(height, width) == keep_ratio_size(height, width, (640, 2048)) == (new_h, new_w)
    assert min(new_h, new_w) <= 640 and max(new_h, new_w) <= 2048
    assert min(new_h, new_w) == 640 or max(new_h, new_w) == 2048


def test_keep_ratio_sizes_by_hand():
    assert keep_ratio_size(480, 640) == (640, 853)  # x 4/3: 853.3
    assert keep_ratio_size(1080, 1920) == (640, 1138)  # x 0.5926: 1137.8
    assert keep_ratio_size(1920, 1080) == (1138, 640)
    assert keep_ratio_size(100, 1000) == (205, 2048)  # the long side limits: x 2.048
    with pytest.raises(ValueError, match="positive"):
        keep_ratio_size(0, 10)


@pytest.mark.parametrize("size", [(61, 83), (23, 31)])
def test_resize_bilinear_is_cv2_inter_linear_both_ways(size):
    image = photo_crop("coffee", (40, 56), 80, 120)
    expected = cv2.resize(image[0], size[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(np.asarray(resize_bilinear(image, size))[0], expected, rtol=0, atol=2e-6)
    logits = torch.from_numpy(image).permute(0, 3, 1, 2)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(resize_bilinear(image, size)), expected, rtol=0, atol=2e-6)


def mmseg_whole_logits(reference, image: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """mmseg 0.29's test pipeline of the MiT-B5 ADE20K config: Resize(keep_ratio=True) by mmcv.imrescale
    (cv2.INTER_LINEAR), Normalize, EncoderDecoder.whole_inference with rescale=True (logits resized to the resized
    image in encode_decode, then to the original size)."""
    h, w = image.shape[1:3]
    new_w, new_h = mmcv_rescale_size(w, h, scale)
    resized = cv2.resize(image[0], (new_w, new_h), interpolation=cv2.INTER_LINEAR)[None]
    pixels = torch.from_numpy(np.array(imagenet_normalize(resized))).permute(0, 3, 1, 2)
    with torch.inference_mode():
        logits = reference(pixels).logits
        logits = F.interpolate(logits, size=(new_h, new_w), mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("crop,scale", [
    ((40, 56), (96, 64)),  # grows x 1.6 to 64 x 90: the logits shrink back
    ((100, 150), (96, 64)),  # shrinks x 0.64 to 64 x 96, without antialiasing as cv2
])
def test_segment_keep_ratio_whole_as_mmseg(two_stage_model, crop, scale):
    reference, (model, params, _) = two_stage_model
    image = photo_crop("chelsea", crop, 100, 150)
    expected = mmseg_whole_logits(reference, image, scale)
    got = np.asarray(segment_logits(image, model, params, resize="keep_ratio", scale=scale))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    labels_agree(np.asarray(segment(image, model, params, resize="keep_ratio", scale=scale))[0], expected[0])
    if crop == (40, 56):
        square = np.asarray(segment_logits(image, model, params, size=64))
        assert np.abs(square - expected).max() > 100 * 1e-4  # the preprocessings differ: the test tells them apart
        with pytest.raises(ValueError, match="resize must be one of"):
            segment(image, model, params, resize="stretch")


#: transformers' key fragments -> open-mmlab's (mmseg/models/backbones/mit.py), for the encoder.
HF_TO_MMSEG = [
    ("segformer.encoder.block.", "backbone.layers.*.1."), ("layer_norm_1", "norm1"), ("layer_norm_2", "norm2"),
    ("attention.output.dense", "attn.attn.out_proj"), ("attention.self.sr", "attn.sr"),
    ("attention.self.layer_norm", "attn.norm"), ("mlp.dense1", "ffn.layers.0"), ("mlp.dwconv.dwconv", "ffn.layers.1"),
    ("mlp.dense2", "ffn.layers.4"),
]


def mmseg_state_dict(hf_state: dict, head: dict) -> dict:
    """transformers' encoder tensors under open-mmlab's names, with ``head`` (open-mmlab names) as decode head."""
    state = dict(head)
    for key, value in hf_state.items():
        if key.startswith("decode_head.") or ".attention.self.key." in key or ".attention.self.value." in key:
            continue
        if ".attention.self.query." in key:
            parts = [hf_state[key.replace(".query.", f".{name}.")] for name in ("query", "key", "value")]
            key, value = key.replace("attention.self.query.", "attn.attn.in_proj_"), np.concatenate(parts)
        if re.search(r"mlp\.dense[12]\.weight", key):
            value = value[:, :, None, None]
        key = re.sub(r"segformer\.encoder\.patch_embeddings\.(\d)\.proj\.", r"backbone.layers.\1.0.projection.", key)
        key = re.sub(r"segformer\.encoder\.patch_embeddings\.(\d)\.layer_norm\.", r"backbone.layers.\1.0.norm.", key)
        key = re.sub(r"segformer\.encoder\.layer_norm\.(\d)\.", r"backbone.layers.\1.2.", key)
        key = re.sub(r"segformer\.encoder\.block\.(\d)\.", r"backbone.layers.\1.1.", key)
        for hf, mmseg in HF_TO_MMSEG[1:]:
            key = key.replace(hf, mmseg)
        state[key] = value
    return state


def test_open_mmlab_checkpoint_matches_its_head_written_in_torch(tmp_path):
    """open-mmlab's SegformerHead (per-stage 1x1 conv + BN + ReLU, stage order, fusion conv + BN + ReLU) on
    transformers' encoder with open-mmlab's LayerNorm eps 1e-6, against the converted checkpoint."""
    reference = reference_model(TWO_STAGE_TINY, seed=5)
    directory = tmp_path / "hf"
    reference.save_pretrained(directory)
    hf_state = load_file(directory / "model.safetensors")
    rng = np.random.default_rng(5)
    width, widths = TWO_STAGE_TINY["decoder_hidden_size"], TWO_STAGE_TINY["hidden_sizes"]
    head = {
        "decode_head.fusion_conv.conv.weight": hf_state["decode_head.linear_fuse.weight"],
        "decode_head.conv_seg.weight": hf_state["decode_head.classifier.weight"],
        "decode_head.conv_seg.bias": hf_state["decode_head.classifier.bias"],
    }
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        head[f"decode_head.fusion_conv.bn.{name}"] = hf_state[f"decode_head.batch_norm.{name}"]
    for stage, hidden in enumerate(widths):
        prefix = f"decode_head.convs.{stage}"
        head[f"{prefix}.conv.weight"] = rng.normal(0, hidden**-0.5, (width, hidden, 1, 1)).astype(np.float32)
        head[f"{prefix}.bn.weight"] = rng.uniform(0.5, 1.5, width).astype(np.float32)
        head[f"{prefix}.bn.bias"] = rng.normal(0, 0.2, width).astype(np.float32)
        head[f"{prefix}.bn.running_mean"] = rng.normal(0, 0.3, width).astype(np.float32)
        head[f"{prefix}.bn.running_var"] = rng.uniform(0.5, 1.5, width).astype(np.float32)
    state = mmseg_state_dict(hf_state, head)
    assert "backbone.layers.1.1.0.attn.attn.in_proj_weight" in state and "backbone.layers.0.2.weight" in state
    path = tmp_path / "segformer_mit.pth"
    torch.save({"state_dict": {k: torch.as_tensor(v) for k, v in state.items()}, "meta": {}}, path)
    model, params, _ = load_segformer(path)
    assert model.mmseg_head and model.layer_norm_eps == 1e-6 and model.num_attention_heads == (1, 2)
    assert default_resize(model) == "keep_ratio" and default_resize(load_segformer(directory)[0]) == "square"

    pixels = np.array(imagenet_normalize(photo_crop("chelsea", (64, 96), 100, 150)))
    t = {k: torch.as_tensor(v) for k, v in head.items()}

    def conv_bn_relu(x, prefix, conv):
        x = F.conv2d(x, t[f"{prefix}.{conv}.weight"])
        x = F.batch_norm(x, t[f"{prefix}.bn.running_mean"], t[f"{prefix}.bn.running_var"], t[f"{prefix}.bn.weight"],
                         t[f"{prefix}.bn.bias"], training=False, eps=1e-5)
        return F.relu(x)

    for module in reference.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = 1e-6
    with torch.inference_mode():
        features = reference.segformer(torch.from_numpy(pixels).permute(0, 3, 1, 2), output_hidden_states=True)
        features = features.hidden_states
        outs = [F.interpolate(conv_bn_relu(x, f"decode_head.convs.{i}", "conv"), size=features[0].shape[2:],
                              mode="bilinear", align_corners=False) for i, x in enumerate(features)]
        fused = F.conv2d(torch.cat(outs, dim=1), t["decode_head.fusion_conv.conv.weight"])
        mean, var = (torch.as_tensor(hf_state[f"decode_head.batch_norm.running_{s}"]) for s in ("mean", "var"))
        scale, bias = (torch.as_tensor(hf_state[f"decode_head.batch_norm.{s}"]) for s in ("weight", "bias"))
        fused = F.relu(F.batch_norm(fused, mean, var, scale, bias, training=False, eps=1e-5))
        expected = F.conv2d(fused, t["decode_head.conv_seg.weight"], t["decode_head.conv_seg.bias"])
    expected = expected.permute(0, 2, 3, 1).numpy()
    forward = jax.jit(model.apply, compiler_options={"xla_backend_optimization_level": 0})
    got = np.asarray(forward({"params": params}, pixels))
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
