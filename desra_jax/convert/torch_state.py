"""Reading PyTorch state_dicts and mapping their tensors onto Flax parameter trees.

Every converter walks the foreign keys through a :class:`StateDictReader`: each tensor is taken exactly once,
its shape is checked against what the Flax module expects, and whatever is left over at the end is an error.
Values may be torch tensors or numpy arrays; torch is imported only to read a ``.pth`` file. Files are read lazily:
a ``.safetensors`` file as :class:`SafetensorsTensors` (names and shapes from its header, a tensor read when taken),
a ``.pth`` through ``torch.load(mmap=True)``; so keys that fit no architecture, or a tensor of the wrong shape, are
refused before the file's tensors are read.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np


class ConversionError(ValueError):
    """A foreign checkpoint does not match the architecture it is converted to."""


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device, any dtype) or array-like as a float32/int numpy array of its own: never a view of
    the caller's memory (tensor.numpy() is one), so training the torch model on afterwards leaves it unchanged."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    array = np.array(value)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    return array


class SafetensorsTensors(Mapping):
    """The tensors of a ``.safetensors`` file by name, each read (as numpy) when looked up; names and shapes come
    from the file's header, which ``safe_open`` checks against the file's size."""

    def __init__(self, path: str):
        from safetensors import safe_open

        try:
            self._file = safe_open(path, framework="numpy")
            self._names = dict.fromkeys(self._file.keys())
        except Exception as error:  # SafetensorError derives from Exception only
            raise ConversionError(f"{path}: not a readable safetensors file ({str(error)[:200]})") from error

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._file.get_tensor(name)

    def __contains__(self, name) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name``, from the header (nothing read)."""
        return tuple(self._file.get_slice(name).get_shape())


