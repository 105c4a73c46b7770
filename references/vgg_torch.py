"""A PyTorch reference of torchvision's ``vgg19().features`` and BasicSR's ``VGGFeatureExtractor`` forward.

``VGG19`` holds an ``nn.Sequential`` ``features`` with torchvision's layer indices, so its state_dict keys
(``features.0.weight`` ... ``features.34.bias``) are those of torchvision's vgg19 checkpoint; the
classifier (120M parameters) is left out, the converter ignores it.
"""

import torch
from torch import nn

BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
NAMES = tuple(
    name
    for block, widths in enumerate(BLOCKS, start=1)
    for name in [
        *(f"{kind}{block}_{index}" for index in range(1, len(widths) + 1) for kind in ("conv", "relu")),
        f"pool{block}",
    ]
)


class VGG19(nn.Module):
    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for widths in BLOCKS:
            for width in widths:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        for module in self.features:
            if isinstance(module, nn.Conv2d):  # torchvision's init, plus a bias so that its conversion is tested
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.normal_(module.bias, std=0.05)


def extract_features(
    model: VGG19, x: torch.Tensor, layer_names: tuple[str, ...], use_input_norm: bool = True, range_norm: bool = False
) -> dict[str, torch.Tensor]:
    """BasicSR ``VGGFeatureExtractor.forward``: NCHW input -> {name: NCHW features}, run up to the deepest name."""
    if range_norm:
        x = (x + 1) / 2
    if use_input_norm:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (x - mean) / std
    output = {}
    for name, layer in zip(NAMES, model.features):
        x = layer(x)
        if name in layer_names:
            output[name] = x.clone()  # the next ReLU works in place
            if len(output) == len(layer_names):
                break
    return output
