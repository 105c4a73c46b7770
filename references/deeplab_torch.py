"""PyTorch references of torchvision's ResNet (bottleneck, v1.5), torchvision's DeepLabV3 head and a DeepLabV3+,
written here because torchvision cannot be installed.

State_dict keys are those of the originals: ``ResNet`` has torchvision's ``conv1``, ``bn1``, ``layerN.M.*``,
``downsample.0/1`` and ``fc``; ``DeepLabV3`` has torchvision's ``backbone.*``, ``classifier.0.convs.*``,
``classifier.0.project.*``, ``classifier.1/2/4`` and ``aux_classifier.*``; ``DeepLabV3Plus`` has the key names of
VainF/DeepLabV3Plus-Pytorch (``classifier.aspp``, ``classifier.project``, ``classifier.classifier``), with the V3+
paper's two 3x3 decoder convs or VainF's one. All take ImageNet-standardised NCHW input.
"""

import torch
import torch.nn.functional as F
from torch import nn

EXPANSION = 4


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch), nn.ReLU()]


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck``: the stride on the 3x3 conv (v1.5)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with bottlenecks; ``replace_stride_with_dilation`` as there (``_make_layer``)."""

    def __init__(self, layers=(3, 4, 6, 3), width: int = 64, replace_stride_with_dilation=(False, False, False),
                 num_classes: int | None = 1000):
        super().__init__()
        self.inplanes, self.dilation = width, 1
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        dilate = (False, *replace_stride_with_dilation)
        for stage, blocks in enumerate(layers):
            layer = self._make_layer(width * 2**stage, blocks, 1 if stage == 0 else 2, dilate[stage])
            setattr(self, f"layer{stage + 1}", layer)
        if num_classes is not None:
            self.fc = nn.Linear(width * 8 * EXPANSION, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * EXPANSION, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * EXPANSION))
        layers = [Bottleneck(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        """(layer1, layer4) outputs, as torchvision's IntermediateLayerGetter returns them to DeepLab."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        low_level = self.layer1(x)
        return low_level, self.layer4(self.layer3(self.layer2(low_level)))


class ASPPPooling(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(in_ch, out_ch, 1))

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """torchvision's ``ASPP``; ``dropout`` 0.5 there, 0.1 in VainF's."""

    def __init__(self, in_ch: int, rates, out_ch: int = 256, dropout: float = 0.1):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 1))]
            + [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 3, rate)) for rate in rates]
            + [ASPPPooling(in_ch, out_ch)]
        )
        self.project = nn.Sequential(*conv_bn_relu(len(self.convs) * out_ch, out_ch, 1), nn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHeadV3Plus(nn.Module):
    def __init__(self, in_ch: int, low_level_ch: int, num_classes: int, rates, aspp_ch: int, projection: int,
                 channels: int, dropout: float, decoder_convs: int):
        super().__init__()
        self.project = nn.Sequential(*conv_bn_relu(low_level_ch, projection, 1))
        self.aspp = ASPP(in_ch, rates, aspp_ch, dropout)
        convs = [conv_bn_relu(projection + aspp_ch if i == 0 else channels, channels, 3) for i in range(decoder_convs)]
        self.classifier = nn.Sequential(*sum(convs, []), nn.Conv2d(channels, num_classes, 1))

    def forward(self, low_level, high_level):
        x = self.aspp(high_level)
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([self.project(low_level), x], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ at output stride 16 (rates as given) or 8 (``output_stride=8``, rates doubled by the caller)."""

    def __init__(self, num_classes=1, layers=(3, 4, 6, 3), width=64, rates=(6, 12, 18), aspp_ch=256,
                 projection=48, channels=256, output_stride=16, dropout=0.1, decoder_convs=2):
        super().__init__()
        dilation = (False, output_stride == 8, True)
        self.backbone = ResNet(layers, width, dilation, num_classes=None)
        self.classifier = DeepLabHeadV3Plus(width * 8 * EXPANSION, width * EXPANSION, num_classes, rates, aspp_ch,
                                            projection, channels, dropout, decoder_convs)

    def forward(self, x):
        logits = self.classifier(*self.backbone.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class DeepLabV3(nn.Module):
    """torchvision's ``deeplabv3_resnet50`` layout (output stride 8, rates 12/24/36, auxiliary FCN head on
    layer3); only its state_dict is used."""

    def __init__(self, num_classes=21, layers=(3, 4, 6, 3), width=64):
        super().__init__()
        self.backbone = ResNet(layers, width, (False, True, True), num_classes=None)
        self.classifier = nn.Sequential(ASPP(width * 8 * EXPANSION, (12, 24, 36), dropout=0.5),
                                        *conv_bn_relu(256, 256, 3), nn.Conv2d(256, num_classes, 1))
        self.aux_classifier = nn.Sequential(*conv_bn_relu(width * 4 * EXPANSION, 256, 3), nn.Dropout(0.1),
                                            nn.Conv2d(256, num_classes, 1))


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial affine parameters and running statistics in every BatchNorm, so that eval-mode parity checks
    the statistics' conversion (fresh ones are the identity)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
