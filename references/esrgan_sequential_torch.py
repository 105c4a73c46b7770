"""PyTorch reference of ESRGAN's first-release RRDBNet (``architecture.py``), written from its description.

The whole network is one ``nn.Sequential`` ``model``: ``model.0`` the first conv; ``model.1`` a shortcut whose
``sub`` holds the RRDB blocks and then the trunk conv (``model.1.sub.B``); ``model.2`` / ``model.5`` nearest x2
upsampling, ``model.3`` / ``model.6`` the up convs, each followed by a LeakyReLU; ``model.8`` the HR conv,
LeakyReLU, ``model.10`` the last conv. Inside a block, ``RDBk.convM`` is a Sequential whose ``0`` is the conv
(and ``1`` the LeakyReLU for M < 5), so keys read ``model.1.sub.N.RDBk.convM.0.weight``. x4 only, NCHW.
"""

import torch
from torch import nn


class _DenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        for m in range(1, 6):
            layers = [nn.Conv2d(nf + (m - 1) * gc, nf if m == 5 else gc, 3, 1, 1)]
            if m < 5:
                layers.append(nn.LeakyReLU(0.2))
            setattr(self, f"conv{m}", nn.Sequential(*layers))

    def forward(self, x):
        features = [x]
        for m in range(1, 5):
            features.append(getattr(self, f"conv{m}")(torch.cat(features, 1)))
        return x + 0.2 * self.conv5(torch.cat(features, 1))


class _RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _DenseBlock(nf, gc), _DenseBlock(nf, gc), _DenseBlock(nf, gc)

    def forward(self, x):
        return x + 0.2 * self.RDB3(self.RDB2(self.RDB1(x)))


class _Shortcut(nn.Module):
    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class ESRGANSequentialTorch(nn.Module):
    """(N, in_nc, H, W) -> (N, out_nc, 4 H, 4 W)."""

    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32):
        super().__init__()
        def up():
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2)]

        self.model = nn.Sequential(
            nn.Conv2d(in_nc, nf, 3, 1, 1),
            _Shortcut(nn.Sequential(*[_RRDB(nf, gc) for _ in range(nb)], nn.Conv2d(nf, nf, 3, 1, 1))),
            *up(),
            *up(),
            nn.Conv2d(nf, nf, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(nf, out_nc, 3, 1, 1),
        )

    def forward(self, x):
        return self.model(x)
