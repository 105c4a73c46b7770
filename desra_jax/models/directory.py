"""The one on-disk layout of a saved model, for converters, training and the detection tools.

A model directory holds::

    model.json    {"architecture": "RRDBNet", "config": {"scale": 4, "num_feat": 64, ..., "dtype": "float32"}}
    variables/    an orbax StandardCheckpointer tree: {"params": ..., plus e.g. "batch_stats": ...}

``config`` is every constructor field of the linen module (its dataclass fields less ``parent`` and ``name``);
dtypes are stored by name. :func:`load_model` rebuilds the module from a fixed table of architectures, so a
model directory never imports code it names. Saving is atomic on a local filesystem: everything is written
into a hidden sibling ``.<name>.partial-<pid>-<host>-<random>``, synced to disk and renamed into place last, so
a kill or a power loss leaves either no model or a whole one, and :func:`remove_stale_partials` clears what a
killed writer left.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from desra_jax.files import kill_point, sync_directory, writer_is_gone, writer_tag

CONFIG_FILE = "model.json"
VARIABLES_DIR = "variables"

#: Architectures a model directory may name, as (module path, class name); imported only when looked up.
ARCHITECTURES = {
    "RRDBNet": ("desra_jax.models.rrdbnet", "RRDBNet"),
    "SRVGGNetCompact": ("desra_jax.models.srvgg", "SRVGGNetCompact"),
    "SPAN": ("desra_jax.models.span", "SPAN"),
    "VGGStyleDiscriminator": ("desra_jax.models.discriminators", "VGGStyleDiscriminator"),
    "UNetDiscriminatorSN": ("desra_jax.models.discriminators", "UNetDiscriminatorSN"),
    "VGG19Features": ("desra_jax.models.vgg", "VGG19Features"),
    "DeepLabV3Plus": ("desra_jax.models.deeplabv3plus", "DeepLabV3Plus"),
}


def architecture(name: str) -> type[nn.Module]:
    """The module class registered as ``name`` in :data:`ARCHITECTURES`."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    module_path, class_name = ARCHITECTURES[name]
    return getattr(importlib.import_module(module_path), class_name)


