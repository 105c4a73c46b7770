"""RRDBNet weights from BasicSR / Real-ESRGAN and original ESRGAN PyTorch checkpoints.

Three naming schemes hold the same tensors: BasicSR ``rrdbnet_arch.py``, xinntao/ESRGAN ``RRDBNet_arch.py``,
and ESRGAN's first release (its ``architecture.py``: one ``nn.Sequential`` ``model``, as in the first
``RRDB_ESRGAN_x4.pth`` and many community models), with B the number of blocks:

=====================  ===========================  ===================================
BasicSR / Real-ESRGAN  original ESRGAN              ESRGAN's first release
=====================  ===========================  ===================================
conv_first             conv_first                   model.0
body.N.rdbK.convM      RRDB_trunk.N.RDBK.convM      model.1.sub.N.RDBK.convM.0
conv_body              trunk_conv                   model.1.sub.B
conv_up1, conv_up2     upconv1, upconv2             model.3, model.6
conv_hr                HRconv                       model.8
conv_last              conv_last                    model.10
=====================  ===========================  ===================================

The architecture is read from the shapes: num_feat and the input channels from ``conv_first``, num_grow_ch
from the first dense block, num_block from the highest block index, num_out_ch from ``conv_last``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from desra_jax.convert.torch_state import ConversionError, StateDictReader, read_state_dict, unwrap_state_dict
from desra_jax.models.rrdbnet import RRDBNet

#: Each scheme's name of every convolution; ``{i}`` is the block, ``{k}`` the dense block, ``{m}`` the conv,
#: ``{b}`` the number of blocks.
_BASICSR_NAMES = {
    "conv_first": "conv_first",
    "body": "body",
    "dense": "body.{i}.rdb{k}.conv{m}",
    "conv_body": "conv_body",
    "conv_up1": "conv_up1",
    "conv_up2": "conv_up2",
    "conv_hr": "conv_hr",
    "conv_last": "conv_last",
}
_ESRGAN_NAMES = {
    "conv_first": "conv_first",
    "body": "RRDB_trunk",
    "dense": "RRDB_trunk.{i}.RDB{k}.conv{m}",
    "conv_body": "trunk_conv",
    "conv_up1": "upconv1",
    "conv_up2": "upconv2",
    "conv_hr": "HRconv",
    "conv_last": "conv_last",
}
_ESRGAN_SEQUENTIAL_NAMES = {
    "conv_first": "model.0",
    "body": "model.1.sub",
    "dense": "model.1.sub.{i}.RDB{k}.conv{m}.0",
    "conv_body": "model.1.sub.{b}",
    "conv_up1": "model.3",
    "conv_up2": "model.6",
    "conv_hr": "model.8",
    "conv_last": "model.10",
}
#: Pixel-unshuffle area (input channels per colour channel into conv_first) for each output scale.
_UNSHUFFLE_AREA = {4: 1, 2: 4, 1: 16}


def _naming(reader: StateDictReader) -> dict[str, str]:
    """The naming scheme of the checkpoint: ESRGAN's first release if it has ``model.0``, original ESRGAN if it
    has its trunk, else BasicSR."""
    if "model.0.weight" in reader:
        return _ESRGAN_SEQUENTIAL_NAMES
    return _ESRGAN_NAMES if "trunk_conv.weight" in reader else _BASICSR_NAMES


def _num_block(reader: StateDictReader, names: dict[str, str]) -> int:
    """One more than the highest block index of a first dense conv (a gap shows up later as a missing key)."""
    pattern = re.compile(re.escape(names["dense"].format(i="@", k=1, m=1) + ".weight").replace("@", r"(\d+)"))
    indices = [int(m.group(1)) for m in map(pattern.fullmatch, reader.keys()) if m]
    return max(indices) + 1 if indices else 0


def _scale_and_in_ch(in_ch: int, num_in_ch: int | None, scale: int | None, source: str) -> tuple[int, int]:
    """(scale, num_in_ch) from conv_first's input channels, which are num_in_ch * unshuffle area.

    The channel count alone is ambiguous (12 is RGB x2 or 12 channels x4); without overrides, 3 colour
    channels are assumed: 3 -> x4, 12 -> x2, 48 -> x1.
    """
    if scale is not None:
        if scale not in _UNSHUFFLE_AREA:
            raise ValueError(f"{source}: scale must be 1, 2 or 4, got {scale}")
        candidates = [(scale, in_ch // _UNSHUFFLE_AREA[scale])] if in_ch % _UNSHUFFLE_AREA[scale] == 0 else []
    else:
        channels = 3 if num_in_ch is None else num_in_ch
        candidates = [(s, channels) for s, area in _UNSHUFFLE_AREA.items() if channels * area == in_ch]
    if num_in_ch is not None:
        candidates = [(s, c) for s, c in candidates if c == num_in_ch]
    if not candidates:
        raise ConversionError(
            f"{source}: conv_first takes {in_ch} input channels, which fits no scale 1/2/4 with "
            f"num_in_ch={num_in_ch} scale={scale} (the input channels are num_in_ch * 16, * 4 or * 1 for "
            "scale 1, 2, 4); pass num_in_ch= and/or scale="
        )
    return candidates[0]


def rrdbnet_from_torch(
    state_dict: Mapping[str, Any],
    *,
    num_in_ch: int | None = None,
    scale: int | None = None,
    source: str = "state_dict",
) -> tuple[RRDBNet, dict]:
    """An :class:`RRDBNet` and its ``params`` from a PyTorch state_dict of any of the three naming schemes.

    ``state_dict`` may be wrapped in ``params_ema`` / ``params`` (BasicSR; the EMA weights are preferred);
    values are torch tensors or numpy arrays. ``num_in_ch`` and ``scale`` resolve the input-channel
    ambiguity (see :func:`_scale_and_in_ch`); everything else comes from the shapes. ``source`` names the
    checkpoint in errors. Raises :class:`ConversionError` naming the key on any missing, mis-shaped or
    leftover tensor.
    """
    reader = StateDictReader(unwrap_state_dict(state_dict), source)
    names = _naming(reader)
    num_feat, in_ch = reader.shape(f"{names['conv_first']}.weight")[:2]
    scale, num_in_ch = _scale_and_in_ch(in_ch, num_in_ch, scale, source)
    num_block = _num_block(reader, names)
    num_grow_ch = reader.shape(names["dense"].format(i=0, k=1, m=1) + ".weight")[0] if num_block else 32
    num_out_ch = reader.shape(f"{names['conv_last']}.weight")[0]
    model = RRDBNet(
        scale=scale,
        num_feat=num_feat,
        num_block=num_block,
        num_grow_ch=num_grow_ch,
        num_in_ch=num_in_ch,
        num_out_ch=num_out_ch,
    )

    params = {"conv_first": reader.conv(names["conv_first"], in_ch, num_feat)}
    for i in range(num_block):
        params[f"body_{i}"] = {
            f"rdb{k}": {
                f"conv{m}": reader.conv(
                    names["dense"].format(i=i, k=k, m=m),
                    num_feat + (m - 1) * num_grow_ch,
                    num_feat if m == 5 else num_grow_ch,
                )
                for m in range(1, 6)
            }
            for k in (1, 2, 3)
        }
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        params[name] = reader.conv(names[name].format(b=num_block), num_feat, num_feat)
    params["conv_last"] = reader.conv(names["conv_last"], num_feat, num_out_ch)
    reader.finish()
    return model, jax.tree.map(jnp.asarray, params)


def load_rrdbnet(
    path: str | os.PathLike, *, num_in_ch: int | None = None, scale: int | None = None
) -> tuple[RRDBNet, dict]:
    """An :class:`RRDBNet` and its ``params`` from a ``.pth`` (torch.load, weights_only) or ``.safetensors``
    file, e.g. Real-ESRGAN's ``RealESRGAN_x4plus.pth`` or ESRGAN's ``RRDB_ESRGAN_x4.pth``."""
    return rrdbnet_from_torch(read_state_dict(path), num_in_ch=num_in_ch, scale=scale, source=os.fspath(path))
