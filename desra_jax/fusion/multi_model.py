"""Multi-model fusion for deraining (Zhao 2024, "The Cross-Domain Application Research of a Super-Resolution
Semantic Artifact Rectification Method", Sec. 2.2, Artifact Optimization and Fig. 4).

The paper says only that "the identified artifact regions are processed using a combination of classic GAN-based
deraining models" and that "the outputs from these three models are processed through the artifact localization
model to identify the regions affected by rain interference"; it gives no weighting. The choice made here:

* the base model's output is kept wherever its localizer probability is below ``threshold``;
* its artifact region (probability >= ``threshold``) is replaced by a per-pixel average of the other models'
  outputs, model m weighted by its confidence of being artifact-free there, w_m ~ (1 - p_m + eps)^(1 / T):
  T = 1 weighs linearly by confidence, T -> 0 picks the most confident model at each pixel, large T averages
  them evenly; eps keeps the weights defined where every other model is certain of an artifact (then they are
  averaged evenly);
* the replacement is feathered outward with ``fusion.pseudo_gt.feather_mask`` (max of the mask and its Gaussian
  blur, sigma ``feather`` pixels), so every artifact pixel is replaced fully and the seam fades over
  ceil(3 feather) pixels outside it; beyond that the base output is returned unchanged, bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from desra_jax.fusion.pseudo_gt import feather_mask


def confidence_weights(artifact_probs: jax.Array, temperature: float = 1.0, eps: float = 1e-6) -> jax.Array:
    """Per-pixel weights of M models, (M, N, H, W) artifact probabilities in [0, 1] -> (M, N, H, W) summing to
    1 over M: softmax over models of log(1 - p_m + eps) / temperature, i.e. (1 - p_m + eps)^(1 / T) normalised."""
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    return jax.nn.softmax(jnp.log1p(eps - artifact_probs) / temperature, axis=0)


@functools.partial(jax.jit, static_argnames=("base", "feather", "temperature", "eps"))
def fuse(
    outputs: jax.Array,
    artifact_probs: jax.Array,
    base: int = 0,
    *,
    feather: float = 3.0,
    threshold: float = 0.5,
    temperature: float = 1.0,
    eps: float = 1e-6,
) -> jax.Array:
    """The base model's outputs with their artifact regions filled from the other models (see the module doc).

    outputs: (M, N, H, W, 3) in [0, 1], M >= 2 deraining models' results of the same N images.
    artifact_probs: (M, N, H, W) in [0, 1], the localizer's artifact probability for each output.
    base: index of the model whose output is repaired. feather: outward Gaussian sigma in pixels (0: hard seam).
    Returns (N, H, W, 3).
    """
    outputs, artifact_probs = jnp.asarray(outputs), jnp.asarray(artifact_probs)
    if outputs.ndim != 5 or artifact_probs.shape != outputs.shape[:4] or outputs.shape[0] < 2:
        raise ValueError(
            "fuse: expected outputs (M, N, H, W, C) with M >= 2 and artifact_probs (M, N, H, W), got "
            f"{outputs.shape} and {artifact_probs.shape}"
        )
    models = outputs.shape[0]
    if not 0 <= base < models:
        raise ValueError(f"fuse: base {base} is not one of the {models} models")
    others = jnp.asarray([m for m in range(models) if m != base])
    weights = confidence_weights(artifact_probs[others], temperature, eps)
    fill = jnp.sum(weights[..., None] * outputs[others], axis=0)
    blend = feather_mask(artifact_probs[base] >= threshold, feather)[..., None]
    return (1.0 - blend) * outputs[base] + blend * fill
