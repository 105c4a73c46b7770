"""VGG19 features for the perceptual loss, in BasicSR's ``VGGFeatureExtractor`` vocabulary, NHWC.

Simonyan & Zisserman, "Very Deep Convolutional Networks" (2015), configuration E, convolutional part only
(torchvision's ``vgg19().features``), as used by ESRGAN's perceptual loss (Wang et al. 2018, Sec. 3.3).
"""

from __future__ import annotations

import jax
from flax import linen as nn

from desra_jax.models.layers import imagenet_normalize

#: Output channels of the convolutions of each of VGG19's five blocks.
VGG19_BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, widths in enumerate(VGG19_BLOCKS, start=1):
        for index in range(1, len(widths) + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return tuple(names)


#: Layer names in network order; a name's position is also its index in torchvision's ``vgg19().features``.
VGG19_LAYER_NAMES = _layer_names()

#: Output channels of every ``convX_Y`` layer.
VGG19_CONV_WIDTHS = {
    f"conv{block}_{index}": width
    for block, widths in enumerate(VGG19_BLOCKS, start=1)
    for index, width in enumerate(widths, start=1)
}



def check_layer_names(layer_names: tuple[str, ...]) -> None:
    """Raises ValueError naming any entry of ``layer_names`` that is not a VGG19 layer."""
    unknown = [name for name in layer_names if name not in VGG19_LAYER_NAMES]
    if unknown or not layer_names:
        raise ValueError(
            f"VGG19Features: unknown layer names {unknown or '(none given)'}; "
            f"choose from {', '.join(VGG19_LAYER_NAMES)}"
        )


class VGG19Features(nn.Module):
    """Features of the named VGG19 layers: (N, H, W, 3) RGB -> {name: (N, H', W', C)}.

    ``'convX_Y'`` is a conv output before its ReLU, ``'reluX_Y'`` after, ``'poolX'`` after the 2x2 stride-2
    max-pool of block X (H' = H // 2^X, odd sizes floor as in torch). Only the layers up to the deepest
    requested one are run, and only their convs have params. Input in [0, 1], or in [-1, 1] with
    ``range_norm`` (mapped to [0, 1] first); ``use_input_norm`` standardises with the ImageNet mean and std
    the released weights were trained with (BasicSR's defaults: True, False).
    """

    layer_names: tuple[str, ...] = ("conv5_4",)
    use_input_norm: bool = True
    range_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        check_layer_names(self.layer_names)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGG19Features: expected RGB input (N, H, W, 3), got shape {x.shape}")
        if self.range_norm:
            x = (x + 1.0) / 2.0
        if self.use_input_norm:
            x = imagenet_normalize(x)
        deepest = max(VGG19_LAYER_NAMES.index(name) for name in self.layer_names)
        features = {}
        for name in VGG19_LAYER_NAMES[: deepest + 1]:
            if name.startswith("conv"):
                x = nn.Conv(VGG19_CONV_WIDTHS[name], (3, 3), padding=((1, 1), (1, 1)), name=name)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            if name in self.layer_names:
                features[name] = x
        return features
