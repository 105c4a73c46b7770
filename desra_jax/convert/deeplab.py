"""PyTorch ResNet / DeepLab checkpoints into :class:`~desra_jax.models.deeplabv3plus.DeepLabV3Plus` variables.

Three layouts are read, every key mapped explicitly (a leftover key is an error):

- torchvision ``resnet50`` / ``resnet101`` ImageNet state_dicts (``conv1``, ``bn1``, ``layerN.M.conv1/bn1/conv2/bn2/
  conv3/bn3/downsample.0/downsample.1``): the backbone only; ``fc.*`` (the ImageNet classifier) is dropped.
- torchvision ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` state_dicts: ``backbone.*`` and the ASPP
  (``classifier.0.convs.*``, ``classifier.0.project.*``). DeepLabV3 has no decoder: its head (``classifier.1``-``4``,
  a 3x3 conv on the ASPP output and a 1x1 classifier to the 21 VOC classes) and ``aux_classifier.*`` have no
  counterpart and are dropped; the V3+ decoder and classifier stay as initialised. Its atrous rates (12, 24, 36
  at output stride 8) are not weights: the converted ASPP runs at the model's own rates.
- A full DeepLabV3+ in VainF/DeepLabV3Plus-Pytorch's key names (``backbone.*``, ``classifier.aspp.*``,
  ``classifier.project.*``, ``classifier.classifier.*``): VainF's checkpoints (their ``model_state``) with
  ``decoder_convs=1``, and ``references/deeplab_torch.py`` with the paper's two decoder convs.

Partial conversions return ``{'params': ..., 'batch_stats': ...}`` holding only the converted subtrees;
:func:`merge_variables` puts them into initialised variables, checking every shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from desra_jax.convert.torch_state import ConversionError, StateDictReader, read_state_dict, unwrap_state_dict
from desra_jax.models.deeplabv3plus import DeepLabV3Plus
from desra_jax.models.resnet import EXPANSION


def _conv_bn(reader: StateDictReader, conv: str, bn: str, in_ch: int, out_ch: int, kernel: int) -> tuple[dict, dict]:
    """A bias-free torch conv and the BatchNorm after it as ``(params, stats)`` of a flax ``ConvBNReLU``."""
    bn_params, bn_stats = reader.batch_norm(bn, out_ch)
    return {"conv": reader.conv(conv, in_ch, out_ch, kernel, bias=False), "bn": bn_params}, {"bn": bn_stats}


def _resnet(reader: StateDictReader, prefix: str, layers: tuple[int, ...], width: int) -> tuple[dict, dict]:
    """torchvision ResNet keys under ``prefix`` as ``(params, stats)`` of :class:`~desra_jax.models.resnet.ResNet`.

    Every stage's first block, and only it, has a ``downsample`` projection: it changes the channel count (the
    stem's ``width`` to 4 ``width``, then doubling), dilated or not, so one mapping serves every output stride.
    """
    params = {"conv1": reader.conv(f"{prefix}conv1", 3, width, 7, bias=False)}
    params["bn1"], stats = reader.batch_norm(f"{prefix}bn1", width)
    stats = {"bn1": stats}
    in_ch = width
    for stage, blocks in enumerate(layers, start=1):
        inner = width * 2 ** (stage - 1)
        for block in range(blocks):
            torch_block, name = f"{prefix}layer{stage}.{block}", f"layer{stage}_{block}"
            block_params, block_stats = {}, {}
            shapes = (("1", in_ch, inner, 1), ("2", inner, inner, 3), ("3", inner, inner * EXPANSION, 1))
            for index, conv_in, conv_out, kernel in shapes:
                block_params[f"conv{index}"] = reader.conv(f"{torch_block}.conv{index}", conv_in, conv_out, kernel,
                                                           bias=False)
                block_params[f"bn{index}"], block_stats[f"bn{index}"] = reader.batch_norm(
                    f"{torch_block}.bn{index}", conv_out)
            if block == 0:
                block_params["downsample_conv"] = reader.conv(f"{torch_block}.downsample.0", in_ch,
                                                              inner * EXPANSION, 1, bias=False)
                block_params["downsample_bn"], block_stats["downsample_bn"] = reader.batch_norm(
                    f"{torch_block}.downsample.1", inner * EXPANSION)
            params[name], stats[name] = block_params, block_stats
            in_ch = inner * EXPANSION
    return params, stats


def _aspp(reader: StateDictReader, prefix: str, model: DeepLabV3Plus) -> tuple[dict, dict]:
    """torchvision ``ASPP`` keys under ``prefix`` as ``(params, stats)`` of the model's ASPP."""
    in_ch, out_ch = model.backbone_width * 8 * EXPANSION, model.aspp_channels
    params, stats = {}, {}
    branches = len(model.aspp_rates) + 2
    for index in range(branches):
        # convs.0 and the atrous convs are Sequential(conv, bn, relu); the pooling branch is
        # Sequential(pool, conv, bn, relu)
        first = 1 if index == branches - 1 else 0
        kernel = 3 if 0 < index < branches - 1 else 1
        params[f"convs_{index}"], stats[f"convs_{index}"] = _conv_bn(
            reader, f"{prefix}convs.{index}.{first}", f"{prefix}convs.{index}.{first + 1}", in_ch, out_ch, kernel)
    params["project"], stats["project"] = _conv_bn(
        reader, f"{prefix}project.0", f"{prefix}project.1", branches * out_ch, out_ch, 1)
    return params, stats


def _drop(reader: StateDictReader, prefixes: tuple[str, ...]) -> None:
    """Takes (and discards) every key starting with one of ``prefixes``."""
    for key in reader.keys():
        if key.startswith(prefixes):
            reader.take(key)


