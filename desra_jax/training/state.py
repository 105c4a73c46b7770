"""Train states for the generator (with an EMA of its weights) and the discriminator (with its mutable
collections, e.g. BatchNorm statistics or spectral-norm vectors)."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
    """optax TrainState plus the model's non-parameter collections and an optional EMA of the parameters.

    `model_state` holds every variable collection other than `params` (empty for RRDBNet, `batch_stats` for
    the VGG-style discriminator, the spectral-norm vectors for the U-Net one). `ema_params` is None when no
    EMA is kept (the discriminator).
    """

    model_state: Any = flax.struct.field(default_factory=dict)
    ema_params: Any = None


def step_decay_schedule(learning_rate: float, milestones, gamma: float = 0.5) -> optax.Schedule:
    """Learning rate multiplied by `gamma` at each milestone (BasicSR's MultiStepLR, ESRGAN's decay)."""
    return optax.piecewise_constant_schedule(learning_rate, {int(m): gamma for m in milestones})


def adam(learning_rate: float, milestones=(), gamma: float = 0.5, b1: float = 0.9, b2: float = 0.99):
    """Adam with the step decay of ESRGAN (betas 0.9, 0.99 as in BasicSR's configs).

    One transformation object per setting: a train state holds its functions, which jit compares by identity.
    """
    return _adam(float(learning_rate), tuple(int(m) for m in milestones), float(gamma), float(b1), float(b2))


@functools.cache
def _adam(learning_rate, milestones, gamma, b1, b2):
    return optax.adam(step_decay_schedule(learning_rate, milestones, gamma), b1=b1, b2=b2)


@functools.cache
def _shared(module):
    """The first of the equal modules seen: a train state holds its bound `apply`, which jit compares by the
    module's identity, so equal modules (loaded twice, built twice from one config) share one compiled step."""
    return module


def create_state(module, variables, tx, *, ema: bool) -> TrainState:
    """A TrainState from a module, its initialised (or converted) variables and an optax transformation."""
    variables = dict(variables)
    params = variables.pop("params")
    state = TrainState.create(
        apply_fn=_shared(module).apply,
        params=params,
        tx=tx,
        model_state=variables,
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,  # own buffers: states are donated
    )
    # The step as a strong int32, the type orbax restores: a weak-typed 0 would compile the step again on resume.
    return state.replace(step=np.int32(0))


def ema_update(ema_params, params, decay: float):
    """Exponential moving average of the weights: ema <- decay * ema + (1 - decay) * params (BasicSR model_ema)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def sr_states(generator, g_params, tx, discriminator=None, d_variables=None) -> dict:
    """{'generator': state with an EMA of its weights[, 'discriminator': state]}, both updated by `tx`; the
    discriminator only when one is given (a GAN phase)."""
    states = {"generator": create_state(generator, {"params": g_params}, tx, ema=True)}
    if discriminator is not None:
        states["discriminator"] = create_state(discriminator, d_variables, tx, ema=False)
    return states


def run_keys(seed: int) -> tuple:
    """The (initialisation, discriminator, step) keys of an SR run from its `seed`: the one split every job makes,
    so that a fresh discriminator of one seed is the same in SR training and in DeSRA fine-tuning."""
    init_key, discriminator_key, step_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, discriminator_key, step_key
