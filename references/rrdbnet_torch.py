"""PyTorch reference of the ESRGAN / Real-ESRGAN generator, written from the architecture's description.

ESRGAN (Wang et al. 2018) Fig. 4 and BasicSR's ``rrdbnet_arch.py`` key names: ``conv_first``,
``body.N.rdbK.convM`` (K = 1..3, M = 1..5), ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``. NCHW, float32. Weights keep PyTorch's default initialisation (not BasicSR's 0.1-scaled one) so
that in a parity test every convolution moves the output visibly.
"""

import torch
from torch import nn
from torch.nn import functional as F


class ResidualDenseBlockTorch(nn.Module):
    """Five densely connected 3x3 convs, LeakyReLU 0.2 after the first four, ``x + 0.2 * conv5``."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for m in range(1, 6):
            in_ch = num_feat + (m - 1) * num_grow_ch
            out_ch = num_feat if m == 5 else num_grow_ch
            setattr(self, f"conv{m}", nn.Conv2d(in_ch, out_ch, 3, 1, 1))

    def forward(self, x):
        features = [x]
        for m in range(1, 5):
            conv = getattr(self, f"conv{m}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(features, 1))


class RRDBTorch(nn.Module):
    """Three dense blocks in a row, ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlockTorch(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlockTorch(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlockTorch(num_feat, num_grow_ch)

    def forward(self, x):
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNetTorch(nn.Module):
    """(N, num_in_ch, H, W) -> (N, num_out_ch, scale H, scale W); x2 / x1 pixel-unshuffle the input by 2 / 4."""

    def __init__(self, scale=4, num_feat=64, num_block=23, num_grow_ch=32, num_in_ch=3, num_out_ch=3):
        super().__init__()
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDBTorch(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
