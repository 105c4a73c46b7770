"""BasicSR / Real-ESRGAN discriminator checkpoints (``net_d_*.pth``) into Flax variables.

The architecture is recognised from the keys: ``conv1.weight_orig`` (spectral norm) means
:class:`UNetDiscriminatorSN`, ``conv0_0.weight`` means :class:`VGGStyleDiscriminator`. Widths, input channels
and the VGG input size come from the tensor shapes; the U-Net's ``skip_connection`` leaves no trace in the
weights, so it is a keyword (Real-ESRGAN's default, True).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from desra_jax.convert.torch_state import ConversionError, StateDictReader, read_state_dict, unwrap_state_dict
from desra_jax.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator

_UNET_SN_CONVS = {  # name: (in / num_feat, out / num_feat, kernel)
    "conv1": (1, 2, 4),
    "conv2": (2, 4, 4),
    "conv3": (4, 8, 4),
    "conv4": (8, 4, 3),
    "conv5": (4, 2, 3),
    "conv6": (2, 1, 3),
    "conv7": (1, 1, 3),
    "conv8": (1, 1, 3),
}


def _vgg_discriminator(reader: StateDictReader, source: str) -> tuple[VGGStyleDiscriminator, dict]:
    if "conv5_0.weight" in reader:
        raise ConversionError(
            f"{source}: BasicSR's 256-input VGGStyleDiscriminator (conv5_0, conv5_1) is not supported; "
            "VGGStyleDiscriminator takes any multiple of 32 with the five stages of the 128 version"
        )
    num_feat, num_in_ch = reader.shape("conv0_0.weight")[:2]
    linear_in = reader.shape("linear1.weight")[1]
    side = math.isqrt(linear_in // (num_feat * 8))  # spatial side of the last feature map: input_size / 32
    if side < 1 or side * side * num_feat * 8 != linear_in:
        raise ConversionError(
            f"{source}: linear1.weight has {linear_in} inputs, expected {num_feat * 8} * k^2 "
            f"for num_feat={num_feat}"
        )
    params = {"conv0_0": reader.conv("conv0_0", num_in_ch, num_feat)}
    stats = {}
    widths = (num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8)
    layers = [("0_1", num_feat, num_feat, 4)]  # (name, in, out, kernel)
    for stage, (width_in, width) in enumerate(zip(widths, widths[1:]), start=1):
        layers += [(f"{stage}_0", width_in, width, 3), (f"{stage}_1", width, width, 4)]
    for name, channels_in, channels_out, kernel in layers:
        params[f"conv{name}"] = reader.conv(f"conv{name}", channels_in, channels_out, kernel, bias=False)
        params[f"bn{name}"], stats[f"bn{name}"] = reader.batch_norm(f"bn{name}", channels_out)
    linear1 = reader.linear("linear1", linear_in, 100)
    # torch flattens NCHW, so linear1's input rows are in (C, H, W) order; the Flax model flattens NHWC.
    channels = num_feat * 8
    kernel = linear1["kernel"].reshape(channels, side, side, 100).transpose(1, 2, 0, 3)
    params["linear1"] = {"kernel": kernel.reshape(linear_in, 100), "bias": linear1["bias"]}
    params["linear2"] = reader.linear("linear2", 100, 1)
    module = VGGStyleDiscriminator(num_in_ch=num_in_ch, num_feat=num_feat, input_size=32 * side)
    return module, {"params": params, "batch_stats": stats}


def _spectral_conv(reader: StateDictReader, name: str, in_ch: int, out_ch: int, kernel: int) -> tuple[dict, dict]:
    """torch.nn.utils.spectral_norm's ``weight_orig``/``weight_u``/``weight_v`` as SpectralNormConv variables."""
    weight = reader.take(f"{name}.weight_orig", (out_ch, in_ch, kernel, kernel))
    u = reader.take(f"{name}.weight_u", (out_ch,))
    v = reader.take(f"{name}.weight_v", (in_ch * kernel * kernel,))
    # torch reads the weight as (out, in*k*k); SpectralNormConv reads the HWIO kernel as (k*k*in, out).
    v = v.reshape(in_ch, kernel, kernel).transpose(1, 2, 0).reshape(-1)
    return {"kernel": np.transpose(weight, (2, 3, 1, 0))}, {"u": u, "v": v}


def _unet_discriminator(reader: StateDictReader, skip_connection: bool) -> tuple[UNetDiscriminatorSN, dict]:
    num_feat, num_in_ch = reader.shape("conv0.weight")[:2]
    params = {"conv0": reader.conv("conv0", num_in_ch, num_feat)}
    spectral = {}
    for name, (in_mult, out_mult, kernel) in _UNET_SN_CONVS.items():
        params[name], spectral[name] = _spectral_conv(
            reader, name, in_mult * num_feat, out_mult * num_feat, kernel
        )
    params["conv9"] = reader.conv("conv9", num_feat, 1)
    module = UNetDiscriminatorSN(num_in_ch=num_in_ch, num_feat=num_feat, skip_connection=skip_connection)
    return module, {"params": params, "spectral": spectral}


def discriminator_from_torch(
    state_dict: Mapping[str, Any], skip_connection: bool = True, source: str = "state_dict"
) -> tuple[VGGStyleDiscriminator | UNetDiscriminatorSN, dict]:
    """A BasicSR discriminator state_dict as ``(module, variables)``.

    ``variables`` is ``{'params', 'batch_stats'}`` for the VGG-style discriminator and ``{'params', 'spectral'}``
    for the U-Net; apply as ``module.apply(variables, x)`` with x (N, H, W, C) in [0, 1]. A ``{'params': ...}``
    wrapper is unwrapped. ``skip_connection`` only applies to the U-Net. Raises ConversionError naming any
    missing, mis-shaped or unexpected key.
    """
    reader = StateDictReader(unwrap_state_dict(state_dict), source)
    if "conv1.weight_orig" in reader:
        module, variables = _unet_discriminator(reader, skip_connection)
    elif "conv0_0.weight" in reader:
        module, variables = _vgg_discriminator(reader, source)
    else:
        shown = ", ".join(repr(k) for k in reader.keys()[:5])
        raise ConversionError(
            f"{source}: not a BasicSR discriminator (expected 'conv1.weight_orig' for UNetDiscriminatorSN or "
            f"'conv0_0.weight' for VGGStyleDiscriminator), got keys {shown}"
        )
    reader.finish()
    return module, variables


def load_discriminator(
    path: str | os.PathLike, skip_connection: bool = True
) -> tuple[VGGStyleDiscriminator | UNetDiscriminatorSN, dict]:
    """``discriminator_from_torch`` of a ``.pth``/``.safetensors`` file (BasicSR's ``net_d_*.pth``)."""
    return discriminator_from_torch(read_state_dict(path), skip_connection, source=os.fspath(path))