def _field_to_json(module_name: str, field: str, value: Any) -> Any:
    """A constructor field as JSON: plain values as they are, dtypes as ``{"dtype": name}``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_field_to_json(module_name, field, v) for v in value]
    try:
        return {"dtype": jnp.dtype(value).name}
    except TypeError:
        raise ValueError(
            f"{module_name}.{field}: cannot store a {type(value).__name__} in {CONFIG_FILE}"
        ) from None


#: The dtypes a module may compute or hold its parameters in.
_DTYPES = ("float32", "bfloat16", "float16", "float64")


def _field_from_json(value: Any, where: str) -> Any:
    """Inverse of :func:`_field_to_json`; lists come back as tuples (linen fields must be hashable). ValueError
    naming ``where`` (``<file>: config.<field>``) for a dtype that is not a floating-point one or another object."""
    if isinstance(value, list):
        return tuple(_field_from_json(v, where) for v in value)
    if isinstance(value, dict):
        if set(value) != {"dtype"} or value["dtype"] not in _DTYPES:
            raise ValueError(f"{where}: expected {{\"dtype\": one of {', '.join(_DTYPES)}}}, got "
                             f"{json.dumps(value)[:60]}")
        return jnp.dtype(value["dtype"])
    return value


def module_config(module: nn.Module) -> dict[str, Any]:
    """``{"architecture": class name, "config": {field: value}}`` of a linen module, JSON-ready."""
    name = type(module).__name__
    fields = {
        f.name: _field_to_json(name, f.name, getattr(module, f.name))
        for f in dataclasses.fields(module)
        if f.init and f.name not in ("parent", "name")
    }
    return {"architecture": name, "config": fields}


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """Orbax options for a checkpointer used by this process alone (no barrier with the other hosts)."""
    return ocp.options.MultiprocessingOptions(primary_host=jax.process_index(), active_processes={jax.process_index()})


def save_model(
    directory: str | os.PathLike,
    module: nn.Module,
    params: Any,
    extra_variables: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> str:
    """Writes ``module``'s config and variables ``{"params": params, **extra_variables}`` to ``directory``.

    ``extra_variables`` holds other collections, e.g. ``{"batch_stats": ...}``. The module's class must be
    in :data:`ARCHITECTURES` so that :func:`load_model` can rebuild it. An existing ``directory`` is replaced
    only with ``overwrite=True``. Returns the absolute path written.

    The variables are fetched to host memory and written by the calling process alone, so on a multi-host run
    one process (process 0) calls it with replicated arrays while the others go on. What killed saves of
    ``directory`` left is cleared first (:func:`remove_stale_partials`). Kill points (``desra_jax.files``):
    ``save_model:<name>`` (staged and synced, not yet moved in) and ``save_model:<name>:moved_aside``.
    """
    directory = os.path.abspath(os.fspath(directory))
    config = module_config(module)
    if architecture(config["architecture"]) is not type(module):
        raise ValueError(f"{directory}: {type(module)} is not the registered {config['architecture']}")
    extra_variables = dict(extra_variables or {})
    if "params" in extra_variables:
        raise ValueError(f"{directory}: pass params as `params`, not inside extra_variables")
    remove_stale_partials(directory)  # first: it may move a previous model back, which overwrite then governs
    if os.path.exists(directory) and not overwrite:
        raise FileExistsError(f"{directory}: already exists (pass overwrite=True to replace it)")

    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}.partial-{writer_tag()}-{os.urandom(4).hex()}")
    os.mkdir(staging)  # not tempfile.mkdtemp: its 0700 mode would stay on the model directory
    try:
        with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        variables = jax.device_get({"params": params, **extra_variables})
        with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only()) as checkpointer:
            checkpointer.save(os.path.join(staging, VARIABLES_DIR), variables)
            checkpointer.wait_until_finished()
        _sync_tree(staging)
        kill_point(f"save_model:{name}")
        _move_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _sync_tree(top: str) -> None:
    """fsyncs every file and folder under ``top``, so that renaming ``top`` publishes data that is on disk."""
    for folder, _, files in os.walk(top):
        for file in files:
            handle = os.open(os.path.join(folder, file), os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        sync_directory(folder)


def _move_into_place(staging: str, directory: str) -> None:
    """Renames ``staging`` to ``directory``; an existing ``directory`` is moved aside first, removed after.

    Linux cannot swap two directories in one rename, so a kill between the two renames (kill point
    ``save_model:<name>:moved_aside``) leaves the previous model whole in the hidden ``<staging>.old`` sibling and
    nothing at ``directory``; :func:`remove_stale_partials` moves it back. The parent folder is synced after the
    renames, so that they survive a power loss.
    """
    parent = os.path.dirname(directory)
    if os.path.exists(directory):
        old = f"{staging}.old"
        os.rename(directory, old)
        try:
            kill_point(f"save_model:{os.path.basename(directory)}:moved_aside")
            os.rename(staging, directory)
        except BaseException:  # e.g. KeyboardInterrupt: the previous model goes back, as it was
            os.rename(old, directory)
            raise
        sync_directory(parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, directory)
        sync_directory(parent)


def remove_stale_partials(directory: str | os.PathLike, *, only_dead_writers: bool = True) -> list[str]:
    """Clears what killed :func:`save_model` calls left beside ``directory``; returns the paths removed.

    The hidden siblings ``.<name>.partial-<pid>-<host>-<random>`` (a staged model) and ``...old`` (a previous
    model moved aside) name their writer. With ``only_dead_writers`` (the default, as :func:`save_model` calls it)
    only those of writers on this machine that no longer run are touched, and those that name no writer;
    ``only_dead_writers=False`` clears them all, for a caller that knows it is the only writer of ``directory``
    (a training job resuming, possibly on another machine than the killed one). When nothing is at
    ``directory``, a previous model moved aside is moved back instead of removed: a killed replacement then
    leaves the old model in place, never none.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent, name = os.path.split(directory)
    pattern = re.compile(
        rf"^\.{re.escape(name)}\.partial-(?:(?P<writer>\d+-[0-9a-f]{{8}})-[0-9a-f]{{8}}|[0-9a-f]{{12}})(?P<old>\.old)?$"
    )
    if not os.path.isdir(parent):
        return []
    stale = []
    for entry in sorted(os.listdir(parent)):
        match = pattern.match(entry)
        if match and (not only_dead_writers or match["writer"] is None or writer_is_gone(match["writer"])):
            stale.append((match["old"] is not None, os.path.join(parent, entry)))
    removed = []
    for is_old, path in sorted(stale, reverse=True):  # a previous model first: it may be the one to keep
        if is_old and not os.path.exists(directory):
            os.rename(path, directory)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if stale:
        sync_directory(parent)
    return removed


