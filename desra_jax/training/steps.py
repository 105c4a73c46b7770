"""Pure training steps `(states, batch, key) -> (states, metrics)`, and their jitted, sharded forms.

`pixel_step` trains the MSE-SR model (ESRGAN's PSNR-oriented pretraining). `gan_step` does one generator
update then one discriminator update on the same batch, in the order of ESRGAN and BasicSR's ESRGANModel.
`localizer_step` trains the artifact localizer. `sr_train_step` and `localizer_train_step` return them jitted
over a mesh, compiled once per setting: the settings are hashable and the builders cached, and the train states
hold modules and optimizers that compare equal across runs (`state.create_state`, `state.adam`), so a resumed or
repeated run in one process reuses the compiled step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from desra_jax.data.degradations import RealESRGANSettings, pair_pool_update, realesrgan_degrade, usm_sharp
from desra_jax.losses import adversarial, frequency, perceptual, pixel
from desra_jax.losses.segmentation import segmentation_loss
from desra_jax.training import sharding
from desra_jax.training.state import TrainState, ema_update

PIXEL_LOSSES = {"l1": pixel.l1_loss, "l2": pixel.l2_loss, "charbonnier": pixel.charbonnier_loss}
PERCEPTUAL_KINDS = ("vgg", "lpips")


@dataclasses.dataclass(frozen=True)
class GanLosses:
    """Weights of the generator's loss terms and the adversarial setting; a zero weight drops the term.

    Defaults are ESRGAN's (L1 1e-2, VGG conv5_4 1.0, RaGAN 5e-3); RaGP adds `gradient_penalty_weight=10`,
    the slides' headline setting adds `fft_weight=0.3`. `perceptual`: 'vgg' (VGG19 features of
    `perceptual_layers`, compared by `perceptual_criterion`) or 'lpips' (the mean LPIPS distance, the perceptual
    baseline of the slides' RaGAN / RaGP / FFT rows).
    """

    pixel_kind: str = "l1"
    pixel_weight: float = 1e-2
    perceptual: str = "vgg"
    perceptual_weight: float = 1.0
    perceptual_layers: tuple[tuple[str, float], ...] = (("conv5_4", 1.0),)
    perceptual_criterion: str = "l1"
    gan_kind: str = "rasgan"
    gan_weight: float = 5e-3
    gradient_penalty_weight: float = 0.0
    fft_weight: float = 0.0

    def __post_init__(self):
        # A {layer: weight} table (a config's) becomes pairs: the setting is hashed to find its compiled step.
        layers = tuple((str(layer), float(weight)) for layer, weight in dict(self.perceptual_layers).items())
        object.__setattr__(self, "perceptual_layers", layers)
        if self.pixel_kind not in PIXEL_LOSSES:
            raise ValueError(f"unknown pixel loss {self.pixel_kind!r}; choose one of {sorted(PIXEL_LOSSES)}")
        if self.perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"unknown perceptual loss {self.perceptual!r}; choose one of {PERCEPTUAL_KINDS}")
        if self.gan_kind not in adversarial.ADVERSARIAL_KINDS:
            kinds = sorted(adversarial.ADVERSARIAL_KINDS)
            raise ValueError(f"unknown GAN loss {self.gan_kind!r}; choose one of {kinds}")


def _finish_generator_update(state: TrainState, grads, ema_decay: float) -> TrainState:
    state = state.apply_gradients(grads=grads)
    if state.ema_params is None:
        return state
    return state.replace(ema_params=ema_update(state.ema_params, state.params, ema_decay))


def pixel_step(state: TrainState, batch, *, pixel_kind: str = "l1", ema_decay: float = 0.999):
    """One update of the generator on the pixel loss alone; batch = {'lr': (N,h,w,3), 'hr': (N,H,W,3)}."""
    loss_fn = PIXEL_LOSSES[pixel_kind]

    def objective(params):
        return loss_fn(state.apply_fn({"params": params}, batch["lr"]), batch["hr"])

    loss, grads = jax.value_and_grad(objective)(state.params)
    return _finish_generator_update(state, grads, ema_decay), {"l_pix": loss}


def discriminate(d_state: TrainState, params, model_state, images):
    """Discriminator logits in training mode and its updated collections (BatchNorm stats, SN vectors)."""
    variables = {"params": params, **model_state}
    if not model_state:
        return d_state.apply_fn(variables, images, train=True), model_state
    return d_state.apply_fn(variables, images, train=True, mutable=list(model_state))


def gan_step(g_state: TrainState, d_state: TrainState, batch, key, perceptual_params=None, *, losses: GanLosses,
             perceptual_net=None, ema_decay: float = 0.999):
    """One generator update then one discriminator update (ESRGAN / BasicSR order) on the same batch.

    Generator: weighted pixel + perceptual + FFT + adversarial generator loss, with the discriminator fixed.
    Discriminator: adversarial discriminator loss on real HR and the (fixed) SR output, plus, when
    `losses.gradient_penalty_weight > 0`, the gradient penalty on random interpolates (WGAN-GP, and RaGP of
    the slides: L_D = L_D^RaGAN + lambda (||grad D(x_hat)|| - 1)^2). The relativistic losses are differentiated
    through both means, as in Jolicoeur-Martineau's formulation and the original ESRGAN code (BasicSR detaches
    the other side's mean). BatchNorm statistics and spectral-norm vectors advance in the discriminator update
    only. `key` drives the interpolation weights of the penalty. `perceptual_net` is the perceptual loss's
    VGG19Features or LPIPS module, with `perceptual_params`. The generator's EMA moves by `ema_decay`.

    batch: {'lr', 'hr'} and optionally 'target': the image the pixel and perceptual losses compare with, when it
    is not the HR the discriminator sees (Real-ESRGAN's USM-sharpened GT).
    """
    lr, hr = batch["lr"], batch["hr"]
    target = batch.get("target", hr)

    def generator_objective(params):
        sr = g_state.apply_fn({"params": params}, lr)
        terms = {}
        if losses.pixel_weight:
            terms["l_pix"] = losses.pixel_weight * PIXEL_LOSSES[losses.pixel_kind](sr, target)
        if losses.perceptual_weight and losses.perceptual == "lpips":
            distances = perceptual_net.apply({"params": perceptual_params}, sr, target)
            terms["l_percep"] = losses.perceptual_weight * jnp.mean(distances)
        elif losses.perceptual_weight:
            terms["l_percep"] = losses.perceptual_weight * perceptual.perceptual_loss(
                perceptual_net, perceptual_params, sr, target, dict(losses.perceptual_layers),
                losses.perceptual_criterion)
        if losses.fft_weight:
            terms["l_fft"] = losses.fft_weight * frequency.fft_loss(sr, hr)
        real_logits, _ = discriminate(d_state, d_state.params, d_state.model_state, hr)
        fake_logits, _ = discriminate(d_state, d_state.params, d_state.model_state, sr)
        terms["l_g_gan"] = losses.gan_weight * adversarial.generator_loss(
            losses.gan_kind, jax.lax.stop_gradient(real_logits), fake_logits
        )
        return sum(terms.values()), (terms, sr)

    (g_total, (metrics, sr)), g_grads = jax.value_and_grad(generator_objective, has_aux=True)(g_state.params)
    g_state = _finish_generator_update(g_state, g_grads, ema_decay)
    d_state, d_metrics = discriminator_step(d_state, hr, jax.lax.stop_gradient(sr), key, losses=losses)
    return g_state, d_state, {**metrics, **d_metrics, "l_g_total": g_total}


def discriminator_step(d_state: TrainState, hr, sr, key, *, losses: GanLosses):
    """One update of the discriminator on real `hr` and fixed `sr` (the discriminator half of `gan_step`):
    the adversarial discriminator loss, plus the gradient penalty when `losses.gradient_penalty_weight > 0`.
    Returns (d_state, metrics)."""

    def discriminator_objective(params):
        real_logits, model_state = discriminate(d_state, params, d_state.model_state, hr)
        fake_logits, model_state = discriminate(d_state, params, model_state, sr)
        terms = {"l_d_gan": adversarial.discriminator_loss(losses.gan_kind, real_logits, fake_logits)}
        if losses.gradient_penalty_weight:

            def critic(images):
                return discriminate(d_state, params, d_state.model_state, images)[0]

            terms["l_d_gp"] = adversarial.gradient_penalty(critic, hr, sr, key, losses.gradient_penalty_weight)
        aux = {"out_d_real": jnp.mean(real_logits), "out_d_fake": jnp.mean(fake_logits), **terms}
        return sum(terms.values()), (aux, model_state)

    (d_total, (d_metrics, model_state)), d_grads = jax.value_and_grad(discriminator_objective, has_aux=True)(
        d_state.params
    )
    d_state = d_state.apply_gradients(grads=d_grads).replace(model_state=model_state)
    return d_state, {**d_metrics, "l_d_total": d_total}


def discriminator_warmup_step(g_state: TrainState, d_state: TrainState, batch, key, *, losses: GanLosses):
    """`discriminator_step` on the generator's current (fixed) SR output: the generator does not move. A fresh
    discriminator learns what the generator's output looks like before its signal reaches the generator."""
    sr = g_state.apply_fn({"params": g_state.params}, batch["lr"])
    d_state, metrics = discriminator_step(d_state, batch["hr"], sr, key, losses=losses)
    return g_state, d_state, metrics


def localizer_step(state: TrainState, batch, key, *, loss_weights: tuple[tuple[str, float], ...]):
    """One update of the localizer on BCE + Dice (`segmentation_loss` with `loss_weights`); batch = {'image':
    (N, p, p, 3), 'mask': (N, p, p, 1)}, `key` drives the ASPP dropout. BatchNorm runs in training mode, its
    statistics over the global batch (jit sees the whole sharded batch)."""

    def objective(params):
        logits, updates = state.apply_fn({"params": params, **state.model_state}, batch["image"], train=True,
                                         mutable=["batch_stats"], rngs={"dropout": key})
        total, terms = segmentation_loss(logits, batch["mask"], **dict(loss_weights))
        return total, (terms, updates)

    (total, (terms, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads).replace(model_state={**state.model_state, **updates})
    return state, {**terms, "l_total": total}


def _jit_step(step, mesh):
    """`step` jitted with the states donated and everything it returns replicated over `mesh`."""
    replicated = sharding.replicated(mesh)
    return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=0)


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Real-ESRGAN's on-device making of training pairs from HR patches (`realesrgan_degrade` with `settings`,
    frozen, so that the setting hashes). The states may hold a `'pool'` (`pair_pool_init`):
    the pairs then pass through Real-ESRGAN's training-pair pool. With `sharpen_input` (the yml's `gt_usm`) the
    pixel and perceptual losses compare with the USM-sharpened GT (`l1_gt_usm`, `percep_gt_usm`; `l1_gt_usm=False`:
    with the GT as it is) while the
    discriminator sees the GT as it is (`gan_gt_usm: False`)."""

    settings: RealESRGANSettings

    def __call__(self, states: dict, batch, key) -> tuple[dict, dict]:
        """(states with the updated pool, {'lr', 'hr', 'target'}) from {'hr': GT patches}."""
        settings = self.settings
        degrade_key, pool_key = jax.random.split(key)
        gt = batch["hr"]
        lr = realesrgan_degrade(degrade_key, gt, settings)
        if "pool" in states:
            pool, lr, gt = pair_pool_update(pool_key, states["pool"], lr, gt)
            states = {**states, "pool": pool}
        target = usm_sharp(gt, settings.usm_weight, settings.usm_radius, settings.usm_threshold) \
            if settings.sharpen_input and settings.l1_gt_usm else gt
        return states, {"lr": lr, "hr": gt, "target": target}


@functools.cache
def _sr_step(mesh, pixel_kind: str, ema_decay: float, losses: GanLosses | None, perceptual_net,
             degradation: Degradation | None, discriminator_only: bool = False):
    def step(states, batch, key, perceptual_params):
        if degradation is not None:
            key, degradation_key = jax.random.split(key)
            states, batch = degradation(states, batch, degradation_key)
        if losses is None:
            pixel_batch = {"lr": batch["lr"], "hr": batch.get("target", batch["hr"])}
            generator, metrics = pixel_step(states["generator"], pixel_batch, pixel_kind=pixel_kind,
                                            ema_decay=ema_decay)
            return {**states, "generator": generator}, metrics
        if discriminator_only:
            generator, discriminator, metrics = discriminator_warmup_step(states["generator"], states["discriminator"],
                                                                          batch, key, losses=losses)
        else:
            generator, discriminator, metrics = gan_step(states["generator"], states["discriminator"], batch, key,
                                                         perceptual_params, losses=losses,
                                                         perceptual_net=perceptual_net, ema_decay=ema_decay)
        return {**states, "generator": generator, "discriminator": discriminator}, metrics

    return _jit_step(step, mesh)


def sr_train_step(mesh, *, pixel_kind: str = "l1", ema_decay: float = 0.999, losses: GanLosses | None = None,
                  perceptual_net=None, perceptual_params=None, degradation: Degradation | None = None,
                  discriminator_warmup: int = 0):
    """The jitted SR step `(states, batch, key) -> (states, metrics)` over `mesh`: `pixel_step` of the loss
    `pixel_kind` when `losses` is None (states {'generator'}), else `gan_step` with `losses`, which name their own
    pixel loss (states {'generator', 'discriminator'}), the perceptual loss's network `perceptual_net` and its
    replicated `perceptual_params` (None without one). With a
    `degradation` the batch is {'hr'} alone and the LR is made inside the step (`Degradation`). The first
    `discriminator_warmup` steps of the discriminator (counted by its state, so a resumed run goes on where it
    stopped) are `discriminator_warmup_step`s: the generator waits. Either way the generator's EMA moves by
    `ema_decay`."""
    step = _sr_step(mesh, pixel_kind, ema_decay, losses, perceptual_net, degradation)
    if not discriminator_warmup or losses is None:
        return lambda states, batch, key: step(states, batch, key, perceptual_params)
    warmup = _sr_step(mesh, pixel_kind, ema_decay, losses, perceptual_net, degradation, discriminator_only=True)
    warming = [True]  # until a step finds the warm-up done; reading the count waits for the previous step

    def dispatch(states, batch, key):
        if warming[0] and int(states["discriminator"].step) >= discriminator_warmup:
            warming[0] = False
        return (warmup if warming[0] else step)(states, batch, key, perceptual_params)

    return dispatch


@functools.cache
def localizer_train_step(mesh, loss_weights: tuple[tuple[str, float], ...]):
    """The jitted `localizer_step` `(state, batch, key) -> (state, metrics)` over `mesh`."""
    return _jit_step(functools.partial(localizer_step, loss_weights=loss_weights), mesh)
