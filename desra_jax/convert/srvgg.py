"""SRVGGNetCompact weights from Real-ESRGAN PyTorch checkpoints (``srvgg_arch.py`` key names).

Real-ESRGAN keeps the network in one ``nn.ModuleList`` ``body``: ``body.0`` the first conv, ``body.1`` its
activation, ``body.2`` the next conv, ..., ``body.{2 num_conv + 2}`` the last conv; a PReLU activation holds
``body.N.weight`` of shape (num_feat,), ReLU and LeakyReLU hold nothing. The architecture comes from the
shapes: num_feat and num_in_ch from ``body.0``, num_conv from the last conv's index, upscale from its output
channels (``num_out_ch * upscale**2``), act_type from whether ``body.1.weight`` exists.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from desra_jax.convert.torch_state import ConversionError, StateDictReader, read_state_dict, unwrap_state_dict
from desra_jax.models.srvgg import SRVGGNetCompact

_CONV_KEY = re.compile(r"body\.(\d+)\.weight")


def is_srvgg_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether a (possibly ``params_ema``-wrapped) state_dict has srvgg_arch's keys: ``body.0.weight`` as a conv
    and nothing outside ``body``."""
    state = unwrap_state_dict(state_dict)
    return "body.0.weight" in state and len(state["body.0.weight"].shape) == 4 and all(
        key.startswith("body.") for key in state
    )


def srvgg_from_torch(
    state_dict: Mapping[str, Any],
    *,
    num_out_ch: int | None = None,
    act_type: str | None = None,
    source: str = "state_dict",
) -> tuple[SRVGGNetCompact, dict]:
    """An :class:`SRVGGNetCompact` and its ``params`` from a Real-ESRGAN state_dict (realesr-general-x4v3,
    realesr-animevideov3, ...), wrapped in ``params_ema`` / ``params`` or not.

    ``num_out_ch`` defaults to num_in_ch (the last conv's channels are ``num_out_ch * upscale**2``).
    ``act_type`` is read from the keys when the activations are PReLU; ReLU and LeakyReLU leave no key, so
    for them it must be given. Raises :class:`ConversionError` naming the key on any missing, mis-shaped or
    leftover tensor.
    """
    reader = StateDictReader(unwrap_state_dict(state_dict), source)
    conv_indices = sorted(
        int(m.group(1)) for m in map(_CONV_KEY.fullmatch, reader.keys()) if m and len(reader.shape(m.group(0))) == 4
    )
    if not conv_indices or conv_indices[0] != 0:
        raise ConversionError(f"{source}: no body.0.weight convolution; not an SRVGGNetCompact checkpoint")
    last = conv_indices[-1]
    num_conv = (last - 2) // 2
    if last % 2 or num_conv < 0:
        raise ConversionError(f"{source}: the last convolution is body.{last}; srvgg_arch puts it at an even index")
    num_feat, num_in_ch = reader.shape("body.0.weight")[:2]
    num_out_ch = num_in_ch if num_out_ch is None else num_out_ch
    last_out = reader.shape(f"body.{last}.weight")[0]
    upscale = math.isqrt(last_out // num_out_ch)
    if num_out_ch * upscale**2 != last_out:
        raise ConversionError(
            f"{source}: body.{last} has {last_out} output channels, not num_out_ch * upscale**2 for "
            f"num_out_ch={num_out_ch}; pass num_out_ch="
        )
    has_prelu = "body.1.weight" in reader
    if act_type is None:
        if not has_prelu:
            raise ConversionError(
                f"{source}: no PReLU weights (body.1.weight): the activations are ReLU or LeakyReLU, which leave "
                "no key; pass act_type='relu' or 'leakyrelu'"
            )
        act_type = "prelu"
    elif (act_type == "prelu") != has_prelu:
        there = "there" if has_prelu else "not there"
        raise ConversionError(f"{source}: act_type={act_type!r}, but body.1.weight (a PReLU) is {there}")
    model = SRVGGNetCompact(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=num_conv,
                            upscale=upscale, act_type=act_type)
    params = {}
    for i in range(num_conv + 1):
        params[f"body_{2 * i}"] = reader.conv(f"body.{2 * i}", num_in_ch if i == 0 else num_feat, num_feat)
        if act_type == "prelu":
            params[f"body_{2 * i + 1}"] = {"negative_slope": reader.take(f"body.{2 * i + 1}.weight", (num_feat,))}
    params[f"body_{last}"] = reader.conv(f"body.{last}", num_feat, last_out)
    reader.finish()
    return model, jax.tree.map(jnp.asarray, params)


def load_srvgg(path: str | os.PathLike, *, num_out_ch: int | None = None,
               act_type: str | None = None) -> tuple[SRVGGNetCompact, dict]:
    """An :class:`SRVGGNetCompact` and its ``params`` from a ``.pth`` or ``.safetensors`` file, e.g. Real-ESRGAN's
    ``realesr-general-x4v3.pth``."""
    return srvgg_from_torch(read_state_dict(path), num_out_ch=num_out_ch, act_type=act_type,
                            source=os.fspath(path))
