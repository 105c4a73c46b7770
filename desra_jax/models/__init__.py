"""Flax (linen) networks, NHWC, float32 in [0, 1]."""
from desra_jax.models.rrdbnet import RRDBNet
from desra_jax.models.srvgg import SRVGGNetCompact
from desra_jax.models.span import SPAN
from desra_jax.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from desra_jax.models.vgg import VGG19Features
from desra_jax.models.deeplabv3plus import DeepLabV3Plus
from desra_jax.models.segformer import Segformer