def _shape_of(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return state.shape(key) if isinstance(state, SafetensorsTensors) else tuple(np.shape(state[key]))


def read_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` (torch.load, weights_only, memory-mapped when the file is a zip
    archive, as torch >= 1.6 saves) or ``.safetensors`` file (:class:`SafetensorsTensors`), as saved."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        return SafetensorsTensors(path)
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch); "
            "a .safetensors file needs no torch"
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        if "weights_only" not in str(error):
            raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
        raise ConversionError(
            f"{path}: refused to load: it contains Python objects other than tensors ({_refused(str(error))}); "
            "only plain state_dicts (tensors, numbers, strings and containers of them) are read"
        ) from None
    except Exception as error:  # torch raises runtime and zip errors alike
        detail = _unsafe_advice_removed(str(error))
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({detail})") from error
    if not isinstance(state, Mapping):
        raise ConversionError(f"{path}: expected a state_dict (a mapping of names to tensors), got {type(state)}")
    return dict(state)


def _unsafe_advice_removed(message: str) -> str:
    """The first sentence of a torch load error, at most 200 characters, with no advice to load the file with
    weights_only switched off: torch gives that advice for files it takes for its legacy tar format."""
    if "legacy .tar format" in message:
        return "torch takes it for a legacy tar-format checkpoint, which it reads only unsafely"
    return message.strip().split(". ")[0][:200]


def _refused(message: str) -> str:
    """What torch's weights-only unpickler refused, from its message: the global a pickle names (e.g.
    ``posix.system``, which would run a shell command) or the pickle instruction. The rest of the message, which
    suggests loading the file with weights_only switched off (running whatever it contains), is not repeated."""
    named = re.search(r"GLOBAL ([\w.]+)", message)
    if named:
        return f"a reference to {named.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
    return f"pickle contents: {detail.group(1).strip()}" if detail else "objects the weights-only reader refuses"


def unwrap_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of a BasicSR-style checkpoint: ``params_ema`` if present, else ``params``, else as is.

    BasicSR and Real-ESRGAN save ``{'params_ema': ..., 'params': ...}``; the EMA weights are the released ones.
    Lightning and mmseg wrap theirs in ``state_dict``, VainF/DeepLabV3Plus-Pytorch in ``model_state``.
    """
    for wrapper in ("params_ema", "params", "state_dict", "model_state"):
        inner = state.get(wrapper)
        if isinstance(inner, Mapping):
            return dict(inner)
    return state if isinstance(state, SafetensorsTensors) else dict(state)


class StateDictReader:
    """Takes tensors out of a state_dict by name, checking shapes, and reports what was never taken."""

    def __init__(self, state: Mapping[str, Any], source: str = "state_dict"):
        self._state = state  # read, never changed: the keys not yet taken are kept apart
        self._left = dict.fromkeys(state)
        self._source = source

    def __contains__(self, key: str) -> bool:
        return key in self._left

    def keys(self) -> list[str]:
        return list(self._left)

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key`` without taking it (nor reading a lazily read tensor)."""
        if key not in self._left:
            raise ConversionError(f"{self._source}: missing key {key!r}")
        return _shape_of(self._state, key)

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Removes and returns ``key`` as numpy, checking its shape (before reading it) when ``shape`` is given."""
        found = self.shape(key)
        if shape is not None and found != tuple(shape):
            raise ConversionError(f"{self._source}: key {key!r} has shape {found}, expected {tuple(shape)}")
        del self._left[key]
        return to_numpy(self._state[key])

    def conv(self, prefix: str, in_ch: int, out_ch: int, kernel: int = 3, bias: bool = True) -> dict:
        """A torch Conv2d (OIHW weight) at ``prefix`` as a flax ``nn.Conv`` param dict (HWIO kernel)."""
        weight = self.take(f"{prefix}.weight", (out_ch, in_ch, kernel, kernel))
        params = {"kernel": np.transpose(weight, (2, 3, 1, 0))}
        if bias:
            params["bias"] = self.take(f"{prefix}.bias", (out_ch,))
        return params

    def linear(self, prefix: str, in_features: int, out_features: int, bias: bool = True) -> dict:
        """A torch Linear ((out, in) weight) at ``prefix`` as a flax ``nn.Dense`` param dict."""
        params = {"kernel": self.take(f"{prefix}.weight", (out_features, in_features)).T}
        if bias:
            params["bias"] = self.take(f"{prefix}.bias", (out_features,))
        return params

    def layer_norm(self, prefix: str, features: int) -> dict:
        """A torch LayerNorm over the last ``features`` channels at ``prefix`` as a flax ``nn.LayerNorm`` dict."""
        return {
            "scale": self.take(f"{prefix}.weight", (features,)),
            "bias": self.take(f"{prefix}.bias", (features,)),
        }

    def batch_norm(self, prefix: str, channels: int) -> tuple[dict, dict]:
        """A torch BatchNorm2d at ``prefix`` as flax ``nn.BatchNorm`` ``(params, batch_stats)`` dicts.

        ``num_batches_tracked`` (saved since torch 0.4.1) is dropped: flax keeps no step count, and it only
        matters for torch's ``momentum=None`` cumulative average.
        """
        params = {
            "scale": self.take(f"{prefix}.weight", (channels,)),
            "bias": self.take(f"{prefix}.bias", (channels,)),
        }
        stats = {
            "mean": self.take(f"{prefix}.running_mean", (channels,)),
            "var": self.take(f"{prefix}.running_var", (channels,)),
        }
        if f"{prefix}.num_batches_tracked" in self:
            self.take(f"{prefix}.num_batches_tracked", ())
        return params, stats

    def finish(self, ignore: tuple[str, ...] = ()) -> None:
        """Raises if any key other than those ending in ``ignore`` suffixes was not taken."""
        leftover = sorted(k for k in self._left if not k.endswith(ignore))
        if leftover:
            shown = ", ".join(f"{k!r} {_shape_of(self._state, k)}" for k in leftover[:10])
            more = f" and {len(leftover) - 10} more" if len(leftover) > 10 else ""
            raise ConversionError(f"{self._source}: unexpected keys {shown}{more}")
