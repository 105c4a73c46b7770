"""LPIPS v0.1 weights into :class:`~desra_jax.metrics.lpips.LPIPS` params, from the two files users hold.

* the ``lpips`` package's linear layers, ``lpips/weights/v0.1/alex.pth`` or ``vgg.pth``: ``linK.model.1.weight``
  (1, C_K, 1, 1) for K = 0..4 (``model.0`` when the layers were built without dropout);
* torchvision's ImageNet backbone, ``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``: ``features.N.weight``
  and ``.bias`` (its ``classifier.*`` head is never run by LPIPS and is dropped).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from desra_jax.convert.torch_state import StateDictReader, read_state_dict
from desra_jax.metrics.lpips import LPIPS, NETS, check_net, tap_widths


def _backbone_params(reader: StateDictReader, net: str) -> dict:
    params, in_ch = {}, 3
    for index, layer in enumerate(NETS[net][0]):
        if layer[0] == "conv":
            _, width, kernel, _, _ = layer
            params[f"features_{index}"] = reader.conv(f"features.{index}", in_ch, width, kernel)
            in_ch = width
    for key in reader.keys():
        if key.startswith("classifier."):  # the ImageNet head, which LPIPS never runs
            reader.take(key)
    reader.finish()
    return params


def _lin_params(reader: StateDictReader, net: str) -> dict:
    params = {}
    for k, width in enumerate(tap_widths(net)):
        prefix = f"lin{k}.model.1" if f"lin{k}.model.1.weight" in reader else f"lin{k}.model.0"
        params[f"lin{k}"] = reader.conv(prefix, width, 1, kernel=1, bias=False)
    reader.finish()
    return params


def lpips_from_torch(
    lin_state: Mapping[str, Any],
    backbone_state: Mapping[str, Any],
    net: str = "alex",
    sources: tuple[str, str] = ("lin state_dict", "backbone state_dict"),
) -> tuple[LPIPS, dict]:
    """``(LPIPS(net), params)`` from the package's lin state_dict and torchvision's backbone state_dict.

    Raises ConversionError naming any missing, mis-shaped or unexpected key (a vgg.pth given with
    ``net='alex'`` fails on lin1's shape).
    """
    check_net(net)
    params = {"backbone": _backbone_params(StateDictReader(backbone_state, sources[1]), net)}
    params.update(_lin_params(StateDictReader(lin_state, sources[0]), net))
    return LPIPS(net), params


def load_lpips(
    lin_path: str | os.PathLike, backbone_path: str | os.PathLike, net: str = "alex"
) -> tuple[LPIPS, dict]:
    """``lpips_from_torch`` of the two files (``.pth`` or ``.safetensors``); never downloads anything."""
    return lpips_from_torch(
        read_state_dict(lin_path), read_state_dict(backbone_path), net, (os.fspath(lin_path), os.fspath(backbone_path))
    )
