"""VGG perceptual loss (Johnson et al. 2016; ESRGAN; BasicSR's ``PerceptualLoss`` without its style term).

The features come from a ``desra_jax.models.VGG19Features`` module: ``vgg.apply({'params': p}, x)`` returns a dict
layer name -> NHWC features, 'convX_Y' before the ReLU and 'reluX_Y' after it. The module must have been built with
every layer named in ``layer_weights`` (``VGG19Features(layer_names=tuple(weights))``); whether inputs are normalized
with the ImageNet statistics (``use_input_norm``) and mapped from [-1, 1] (``range_norm``) is the module's setting.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from desra_jax.losses.pixel import safe_sqrt

#: ESRGAN (Wang et al. 2018): VGG19 conv5_4 features before activation.
ESRGAN_LAYER_WEIGHTS = {"conv5_4": 1.0}

#: Real-ESRGAN (Wang et al. 2021, train_realesrgan_x4plus.yml): five layers before activation.
REAL_ESRGAN_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}

PERCEPTUAL_CRITERIA = ("l1", "l2", "fro")


def _feature_distance(features: jnp.ndarray, target: jnp.ndarray, criterion: str) -> jnp.ndarray:
    """Scalar distance between two (N, h, w, c) feature maps: mean |.|, mean (.)^2, or the mean per-image norm."""
    difference = features - target
    if criterion == "l1":
        return jnp.mean(jnp.abs(difference))
    if criterion == "l2":
        return jnp.mean(jnp.square(difference))
    # BasicSR's 'fro' is torch.norm over the whole batch tensor, which grows with the batch size; the norm of each
    # image's features averaged over the batch keeps this a batch mean like every other loss here.
    return jnp.mean(safe_sqrt(jnp.sum(jnp.square(difference), axis=tuple(range(1, difference.ndim)))))


def perceptual_loss(
    vgg,
    vgg_params,
    sr: jnp.ndarray,
    hr: jnp.ndarray,
    layer_weights: Mapping[str, float] = ESRGAN_LAYER_WEIGHTS,
    criterion: str = "l1",
) -> jnp.ndarray:
    """sum_k w_k * criterion(phi_k(SR), phi_k(HR)), a scalar; phi_k = the VGG features of layer k.

    sr, hr: (N, H, W, 3) RGB in [0, 1] (or [-1, 1] for a ``range_norm`` VGG). vgg: a ``VGG19Features`` whose
    ``layer_names`` include every key of ``layer_weights``; vgg_params: its parameters (frozen: the HR features are
    under stop_gradient, and callers differentiate with respect to the generator). criterion: 'l1' (ESRGAN and
    Real-ESRGAN), 'l2' (mean squared error) or 'fro' (Frobenius norm of each image's feature difference, averaged
    over the batch). Published weightings: :data:`ESRGAN_LAYER_WEIGHTS`, :data:`REAL_ESRGAN_LAYER_WEIGHTS`.
    """
    if not layer_weights:
        raise ValueError("layer_weights is empty: name at least one VGG layer, e.g. ESRGAN_LAYER_WEIGHTS")
    if criterion not in PERCEPTUAL_CRITERIA:
        raise ValueError(f"perceptual criterion must be one of {', '.join(PERCEPTUAL_CRITERIA)}, got {criterion!r}")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {sr.shape} and {hr.shape}")
    sr_features = vgg.apply({"params": vgg_params}, sr)
    hr_features = jax.lax.stop_gradient(vgg.apply({"params": vgg_params}, hr))
    missing = [name for name in layer_weights if name not in sr_features]
    if missing:
        raise ValueError(
            f"the VGG module returns layers {sorted(sr_features)}, but layer_weights also needs {missing}; "
            f"build it with layer_names={tuple(layer_weights)}"
        )
    return sum(
        weight * _feature_distance(sr_features[name], hr_features[name], criterion)
        for name, weight in layer_weights.items()
    )
