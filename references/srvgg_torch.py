"""PyTorch reference of Real-ESRGAN's SRVGGNetCompact, written from the architecture's description.

``srvgg_arch.py``'s layout: one ``nn.ModuleList`` ``body`` of conv, activation, (conv, activation) x num_conv,
conv to ``num_out_ch * upscale**2`` channels; pixel shuffle; plus the nearest-upsampled input. Key names
``body.N.weight`` / ``body.N.bias``; a PReLU activation has ``body.N.weight`` of shape (num_feat,). NCHW, float32.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU()
    return nn.LeakyReLU(negative_slope=0.1)


class SRVGGNetCompactTorch(nn.Module):
    """(N, num_in_ch, H, W) -> (N, num_out_ch, upscale H, upscale W)."""

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"):
        super().__init__()
        self.upscale = upscale
        self.body = nn.ModuleList([nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)])
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(_activation(act_type, num_feat))
        self.body.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        return F.pixel_shuffle(out, self.upscale) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def random_prelu_slopes(model: nn.Module, generator: torch.Generator) -> None:
    """PReLU slopes drawn from U(-0.5, 0.5): the default 0.25 everywhere would hide a slope taken from the
    wrong layer or channel."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.PReLU):
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) - 0.5)