def load_model(directory: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, variables)`` saved by :func:`save_model`; ``module.apply(variables, x)`` runs it.

    ``variables`` is ``{"params": ..., plus any extra collections saved}`` with jax arrays as leaves.
    """
    directory = os.path.abspath(os.fspath(directory))
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such model directory")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a model written by save_model")
    module = _module_from_config(config_path)
    with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only()) as checkpointer:
        variables = checkpointer.restore(os.path.join(directory, VARIABLES_DIR))
    _check_fits(module, variables, config_path)
    return module, jax.tree.map(jnp.asarray, variables)  # leaves saved from numpy come back as numpy


def _module_from_config(config_path: str) -> nn.Module:
    """The module a ``model.json`` describes; ValueError naming the file and the key for anything else."""
    try:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: not JSON ({str(error)[:60]})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{config_path}: expected an object with keys 'architecture' and 'config', got a "
                         f"{type(saved).__name__}")
    for key, kind in (("architecture", str), ("config", dict)):
        if not isinstance(saved.get(key), kind):
            found = "nothing" if key not in saved else f"a {type(saved[key]).__name__}"
            raise ValueError(f"{config_path}: key '{key}' must hold a {'string' if kind is str else 'object'}, "
                             f"got {found}")
    try:
        cls = architecture(saved["architecture"])
    except ValueError as error:
        raise ValueError(f"{config_path}: key 'architecture': {error}") from None
    fields = {k: _field_from_json(v, f"{config_path}: config.{k}") for k, v in saved["config"].items()}
    try:
        return cls(**fields)
    except TypeError as error:
        raise ValueError(f"{config_path}: key 'config' does not fit {saved['architecture']} ({error})") from None


def _check_fits(module: nn.Module, variables: Any, config_path: str) -> None:
    """ValueError naming ``config_path`` unless ``module`` builds (shapes only, on a small probe input) and its
    parameters have the tree and shapes of the saved ``variables["params"]`` (e.g. a ``num_conv`` edited by hand,
    an ``upscale`` of 0)."""
    size = getattr(module, "input_size", 64)
    probe = jax.ShapeDtypeStruct((1, size, size, getattr(module, "num_in_ch", 3)), jnp.float32)
    try:
        expected = jax.eval_shape(module.init, jax.random.key(0), probe)["params"]
    except Exception as error:  # whatever the module raises for a config that builds no network
        first_line = (str(error).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{config_path}: key 'config' makes no working {type(module).__name__} "
                         f"({type(error).__name__}: {first_line})") from None
    shapes = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree.flatten_with_path(expected)[0]}
    saved = {jax.tree_util.keystr(p): tuple(np.shape(v))
             for p, v in jax.tree.flatten_with_path(variables.get("params", {}))[0]}
    if shapes != saved:
        missing, extra = sorted(set(shapes) - set(saved)), sorted(set(saved) - set(shapes))
        differ = [k for k in sorted(set(shapes) & set(saved)) if shapes[k] != saved[k]]
        detail = (f"{len(missing)} parameters missing (first {missing[0]})" if missing
                  else f"{len(extra)} parameters not in it (first {extra[0]})" if extra
                  else f"{differ[0]} saved as {saved[differ[0]]}, the config makes {shapes[differ[0]]}")
        raise ValueError(f"{config_path}: key 'config' does not fit the saved variables: {detail}")


def count_parameters(params: Any) -> int:
    """The number of scalars in a parameter tree."""
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
