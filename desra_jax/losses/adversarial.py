"""Adversarial losses on discriminator logits: standard GAN, the relativistic family, WGAN, and gradient penalties.

Sources: Jolicoeur-Martineau, "The relativistic discriminator: a key element missing from standard GAN" (2018) and
her released code (AlexiaJM/RelativisticGAN); ESRGAN (Wang et al. 2018) as BasicSR implements it; WGAN-GP
(Gulrajani et al. 2017); RaGP from ``papers/esrgan_ragp_fft_loss_slides.md``.

Notation: C(x) is the discriminator's raw logit (no sigmoid). ``real_logits`` = C(x_r), ``fake_logits`` = C(x_f),
float arrays of shape (N,) or (N, ...) (e.g. a U-Net discriminator's per-pixel map (N, H, W, 1)). E is the mean over
all elements of an array (batch and, for per-pixel maps, pixels), as ``torch.mean`` in BasicSR; every loss is that
mean, a scalar. sigma is the logistic sigmoid; -log sigma(x) = softplus(-x) and -log(1 - sigma(x)) = softplus(x)
keep the binary cross-entropies finite for any logit.

The relativistic losses compare a real and a fake logit through a *relativistic logit* (the shared core):

- paired (RSGAN):   r = C(x_r) - C(x_f),        f = C(x_f) - C(x_r)
- average (Ra*):    r = C(x_r) - E C(x_f),      f = C(x_f) - E C(x_r)
- centered (Rc*):   r = C(x_r) - m,             f = C(x_f) - m,   m = (E C(x_r) + E C(x_f)) / 2

and score it with a criterion that pushes a relativistic logit x up (towards "more realistic", s = +1) or down
(s = -1): SGAN softplus(-s x) (BCE with label 1 or 0), LSGAN (x - s)^2, hinge max(0, 1 - s x). The discriminator
pushes r up and f down; the generator the reverse:

    L_D = (E crit(r, +1) + E crit(f, -1)) / 2,    L_G = (E crit(r, -1) + E crit(f, +1)) / 2.

The factor 1/2 is ESRGAN's (BasicSR: D loss = (BCE(r, 1) + BCE(f, 0)) / 2, G loss = (BCE(r, 0) + BCE(f, 1)) / 2) and
that of the author's released code for RaSGAN / RaLSGAN / RaHingeGAN; the paper's printed formulas omit it, so
they are twice these values. It is kept for every two-term relativistic loss so that one adversarial weight means
the same across kinds. For the paired RSGAN both terms are equal, so L_D = E softplus(-(C(x_r) - C(x_f))) exactly.

Entry points for training code: :func:`discriminator_loss` and :func:`generator_loss` with ``kind`` one of

    'gan'      standard GAN: L_D = E softplus(-C(x_r)) + E softplus(C(x_f)); L_G = E softplus(-C(x_f))
               (non-saturating generator loss; the real logits are not used)
    'rsgan'    relativistic paired SGAN
    'rasgan'   relativistic average SGAN (ESRGAN's RaGAN)
    'ralsgan'  relativistic average LSGAN: L_D = (E (r - 1)^2 + E (f + 1)^2) / 2
    'rahinge'  relativistic average hinge: L_D = (E max(0, 1 - r) + E max(0, 1 + f)) / 2
    'rcsgan', 'rclsgan', 'rchinge'   the relativistic centered versions of the three above
    'wgan'     WGAN critic: L_D = E C(x_f) - E C(x_r); L_G = -E C(x_f)

The gradient penalty is independent of the kind: WGAN-GP = 'wgan' + :func:`gradient_penalty`; the slides' RaGP =
'rasgan' + :func:`gradient_penalty` for the discriminator and plain 'rasgan' for the generator
(`training.steps.gan_step`).

Like the paper and ESRGAN's original code, the losses let gradients flow through both logits (including the
averaged term E C(.)); BasicSR's newer ESRGAN model detaches the other side's mean in the D step to save memory.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

#: The ``kind`` names accepted by :func:`discriminator_loss` and :func:`generator_loss`.
ADVERSARIAL_KINDS = ("gan", "rsgan", "rasgan", "ralsgan", "rahinge", "rcsgan", "rclsgan", "rchinge", "wgan")


def paired_relativistic_logits(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """RSGAN: (C(x_r) - C(x_f), C(x_f) - C(x_r)), each real logit paired with the fake one at the same index."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"paired relativistic logits need real and fake logits of the same shape, "
            f"got {real_logits.shape} and {fake_logits.shape}"
        )
    return real_logits - fake_logits, fake_logits - real_logits


