"""PyTorch references of BasicSR's two discriminators (``basicsr/archs/discriminator_arch.py``), NCHW.

Written from the BasicSR architecture with its exact module names, so their state_dicts have the keys of a
BasicSR ``net_d`` checkpoint. One generalisation: ``VGGStyleDiscriminator`` accepts any input size that is a
multiple of 32 with the five stages of the 128 version (BasicSR asserts 128, or 256 with a sixth stage).
"""

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm


class VGGStyleDiscriminator(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        self.input_size = input_size
        nf = num_feat
        self.conv0_0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf, affine=True)
        widths = (nf, nf * 2, nf * 4, nf * 8, nf * 8)
        for stage in range(1, 5):
            width_in, width = widths[stage - 1], widths[stage]
            setattr(self, f"conv{stage}_0", nn.Conv2d(width_in, width, 3, 1, 1, bias=False))
            setattr(self, f"bn{stage}_0", nn.BatchNorm2d(width, affine=True))
            setattr(self, f"conv{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", nn.BatchNorm2d(width, affine=True))
        self.linear1 = nn.Linear(nf * 8 * (input_size // 32) ** 2, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.size(2) == self.input_size and x.size(3) == self.input_size
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for stage in range(1, 5):
            feat = self.lrelu(getattr(self, f"bn{stage}_0")(getattr(self, f"conv{stage}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(feat)))
        feat = feat.view(feat.size(0), -1)
        feat = self.lrelu(self.linear1(feat))
        return self.linear2(feat)


class UNetDiscriminatorSN(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, kernel_size=3, stride=1, padding=1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = F.leaky_relu(self.conv0(x), negative_slope=0.2)
        x1 = F.leaky_relu(self.conv1(x0), negative_slope=0.2)
        x2 = F.leaky_relu(self.conv2(x1), negative_slope=0.2)
        x3 = F.leaky_relu(self.conv3(x2), negative_slope=0.2)

        x3 = F.interpolate(x3, scale_factor=2, mode="bilinear", align_corners=False)
        x4 = F.leaky_relu(self.conv4(x3), negative_slope=0.2)
        if self.skip_connection:
            x4 = x4 + x2
        x4 = F.interpolate(x4, scale_factor=2, mode="bilinear", align_corners=False)
        x5 = F.leaky_relu(self.conv5(x4), negative_slope=0.2)
        if self.skip_connection:
            x5 = x5 + x1
        x5 = F.interpolate(x5, scale_factor=2, mode="bilinear", align_corners=False)
        x6 = F.leaky_relu(self.conv6(x5), negative_slope=0.2)
        if self.skip_connection:
            x6 = x6 + x0

        out = F.leaky_relu(self.conv7(x6), negative_slope=0.2)
        out = F.leaky_relu(self.conv8(out), negative_slope=0.2)
        return self.conv9(out)


def randomize_batch_norm(model: nn.Module, warmup: torch.Tensor, seed: int = 0) -> None:
    """Random affine params for every BatchNorm2d and running statistics of the ``warmup`` batch (NCHW),
    so that a conversion which drops or swaps one of the four shows in the output, and eval-mode outputs
    still depend on the input."""
    generator = torch.Generator().manual_seed(seed)
    batch_norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    with torch.no_grad():
        for module in batch_norms:
            module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=generator))
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            module.momentum = 1.0  # the running statistics become those of the warmup batch
        was_training = model.training
        model.train()(warmup)
        model.train(was_training)
        for module in batch_norms:
            module.momentum = 0.1
