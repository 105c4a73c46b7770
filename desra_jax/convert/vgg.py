"""VGG19 checkpoints (torchvision's ``vgg19-dcbb9e9d.pth``, or a saved BasicSR ``VGGFeatureExtractor``) into
:class:`~desra_jax.models.vgg.VGG19Features` params."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from desra_jax.convert.torch_state import StateDictReader, read_state_dict
from desra_jax.models.vgg import VGG19_CONV_WIDTHS, VGG19_LAYER_NAMES, VGG19Features, check_layer_names


def vgg19_from_torch(
    state_dict: Mapping[str, Any],
    layer_names: tuple[str, ...] = ("conv5_4",),
    use_input_norm: bool = True,
    range_norm: bool = False,
    source: str = "state_dict",
) -> tuple[VGG19Features, dict]:
    """A VGG19 state_dict as ``(VGG19Features(layer_names, ...), params)``; apply with ``{'params': params}``.

    Two layouts are read: torchvision's ``features.{i}.weight/bias`` (i = 0, 2, 5, ..., 34, the position of the
    conv in ``VGG19_LAYER_NAMES``), and BasicSR's ``VGGFeatureExtractor`` (``vgg_net.conv1_1.weight``, ...).
    Only the convs up to the deepest requested layer become params; deeper convs that are present are still
    shape-checked, then dropped. Ignored on purpose: torchvision's ``classifier.*`` (the fully connected
    head, which feature extraction never runs) and BasicSR's ``mean``/``std`` buffers (the ImageNet constants
    that ``use_input_norm`` applies). Raises ValueError for an unknown layer name and ConversionError naming any
    missing, mis-shaped or unexpected key (a ``vgg19_bn`` checkpoint, for one, fails on its BatchNorm keys).
    """
    layer_names = tuple(layer_names)
    check_layer_names(layer_names)
    reader = StateDictReader(state_dict, source)
    basicsr = any(key.startswith("vgg_net.") for key in reader.keys())
    deepest = max(VGG19_LAYER_NAMES.index(name) for name in layer_names)
    params = {}
    in_ch = 3
    for index, name in enumerate(VGG19_LAYER_NAMES):
        if name not in VGG19_CONV_WIDTHS:
            continue
        prefix = f"vgg_net.{name}" if basicsr else f"features.{index}"
        if index <= deepest or f"{prefix}.weight" in reader:
            conv = reader.conv(prefix, in_ch, VGG19_CONV_WIDTHS[name])
            if index <= deepest:
                params[name] = conv
        in_ch = VGG19_CONV_WIDTHS[name]
    for key in reader.keys():
        if key.startswith("classifier.") or (basicsr and key in ("mean", "std")):
            reader.take(key)
    reader.finish()
    return VGG19Features(layer_names, use_input_norm, range_norm), params


def load_vgg19(
    path: str | os.PathLike,
    layer_names: tuple[str, ...] = ("conv5_4",),
    use_input_norm: bool = True,
    range_norm: bool = False,
) -> tuple[VGG19Features, dict]:
    """``vgg19_from_torch`` of a ``.pth``/``.safetensors`` file the user already has (never downloaded)."""
    return vgg19_from_torch(read_state_dict(path), layer_names, use_input_norm, range_norm, source=os.fspath(path))