def resnet_backbone_from_torch(state_dict: Mapping[str, Any], model: DeepLabV3Plus = DeepLabV3Plus(),
                               source: str = "state_dict") -> dict:
    """A torchvision ``resnet50``/``resnet101`` state_dict as ``{'params': {'backbone': ...}, 'batch_stats':
    {'backbone': ...}}`` for ``model`` (its ``backbone_layers`` and ``backbone_width`` fix every expected shape).

    ``fc.*`` is dropped on purpose (the ImageNet classifier has no place in a segmentation network). Raises
    ConversionError naming any missing, mis-shaped or unexpected key.
    """
    reader = StateDictReader(state_dict, source)
    params, stats = _resnet(reader, "", model.backbone_layers, model.backbone_width)
    _drop(reader, ("fc.",))
    reader.finish()
    return {"params": {"backbone": params}, "batch_stats": {"backbone": stats}}


def deeplabv3_from_torchvision(state_dict: Mapping[str, Any], model: DeepLabV3Plus = DeepLabV3Plus(),
                               source: str = "state_dict") -> dict:
    """A torchvision ``deeplabv3_resnet50``/``101`` state_dict as ``{'params': {'backbone', 'aspp'},
    'batch_stats': {'backbone', 'aspp'}}`` for ``model``: backbone and ASPP converted; the V3 head
    (``classifier.1``-``4``) and ``aux_classifier.*`` dropped; decoder (``low_level_project``, ``decoder_*``)
    and ``classifier`` not produced (keep them initialised, see :func:`merge_variables`).
    """
    reader = StateDictReader(state_dict, source)
    backbone = _resnet(reader, "backbone.", model.backbone_layers, model.backbone_width)
    aspp = _aspp(reader, "classifier.0.", model)
    _drop(reader, ("classifier.1.", "classifier.2.", "classifier.4.", "aux_classifier."))
    reader.finish()
    return {"params": {"backbone": backbone[0], "aspp": aspp[0]},
            "batch_stats": {"backbone": backbone[1], "aspp": aspp[1]}}


def deeplabv3plus_from_torch(state_dict: Mapping[str, Any], model: DeepLabV3Plus,
                             source: str = "state_dict") -> dict:
    """A full DeepLabV3+ state_dict in VainF's key names as the complete ``{'params', 'batch_stats'}`` of
    ``model``: decoder conv i is ``classifier.classifier.{3i}`` with its BatchNorm at ``{3i + 1}`` (a ReLU
    between), the final classifier follows them (``.3`` for VainF's one decoder conv, ``.6`` for two)."""
    reader = StateDictReader(state_dict, source)
    backbone = _resnet(reader, "backbone.", model.backbone_layers, model.backbone_width)
    aspp = _aspp(reader, "classifier.aspp.", model)
    low_level = _conv_bn(reader, "classifier.project.0", "classifier.project.1", model.backbone_width * EXPANSION,
                         model.decoder_projection, 1)
    parts = {"backbone": backbone, "aspp": aspp, "low_level_project": low_level}
    head, in_ch = "classifier.classifier.", model.decoder_projection + model.aspp_channels
    for index in range(model.decoder_convs):
        parts[f"decoder_{index}"] = _conv_bn(reader, f"{head}{3 * index}", f"{head}{3 * index + 1}", in_ch,
                                             model.decoder_channels, 3)
        in_ch = model.decoder_channels
    classifier = reader.conv(f"{head}{3 * model.decoder_convs}", in_ch, model.num_classes, 1)
    reader.finish()
    return {"params": {**{name: part[0] for name, part in parts.items()}, "classifier": classifier},
            "batch_stats": {name: part[1] for name, part in parts.items()}}


def merge_variables(variables: Mapping[str, Any], converted: Mapping[str, Any], source: str = "converted") -> dict:
    """``variables`` (e.g. from ``model.init``) with every leaf that ``converted`` holds replaced by it.

    Each converted leaf must exist in ``variables`` with the same shape; otherwise ConversionError names its path
    and both shapes. Leaves only in ``variables`` (the freshly initialised parts) are kept as they are.
    """

    def shape(leaf: Any) -> tuple[int, ...]:
        return tuple(getattr(leaf, "shape", np.shape(leaf)))  # arrays and jax.ShapeDtypeStruct alike

    def merge(target: Any, update: Any, path: str) -> Any:
        if not isinstance(update, Mapping):
            if isinstance(target, Mapping) or shape(target) != shape(update):
                raise ConversionError(f"{source}: {path} has shape {shape(update)}, the model expects "
                                      f"{'a subtree' if isinstance(target, Mapping) else shape(target)}")
            return np.asarray(update, dtype=getattr(target, "dtype", np.float32))
        if not isinstance(target, Mapping):
            raise ConversionError(f"{source}: {path} is a subtree, the model has a leaf of shape {shape(target)}")
        unknown = sorted(set(update) - set(target))
        if unknown:
            raise ConversionError(f"{source}: {path}/{unknown[0]} is not a variable of the model")
        return {**target, **{key: merge(target[key], value, f"{path}/{key}") for key, value in update.items()}}

    return merge(dict(variables), converted, "")


def load_backbone_into(path: str | os.PathLike, model: DeepLabV3Plus, variables: Mapping[str, Any]) -> dict:
    """``variables`` of ``model`` with the weights of a torchvision checkpoint file the user already has: an
    ImageNet ``resnet50``/``resnet101`` (backbone) or a ``deeplabv3_resnet50``/``101`` (backbone and ASPP), told
    apart by its keys. Everything else keeps its initial values."""
    source = os.fspath(path)
    state = unwrap_state_dict(read_state_dict(path))
    convert = deeplabv3_from_torchvision if "backbone.conv1.weight" in state else resnet_backbone_from_torch
    return merge_variables(variables, convert(state, model, source), source)
