"""SegFormer checkpoints into :class:`~desra_jax.models.segformer.Segformer` params.

Three layouts are read:

- Hugging Face ``SegformerForSemanticSegmentation`` (the ``nvidia/segformer-*`` checkpoints, and what
  ``save_pretrained`` writes): ``segformer.encoder.patch_embeddings.N.proj``, ``segformer.encoder.block.N.M.
  attention.self.query``, ..., ``decode_head.linear_c.N.proj``, ``decode_head.linear_fuse``,
  ``decode_head.batch_norm``, ``decode_head.classifier``; sizes from the directory's ``config.json``.
- The original SegFormer release (NVlabs/SegFormer, built on mmsegmentation 0.x; ``state_dict`` wrapper):
  ``backbone.patch_embed1.proj``, ``backbone.block1.0.attn.q``, ``attn.kv`` (key and value stacked),
  ``backbone.norm1``, ``decode_head.linear_c4.proj``, ``linear_fuse.conv``, ``linear_fuse.bn``,
  ``linear_pred``. Its keys are renamed to the Hugging Face ones by the mapping transformers publishes
  (models/segformer/convert_segformer_original_to_pytorch.py), then read as above, with transformers'
  LayerNorm eps 1e-5 as that conversion keeps it (NVlabs' blocks used 1e-6; the difference is ignored there too).
- open-mmlab's own SegFormer (mmsegmentation >= 0.17, e.g. ``segformer_mit-b5_640x640_160k_ade20k_*.pth``,
  the checkpoint DeSRA's authors used): ``backbone.layers.N.0.projection`` (patch embedding),
  ``backbone.layers.N.1.M.attn.attn.in_proj_weight`` (query, key, value stacked), ``ffn.layers.0/1/4`` (1x1
  conv, depthwise conv, 1x1 conv), ``backbone.layers.N.2`` (stage norm), ``decode_head.convs.N.conv/bn``,
  ``decode_head.fusion_conv.conv/bn``, ``decode_head.conv_seg``. Its head differs (`Segformer.mmseg_head`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from desra_jax.convert.torch_state import ConversionError, StateDictReader, read_state_dict, unwrap_state_dict
from desra_jax.data.ade20k import NUM_ADE20K_CLASSES, ade20k_class_names
from desra_jax.models.segformer import Segformer

#: Segformer fields read from a Hugging Face ``config.json`` (the rest of that file is ignored, layer_norm_eps
#: included: transformers never reads it); the last is ours, set for open-mmlab checkpoints.
CONFIG_FIELDS = ("num_channels", "depths", "sr_ratios", "hidden_sizes", "patch_sizes", "strides",
                 "num_attention_heads", "mlp_ratios", "decoder_hidden_size", "num_labels", "mmseg_head")

#: open-mmlab's MixVisionTransformer builds its LayerNorms with norm_cfg=dict(type='LN', eps=1e-6).
MMSEG_LAYER_NORM_EPS = 1e-6

_HF_PREFIX = "segformer.encoder"


def segformer_from_config(config: Mapping[str, Any], source: str = "config") -> Segformer:
    """A `Segformer` from a transformers ``SegformerConfig``-style dict; absent fields keep MiT-b0 defaults.

    ``num_labels`` may be given as ``id2label`` alone, as in transformers. Raises ConversionError when the
    per-stage lists disagree in length.
    """
    fields = {name: config[name] for name in CONFIG_FIELDS if name in config}
    if "num_labels" not in fields and "id2label" in config:
        fields["num_labels"] = len(config["id2label"])
    fields = {name: tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else value
              for name, value in fields.items()}
    if fields.get("mmseg_head"):
        fields["layer_norm_eps"] = MMSEG_LAYER_NORM_EPS
    model = Segformer(**fields)
    per_stage = {name: getattr(model, name) for name in CONFIG_FIELDS if isinstance(getattr(model, name), tuple)}
    if len({len(value) for value in per_stage.values()}) != 1:
        raise ConversionError(f"{source}: per-stage settings differ in length: {per_stage}")
    return model


def segformer_from_state_dict(
    state_dict: Mapping[str, Any], config: Mapping[str, Any] | None = None, source: str = "state_dict"
) -> tuple[Segformer, dict]:
    """A SegFormer state_dict (any of the three layouts, see the module doc) as ``(Segformer, params)``.

    ``config`` (a transformers config dict) gives the sizes. Without it, or for fields it lacks, sizes are read
    from the tensor shapes: depths, hidden sizes, patch sizes, sr_ratios, mlp_ratios, decoder width, number of
    labels and input channels. Shapes cannot tell the strides (default MiT's 4/2/2/2, as every published size
    b0-b5) nor, except for open-mmlab's layout (whose widths are a multiple of the heads: embed_dims * heads),
    the number of attention heads: MiT's 1/2/5/8 then.
    Raises ConversionError naming ``source`` and the key for any missing, mis-shaped or unexpected tensor.
    """
    state = unwrap_state_dict(state_dict)
    if any(key.startswith("backbone.layers.") for key in state):
        state = hf_keys_from_mmseg(state)
    elif any(key.startswith("backbone.") for key in state):
        state = hf_keys_from_original(state)
    model = segformer_from_config({**infer_config(state, source), **(config or {})}, source)
    reader = StateDictReader(state, source)
    params = _encoder_params(reader, model)
    params.update(_decode_head_params(reader, model))
    reader.finish()
    return model, params


def infer_config(state: Mapping[str, Any], source: str = "state_dict") -> dict:
    """The sizes a Hugging Face-layout state_dict shows in its shapes, as ``SegformerConfig`` fields."""
    if f"{_HF_PREFIX}.patch_embeddings.0.proj.weight" not in state:
        raise ConversionError(f"{source}: missing key {_HF_PREFIX + '.patch_embeddings.0.proj.weight'!r} "
                              "(not a SegFormer semantic segmentation checkpoint)")
    num_stages = 1 + max(int(m.group(1)) for key in state
                         if (m := re.match(rf"{_HF_PREFIX}\.patch_embeddings\.(\d+)\.", key)))
    config: dict[str, Any] = {"depths": [], "hidden_sizes": [], "patch_sizes": [], "sr_ratios": [], "mlp_ratios": [],
                              "strides": [4] + [2] * (num_stages - 1)}  # MiT's; shapes do not show strides
    for stage in range(num_stages):
        proj = np.shape(state[f"{_HF_PREFIX}.patch_embeddings.{stage}.proj.weight"])
        hidden = proj[0]
        config["hidden_sizes"].append(hidden)
        config["patch_sizes"].append(proj[-1])
        if stage == 0:
            config["num_channels"] = proj[1]
        blocks = {int(m.group(1)) for key in state if (m := re.match(rf"{_HF_PREFIX}\.block\.{stage}\.(\d+)\.", key))}
        if not blocks:
            raise ConversionError(f"{source}: stage {stage} has no transformer blocks (keys of block 0 missing)")
        config["depths"].append(len(blocks))
        sr = state.get(f"{_HF_PREFIX}.block.{stage}.0.attention.self.sr.weight")
        config["sr_ratios"].append(np.shape(sr)[-1] if sr is not None else 1)
        fc1 = state.get(f"{_HF_PREFIX}.block.{stage}.0.mlp.dense1.weight")
        config["mlp_ratios"].append(np.shape(fc1)[0] // hidden if fc1 is not None else 4)
    if "decode_head.linear_c.0.proj.weight" in state:
        config["decoder_hidden_size"] = np.shape(state["decode_head.linear_c.0.proj.weight"])[0]
    if "decode_head.linear_c.0.bn.weight" in state:  # only hf_keys_from_mmseg writes these
        config.update(mmseg_head=True,
                      num_attention_heads=[hidden // config["hidden_sizes"][0] for hidden in config["hidden_sizes"]])
    if "decode_head.classifier.weight" in state:
        config["num_labels"] = np.shape(state["decode_head.classifier.weight"])[0]
    return config


def hf_keys_from_original(state: Mapping[str, Any]) -> dict[str, Any]:
    """An NVlabs/SegFormer (mmseg 0.x) state_dict with transformers' key names, values untouched.

    The renaming is transformers' published one (convert_segformer_original_to_pytorch.py): stage numbers
    1-4 become 0-3, ``attn.kv`` is split in half into key (first) and value, ``linear_pred`` is the classifier.
    ``decode_head.conv_seg`` is the unused classifier that mmseg's BaseDecodeHead always creates; it is
    dropped when ``linear_pred`` exists (as transformers does) and is the classifier otherwise.
    """
    renamed: dict[str, Any] = {}
    has_linear_pred = any(key.startswith("decode_head.linear_pred.") for key in state)
    for key, value in state.items():
        if key.startswith("decode_head.conv_seg.") and has_linear_pred:
            continue
        match = re.fullmatch(r"(backbone\.block(\d)\.(\d+)\.attn\.)kv\.(weight|bias)", key)
        if match:
            half = np.shape(value)[0] // 2
            base = f"{_HF_PREFIX}.block.{int(match.group(2)) - 1}.{match.group(3)}.attention.self"
            renamed[f"{base}.key.{match.group(4)}"] = value[:half]
            renamed[f"{base}.value.{match.group(4)}"] = value[half:]
            continue
        renamed[_renamed(key, _ORIGINAL_TO_HF)] = value
    return renamed


def hf_keys_from_mmseg(state: Mapping[str, Any]) -> dict[str, Any]:
    """An open-mmlab SegFormer state_dict with transformers' key names where the layers match.

    ``in_proj_weight`` is split in three (query, key, value: torch's MultiheadAttention order), 1x1 convs become
    linear weights. The head's per-stage conv + BatchNorm become ``decode_head.linear_c.N.proj`` (no bias) and
    ``decode_head.linear_c.N.bn``, which only `Segformer.mmseg_head` reads.
    """
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(backbone\.layers\.\d+\.1\.\d+\.attn\.)attn\.in_proj_(weight|bias)", key)
        if match:
            third = np.shape(value)[0] // 3
            base = _renamed(match.group(1), _MMSEG_TO_HF)
            for index, name in enumerate(("query", "key", "value")):
                renamed[f"{base}attention.self.{name}.{match.group(2)}"] = value[index * third:(index + 1) * third]
            continue
        if re.search(r"\.ffn\.layers\.[04]\.weight$|decode_head\.convs\.\d+\.conv\.weight$", key):
            value = value[:, :, 0, 0]
        renamed[_renamed(key, _MMSEG_TO_HF)] = value
    return renamed


_MMSEG_TO_HF = (
    (r"backbone\.layers\.(\d+)\.0\.projection\.", lambda m: f"{_HF_PREFIX}.patch_embeddings.{m[1]}.proj."),
    (r"backbone\.layers\.(\d+)\.0\.norm\.", lambda m: f"{_HF_PREFIX}.patch_embeddings.{m[1]}.layer_norm."),
    (r"backbone\.layers\.(\d+)\.1\.(\d+)\.", lambda m: f"{_HF_PREFIX}.block.{m[1]}.{m[2]}."),
    (r"backbone\.layers\.(\d+)\.2\.", lambda m: f"{_HF_PREFIX}.layer_norm.{m[1]}."),
    (r"\.norm(\d)\.", lambda m: f".layer_norm_{m[1]}."),
    (r"\.attn\.attn\.out_proj\.", lambda m: ".attention.output.dense."),
    (r"\.attn\.sr\.", lambda m: ".attention.self.sr."),
    (r"\.attn\.norm\.", lambda m: ".attention.self.layer_norm."),
    (r"\.attn\.$", lambda m: "."),
    (r"\.ffn\.layers\.0\.", lambda m: ".mlp.dense1."),
    (r"\.ffn\.layers\.1\.", lambda m: ".mlp.dwconv.dwconv."),
    (r"\.ffn\.layers\.4\.", lambda m: ".mlp.dense2."),
    (r"decode_head\.convs\.(\d+)\.conv\.", lambda m: f"decode_head.linear_c.{m[1]}.proj."),
    (r"decode_head\.convs\.(\d+)\.bn\.", lambda m: f"decode_head.linear_c.{m[1]}.bn."),
    (r"decode_head\.fusion_conv\.conv\.", lambda m: "decode_head.linear_fuse."),
    (r"decode_head\.fusion_conv\.bn\.", lambda m: "decode_head.batch_norm."),
    (r"decode_head\.conv_seg\.", lambda m: "decode_head.classifier."),
)


_ORIGINAL_TO_HF = (
    (r"backbone\.patch_embed(\d)\.norm\.", lambda m: f"{_HF_PREFIX}.patch_embeddings.{int(m[1]) - 1}.layer_norm."),
    (r"backbone\.patch_embed(\d)\.", lambda m: f"{_HF_PREFIX}.patch_embeddings.{int(m[1]) - 1}."),
    (r"backbone\.block(\d)\.(\d+)\.", lambda m: f"{_HF_PREFIX}.block.{int(m[1]) - 1}.{m[2]}."),
    (r"backbone\.norm(\d)\.", lambda m: f"{_HF_PREFIX}.layer_norm.{int(m[1]) - 1}."),
    (r"\.norm(\d)\.", lambda m: f".layer_norm_{m[1]}."),
    (r"\.attn\.q\.", lambda m: ".attention.self.query."),
    (r"\.attn\.proj\.", lambda m: ".attention.output.dense."),
    (r"\.attn\.sr\.", lambda m: ".attention.self.sr."),
    (r"\.attn\.norm\.", lambda m: ".attention.self.layer_norm."),
    (r"\.mlp\.fc(\d)\.", lambda m: f".mlp.dense{m[1]}."),
    (r"decode_head\.linear_c(\d)\.", lambda m: f"decode_head.linear_c.{int(m[1]) - 1}."),
    (r"decode_head\.linear_fuse\.conv\.", lambda m: "decode_head.linear_fuse."),
    (r"decode_head\.linear_fuse\.bn\.", lambda m: "decode_head.batch_norm."),
    (r"decode_head\.(linear_pred|conv_seg)\.", lambda m: "decode_head.classifier."),
)


def _renamed(key: str, table) -> str:
    """key with every (pattern, replacement) of a renaming table (_MMSEG_TO_HF, _ORIGINAL_TO_HF) applied in order."""
    for pattern, replacement in table:
        key = re.sub(pattern, replacement, key)
    return key


def _encoder_params(reader: StateDictReader, model: Segformer) -> dict:
    params = {}
    in_ch = model.num_channels
    for stage, hidden in enumerate(model.hidden_sizes):
        embed = f"{_HF_PREFIX}.patch_embeddings.{stage}"
        params[f"patch_embed_{stage}"] = {
            "proj": reader.conv(f"{embed}.proj", in_ch, hidden, model.patch_sizes[stage]),
            "layer_norm": reader.layer_norm(f"{embed}.layer_norm", hidden),
        }
        for index in range(model.depths[stage]):
            params[f"block_{stage}_{index}"] = _block_params(
                reader, f"{_HF_PREFIX}.block.{stage}.{index}", hidden, model.sr_ratios[stage],
                hidden * model.mlp_ratios[stage])
        params[f"norm_{stage}"] = reader.layer_norm(f"{_HF_PREFIX}.layer_norm.{stage}", hidden)
        in_ch = hidden
    return params


def _block_params(reader: StateDictReader, prefix: str, hidden: int, sr_ratio: int, width: int) -> dict:
    attention = f"{prefix}.attention.self"
    params = {
        "query": reader.linear(f"{attention}.query", hidden, hidden),
        "key": reader.linear(f"{attention}.key", hidden, hidden),
        "value": reader.linear(f"{attention}.value", hidden, hidden),
        "out": reader.linear(f"{prefix}.attention.output.dense", hidden, hidden),
    }
    if sr_ratio > 1:
        params["sr"] = reader.conv(f"{attention}.sr", hidden, hidden, sr_ratio)
        params["sr_norm"] = reader.layer_norm(f"{attention}.layer_norm", hidden)
    return {
        "norm_1": reader.layer_norm(f"{prefix}.layer_norm_1", hidden),
        "attention": params,
        "norm_2": reader.layer_norm(f"{prefix}.layer_norm_2", hidden),
        "mlp": {
            "fc1": reader.linear(f"{prefix}.mlp.dense1", hidden, width),
            # A depthwise torch conv is (width, 1, 3, 3): one input channel per group, as flax's HWIO wants it.
            "dwconv": reader.conv(f"{prefix}.mlp.dwconv.dwconv", 1, width, 3),
            "fc2": reader.linear(f"{prefix}.mlp.dense2", width, hidden),
        },
    }


def _decode_head_params(reader: StateDictReader, model: Segformer) -> dict:
    width = model.decoder_hidden_size
    params = {}
    for stage, hidden in enumerate(model.hidden_sizes):
        prefix = f"decode_head.linear_c.{stage}"
        params[f"linear_c_{stage}"] = reader.linear(f"{prefix}.proj", hidden, width, bias=not model.mmseg_head)
        if model.mmseg_head:
            norm, stats = reader.batch_norm(f"{prefix}.bn", width)
            params[f"linear_c_{stage}_bn"] = {**norm, **stats}
    params["linear_fuse"] = reader.conv("decode_head.linear_fuse", width * len(model.hidden_sizes), width, 1,
                                        bias=False)
    norm, stats = reader.batch_norm("decode_head.batch_norm", width)
    params["batch_norm"] = {**norm, **stats}
    params["classifier"] = reader.conv("decode_head.classifier", width, model.num_labels, 1)
    return params


def load_segformer(
    path: str | os.PathLike, config: Mapping[str, Any] | str | os.PathLike | None = None
) -> tuple[Segformer, dict, dict[int, str]]:
    """``(Segformer, params, id2label)`` from a file the user already has (never downloaded).

    ``path`` is a Hugging Face model directory (``config.json`` plus ``model.safetensors``, which needs no
    torch, or ``pytorch_model.bin``), or a single checkpoint file of any layout (module doc). For a single
    file, ``config`` (a dict or a ``config.json`` path) may give what shapes cannot (see
    `segformer_from_state_dict`). id2label comes from the config; without one, a 150-label model gets the
    ADE20K class names (third_party/ade20k) and any other ``LABEL_i``.
    """
    path = Path(path)
    if path.is_dir():
        if config is None:
            config = path / "config.json"
        weights = next((path / name for name in ("model.safetensors", "pytorch_model.bin")
                        if (path / name).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{path}: expected model.safetensors or pytorch_model.bin in the directory")
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"{path}: no such SegFormer checkpoint file or directory")
    if config is not None and not isinstance(config, Mapping):
        config = _read_config(Path(config))
    model, params = segformer_from_state_dict(read_state_dict(weights), config, source=os.fspath(weights))
    return model, params, _id2label(config or {}, model.num_labels)


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: no such config file (a Hugging Face model directory has config.json)"
                                ) from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{path}: not a readable JSON config ({error})") from error
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("model_type", "segformer") != "segformer":
        raise ConversionError(f"{path}: expected model_type 'segformer', got {config['model_type']!r}")
    return config


def _id2label(config: Mapping[str, Any], num_labels: int) -> dict[int, str]:
    if "id2label" in config:
        return {int(index): name for index, name in config["id2label"].items()}
    if num_labels == NUM_ADE20K_CLASSES:
        return dict(enumerate(ade20k_class_names()))
    return {index: f"LABEL_{index}" for index in range(num_labels)}
