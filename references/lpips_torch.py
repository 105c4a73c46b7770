"""PyTorch reference of LPIPS v0.1 (Zhang et al. 2018, the ``lpips`` package), written from its architecture.

``lpips.LPIPS(net, lpips=True, spatial=False)``: ScalingLayer (shift/scale constants below), the torchvision
backbone's ``features`` cut into five slices ending at ReLU taps, each tap unit-normalised over channels
(``normalize_tensor``, eps 1e-10), squared difference, a bias-free 1x1 conv per tap behind a Dropout
(``linK.model.1.weight``), spatial mean, summed over taps. Inputs are NCHW in [-1, 1] as the package takes them.
The backbones keep torchvision's ``features.N`` indices so their ``state_dict`` has torchvision's key layout;
torchvision itself is not installable here.
"""

import torch
from torch import nn

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def alexnet_features() -> tuple[nn.Sequential, tuple[int, ...], tuple[int, ...]]:
    """torchvision ``alexnet().features``; taps after the ReLUs 1, 4, 7, 9, 11 (``lpips.pretrained_networks``)."""
    layers = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )
    return layers, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)


def vgg16_features() -> tuple[nn.Sequential, tuple[int, ...], tuple[int, ...]]:
    """torchvision ``vgg16().features``; taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (indices 3 ... 29)."""
    layers, in_ch = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
            in_ch = width
    return nn.Sequential(*layers), (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)


class Backbone(nn.Module):
    """Holds ``features`` only, so ``state_dict()`` is ``features.N.weight/bias`` as in torchvision's files."""

    def __init__(self, net: str):
        super().__init__()
        self.features, self.taps, self.widths = {"alex": alexnet_features, "vgg": vgg16_features}[net]()

    def forward(self, x):
        outputs = []
        for index, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class NetLinLayer(nn.Module):
    def __init__(self, chn_in: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(chn_in, 1, 1, 1, 0, bias=False))

    def forward(self, x):
        return self.model(x)


class LinLayers(nn.Module):
    """The ``linK`` layers alone: ``state_dict()`` has the keys of the package's ``weights/v0.1/<net>.pth``."""

    def __init__(self, widths):
        super().__init__()
        for k, width in enumerate(widths):
            setattr(self, f"lin{k}", NetLinLayer(width))


def normalize_tensor(x, eps=1e-10):
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


class LPIPSTorch(nn.Module):
    def __init__(self, net: str):
        super().__init__()
        self.backbone = Backbone(net)
        self.lins = LinLayers(self.backbone.widths)
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])

    def forward(self, in0, in1):
        """in0, in1: (N, 3, H, W) in [-1, 1] -> (N,)."""
        feats0 = self.backbone((in0 - self.shift) / self.scale)
        feats1 = self.backbone((in1 - self.shift) / self.scale)
        total = 0
        for k, (f0, f1) in enumerate(zip(feats0, feats1)):
            diff = (normalize_tensor(f0) - normalize_tensor(f1)) ** 2
            total = total + getattr(self.lins, f"lin{k}")(diff).mean(dim=(2, 3), keepdim=True)
        return total[:, 0, 0, 0]


def random_lpips(net: str, seed: int = 0) -> LPIPSTorch:
    """Torch's default random init, lin weights made non-negative like trained ones (the package clamps them)."""
    torch.manual_seed(seed)
    reference = LPIPSTorch(net).eval()
    with torch.no_grad():
        for k in range(len(reference.backbone.widths)):
            weight = getattr(reference.lins, f"lin{k}").model[1].weight
            weight.copy_(weight.abs())
    return reference


def save_released_layout(reference: LPIPSTorch, folder, net: str):
    """Saves the reference as the two files users hold: the package's ``<net>.pth`` (lin layers) and a
    torchvision backbone file (``features.N.*`` plus a ``classifier`` key, which converters must drop).
    Returns (lin path, backbone path)."""
    backbone = dict(reference.backbone.state_dict())
    backbone["classifier.6.weight"] = torch.zeros(1000, 4096)
    torch.save(backbone, folder / "backbone.pth")
    torch.save(reference.lins.state_dict(), folder / f"{net}.pth")
    return folder / f"{net}.pth", folder / "backbone.pth"