def average_relativistic_logits(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Ra*: (C(x_r) - E C(x_f), C(x_f) - E C(x_r))."""
    return real_logits - jnp.mean(fake_logits), fake_logits - jnp.mean(real_logits)


def centered_relativistic_logits(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Rc*: (C(x_r) - m, C(x_f) - m) with m = (E C(x_r) + E C(x_f)) / 2, the mean over real and fake together."""
    center = (jnp.mean(real_logits) + jnp.mean(fake_logits)) / 2
    return real_logits - center, fake_logits - center


def _sgan_criterion(logits: jnp.ndarray, sign: float) -> jnp.ndarray:
    """BCE with logits towards label 1 (sign = +1) or 0 (sign = -1), elementwise: softplus(-sign * x)."""
    return jax.nn.softplus(-sign * logits)


def _lsgan_criterion(logits: jnp.ndarray, sign: float) -> jnp.ndarray:
    """Least squares towards the target +1 or -1, elementwise: (x - sign)^2."""
    return jnp.square(logits - sign)


def _hinge_criterion(logits: jnp.ndarray, sign: float) -> jnp.ndarray:
    """Hinge, elementwise: max(0, 1 - sign * x)."""
    return jax.nn.relu(1.0 - sign * logits)


_RELATIVISTIC = {
    "rsgan": (paired_relativistic_logits, _sgan_criterion),
    "rasgan": (average_relativistic_logits, _sgan_criterion),
    "ralsgan": (average_relativistic_logits, _lsgan_criterion),
    "rahinge": (average_relativistic_logits, _hinge_criterion),
    "rcsgan": (centered_relativistic_logits, _sgan_criterion),
    "rclsgan": (centered_relativistic_logits, _lsgan_criterion),
    "rchinge": (centered_relativistic_logits, _hinge_criterion),
}


def _relativistic_loss(kind: str, real_logits, fake_logits, real_sign: float) -> jnp.ndarray:
    """(E crit(r, real_sign) + E crit(f, -real_sign)) / 2 for the relativistic ``kind`` (module docstring)."""
    relativistic_logits, criterion = _RELATIVISTIC[kind]
    real_relative, fake_relative = relativistic_logits(real_logits, fake_logits)
    return (jnp.mean(criterion(real_relative, real_sign)) + jnp.mean(criterion(fake_relative, -real_sign))) / 2


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"unknown adversarial loss kind {kind!r}; choose one of {', '.join(ADVERSARIAL_KINDS)}")


def discriminator_loss(kind: str, real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """The discriminator's (critic's) loss of ``kind`` (see the module docstring for each formula), a scalar.

    real_logits, fake_logits: C(x_r) and C(x_f), (N,) or (N, ...) raw logits; 'rsgan' needs equal shapes.
    """
    _check_kind(kind)
    if kind == "gan":
        return jnp.mean(_sgan_criterion(real_logits, 1.0)) + jnp.mean(_sgan_criterion(fake_logits, -1.0))
    if kind == "wgan":
        return jnp.mean(fake_logits) - jnp.mean(real_logits)
    return _relativistic_loss(kind, real_logits, fake_logits, real_sign=1.0)


def generator_loss(kind: str, real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """The generator's loss of ``kind`` (see the module docstring for each formula), a scalar.

    The relativistic kinds swap the roles of real and fake; 'gan' (non-saturating) and 'wgan' use only the fake
    logits. real_logits, fake_logits: C(x_r) and C(x_f), (N,) or (N, ...) raw logits.
    """
    _check_kind(kind)
    if kind == "gan":
        return jnp.mean(_sgan_criterion(fake_logits, 1.0))
    if kind == "wgan":
        return -jnp.mean(fake_logits)
    return _relativistic_loss(kind, real_logits, fake_logits, real_sign=-1.0)


def gradient_penalty(
    critic_fn: Callable[[jnp.ndarray], jnp.ndarray],
    real: jnp.ndarray,
    fake: jnp.ndarray,
    key: jax.Array,
    weight: float = 10.0,
) -> jnp.ndarray:
    """WGAN-GP's penalty (Gulrajani et al. 2017, eq. 3): weight * E[(||grad_{x_hat} C(x_hat)||_2 - 1)^2].

    x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] drawn once per sample from ``key``; the norm runs over
    all non-batch axes of x_hat. ``critic_fn`` maps (N, H, W, C) images to logits (N,) or (N, ...); the gradient is
    that of the sum of its outputs, which is each sample's own gradient as long as the critic treats samples
    independently (no batch normalization, as WGAN-GP requires); for a per-pixel map it is the gradient of the
    map's sum. Close over the critic's parameters (``lambda x: disc.apply({'params': p}, x)``) to differentiate the
    penalty with respect to them. Returns a scalar; weight = 10 is WGAN-GP's lambda.

    Differentiated reverse-over-forward, not through the backward pass of `jax.grad`: the penalty P depends on the
    parameters and on x_hat only through g = grad S(x_hat), S = sum C, so dP = sum_i slope_i <g_i, dg_i> with
    slope_i = 2 (||g_i|| - 1) / (N ||g_i||). With g held fixed, <slope g, dg> is the differential of the
    directional derivative S'(x_hat)[slope g], a `jax.jvp`; adding it minus its stopped value gives P's value and
    P's exact first derivatives (its second derivatives are not P's). These are the gradients that differentiating
    `jax.grad` gives (PyTorch's create_graph=True), at a fraction of the cost of a second backward pass.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake images must have the same shape, got {real.shape} and {fake.shape}")
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
    interpolates = eps * real + (1.0 - eps) * fake

    def critic_sum(images):
        return jnp.sum(critic_fn(images))

    grads = jax.lax.stop_gradient(jax.grad(critic_sum)(interpolates))
    sample_axes = tuple(range(1, grads.ndim))
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=sample_axes))
    nonzero = norms > 0
    slope = jnp.where(nonzero, 2.0 * (norms - 1.0) / (norms.size * jnp.where(nonzero, norms, 1.0)), 0.0)
    _, directional = jax.jvp(critic_sum, (interpolates,), (jnp.expand_dims(slope, sample_axes) * grads,))
    penalty = jnp.mean(jnp.square(norms - 1.0))
    return weight * (penalty + directional - jax.lax.stop_gradient(directional))

