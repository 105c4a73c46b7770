"""The ncnn model format: the ``.param`` graph and the ``.bin`` weights, read and written.

As Tencent/ncnn reads it (``src/net.cpp``, ``src/paramdict.cpp``, ``src/modelbin.cpp``):

- ``.param`` is text: the magic 7767517, ``layer_count blob_count``, then one line per layer:
  ``type name n_bottom n_top bottom... top... k=v ...``. A value holding ``.`` or ``e`` is a float, one
  starting with a letter or a quote a string, a comma-separated list an array; a key ``-23300 - k`` is the
  old spelling of array ``k`` whose first element is the length (``-23310=1,2.0e-01`` is ``10 = [0.2]``).
- ``.bin`` is every layer's blobs, in layer order, in the order its ``load_model`` asks for them. A weight
  blob (``mb.load(n, 0)``) starts with a 4-byte storage tag: 0 for float32, 0x01306B47 for float16,
  0x000D4B38 for int8, 0x0002C056 for float32 with scales, any other non-zero tag for a 256-entry float32
  table followed by uint8 indices; float16, int8 and index data are padded to 4 bytes. A raw blob
  (``mb.load(n, 1)``: biases, PReLU slopes, MemoryData, int8 scales) is ``n`` float32 with no tag.

:func:`read_ncnn` gives an :class:`NcnnGraph` of :class:`NcnnLayer` for the layer types the SR packages use
(:data:`LAYER_BLOBS`); ``desra_jax.convert.ncnn_write`` writes one back and builds one layer by layer.
``desra_jax.convert.ncnn_models`` turns graphs into Flax modules and back.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from collections import Counter
from typing import Any

import numpy as np

from desra_jax.convert.ncnn_checks import check_layer, excerpt, read_param_lines, whole_number
from desra_jax.convert.torch_state import ConversionError

MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
#: Storage of weight blobs that :func:`write_graph` offers.
STORAGES = ("fp16", "fp32")
#: The first key of the old array spelling (``-23300 - k`` is array ``k``).
ARRAY_KEY = -23300
# Convolution's fused activations (``9=``), src/layer/fused_activation.h.
ACT_NONE, ACT_RELU, ACT_LEAKY = 0, 1, 2
# BinaryOp op types, src/layer/binaryop.h; Eltwise SUM, src/layer/eltwise.h; Interp types, src/layer/interp.cpp.
BINARY_ADD, BINARY_SUB, BINARY_MUL = 0, 1, 2
ELTWISE_SUM = 1
INTERP_NEAREST, INTERP_BICUBIC = 1, 3


@dataclasses.dataclass
class NcnnLayer:
    """One layer line of a ``.param`` and the blobs its ``load_model`` reads from the ``.bin``.

    ``params`` maps ncnn's integer keys to int, float, str or a tuple (arrays); ``weights`` maps blob names
    (``weight``, ``bias``, ``slope``, ``data``, ...) to float32 arrays: a Convolution ``weight`` has shape
    (num_output, num_input, kernel_h, kernel_w), a MemoryData ``data`` (c, h, w) with its zero sizes dropped.
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, Any] = dataclasses.field(default_factory=dict)
    weights: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def get(self, key: int, default: Any) -> Any:
        return self.params.get(key, default)


@dataclasses.dataclass
class NcnnGraph:
    """The layers of an ncnn model in file order; ``source`` names the ``.param`` in errors."""

    layers: list[NcnnLayer]
    source: str = "ncnn graph"

    def of_type(self, layer_type: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type == layer_type]

    def type_counts(self) -> Counter:
        return Counter(layer.type for layer in self.layers)


# --------------------------------------------------------------------------------------------------- .param


def _parse_value(text: str, where: str) -> Any:
    """A scalar value as ncnn's ``ParamDict`` types it: float if it holds '.' or 'e', string if it starts
    with a letter or a quote, else int."""
    if text[:1].isalpha() or text[:1] == '"':
        return text.strip('"')
    try:
        if "." in text or "e" in text.lower():
            return float(np.float32(float(text)))
        return int(text)
    except ValueError:
        raise ConversionError(f"{where}: cannot read the value {excerpt(text)}") from None


def _parse_params(tokens: list[str], where: str) -> dict[int, Any]:
    """``k=v`` tokens of a layer line into ``{k: value}``; arrays (old ``-233xx=n,...`` or ``k=a,b``) as tuples."""
    params: dict[int, Any] = {}
    for token in tokens:
        key_text, sep, value = token.partition("=")
        try:
            key = int(key_text)
        except ValueError:
            key = None
        if not sep or key is None or not value:
            raise ConversionError(f"{where}: expected key=value, got {excerpt(token)}")
        if key <= ARRAY_KEY:
            key = ARRAY_KEY - key
            length, *items = value.split(",")
            if _parse_value(length, where) != len(items):
                raise ConversionError(f"{where}: array {excerpt(token)} declares {excerpt(length)} elements, "
                                      f"holds {len(items)}")
            params[key] = tuple(_parse_value(item, where) for item in items)
        elif "," in value:
            params[key] = tuple(_parse_value(item, where) for item in value.split(","))
        else:
            params[key] = _parse_value(value, where)
    return params


def read_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text file (no weights yet), checking the magic, the counts and the layer
    parameters that shape arrays (``ncnn_checks``: size and line bounds, errors quoting short excerpts)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such ncnn .param file")
    lines = read_param_lines(path)
    if not lines or lines[0][1] != [str(MAGIC)]:
        found = excerpt(" ".join(lines[0][1])) if lines else "an empty file"
        raise ConversionError(f"{path}: not an ncnn .param file (the first line must be {MAGIC}, got {found})")
    if len(lines) < 2 or len(lines[1][1]) != 2:
        raise ConversionError(f"{path}: line 2 must be 'layer_count blob_count'")
    layer_count, blob_count = (whole_number(v, f"{path}:{lines[1][0]}", "a count") for v in lines[1][1])
    layers, blobs = [], set()
    for number, tokens in lines[2:]:
        where = f"{path}:{number}"
        if len(tokens) < 4:
            raise ConversionError(f"{where}: a layer line needs 'type name n_bottom n_top', got "
                                  f"{excerpt(' '.join(tokens))}")
        layer_type, name = tokens[:2]
        n_bottom, n_top = (whole_number(t, where, "a blob count") for t in tokens[2:4])
        names = tokens[4 : 4 + n_bottom + n_top]
        if n_bottom < 0 or n_top < 0 or len(names) != n_bottom + n_top:
            raise ConversionError(f"{where}: layer {excerpt(name)} declares {n_bottom} + {n_top} blobs, lists "
                                  f"{len(names)}")
        layer = NcnnLayer(layer_type, name, tuple(names[:n_bottom]), tuple(names[n_bottom:]),
                          _parse_params(tokens[4 + n_bottom + n_top :], f"{where} ({excerpt(name)})"))
        check_layer(layer, where)
        layers.append(layer)
        blobs.update(names)
    if len(layers) != layer_count:
        raise ConversionError(f"{path}: header declares {layer_count} layers, the file has {len(layers)}")
    if len(blobs) > blob_count:
        raise ConversionError(f"{path}: header declares {blob_count} blobs, the layers name {len(blobs)}")
    return layers


# ----------------------------------------------------------------------------------------------------- .bin


def _conv_blobs(layer: NcnnLayer) -> list[tuple[str, int, int]]:
    """(name, count, load type) that Convolution / Deconvolution ``load_model`` reads, in order."""
    num_output = layer.get(0, 0)
    blobs = [("weight", layer.get(6, 0), 0)]
    if layer.get(5, 0):
        blobs.append(("bias", num_output, 1))
    int8_scale_term = layer.get(8, 0)
    if int8_scale_term:
        blobs += [("weight_int8_scales", num_output, 1), ("bottom_int8_scales", 1, 1)]
    if int8_scale_term > 100:
        blobs.append(("top_int8_scales", 1, 1))
    return blobs


def _memory_data_blobs(layer: NcnnLayer) -> list[tuple[str, int, int]]:
    sizes = [layer.get(k, 0) for k in (0, 1, 11, 2)]  # w, h, d, c
    count = int(np.prod([s for s in sizes if s])) if any(sizes) else 0
    return [("data", count, layer.get(21, 1))] if count else []


#: The blobs each supported layer type reads from the .bin; a type missing here is refused by name.
LAYER_BLOBS = {
    "Input": lambda layer: [],
    "Split": lambda layer: [],
    "Concat": lambda layer: [],
    "PixelShuffle": lambda layer: [],
    "Interp": lambda layer: [],
    "BinaryOp": lambda layer: [],
    "Eltwise": lambda layer: [],
    "Sigmoid": lambda layer: [],
    "Swish": lambda layer: [],
    "ReLU": lambda layer: [],
    "Noop": lambda layer: [],
    "Convolution": _conv_blobs,
    "Deconvolution": _conv_blobs,
    "PReLU": lambda layer: [("slope", layer.get(0, 0), 1)],
    "MemoryData": _memory_data_blobs,
}


class _BinReader:
    """Reads blobs from the bytes of a ``.bin`` as ncnn's ``ModelBinFromDataReader::load(w, type)``."""

    def __init__(self, data: bytes, source: str):
        self.data, self.offset, self.source = data, 0, source

    def _take(self, size: int, what: str, skip: bool = False) -> bytes:
        """``size`` bytes at the offset; with ``skip`` only the offset moves (an empty chunk is returned)."""
        if self.offset + size > len(self.data):
            raise ConversionError(
                f"{self.source}: truncated: {what} needs {size} bytes at offset {self.offset}, "
                f"the file has {len(self.data) - self.offset} left"
            )
        chunk = b"" if skip else self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def load(self, count: int, load_type: int, what: str, skip: bool = False) -> np.ndarray | None:
        """``count`` values as float32 (int8 storage as int8); with ``skip`` only their storage tag is read and the
        offset moves past them (None is returned), which lays out a file without reading its weights."""
        if load_type == 1:
            raw = self._take(4 * count, what, skip)
            return None if skip else np.frombuffer(raw, "<f4").copy()
        if load_type != 0:
            raise ConversionError(f"{self.source}: {what} has load type {load_type}; ncnn knows 0 and 1")
        tag_bytes = self._take(4, f"{what} (storage tag)")
        (tag,) = struct.unpack("<I", tag_bytes)
        if tag == TAG_FP16:
            raw = self._take(align4(2 * count), what, skip)
            return None if skip else np.frombuffer(raw[: 2 * count], "<f2").astype(np.float32)
        if tag == TAG_INT8:
            raw = self._take(align4(count), what, skip)
            return None if skip else np.frombuffer(raw[:count], np.int8).copy()
        if tag == TAG_FP32_SCALED or tag == TAG_FP32:
            raw = self._take(4 * count, what, skip)
            return None if skip else np.frombuffer(raw, "<f4").copy()
        table = self._take(256 * 4, f"{what} (quantisation table)", skip)
        indices = self._take(align4(count), what, skip)
        return None if skip else np.frombuffer(table, "<f4")[np.frombuffer(indices[:count], np.uint8)].copy()


def align4(size: int) -> int:
    return (size + 3) // 4 * 4


def _shape_weights(layer: NcnnLayer, source: str) -> None:
    """Reshapes a layer's flat blobs into their natural shapes; int8 convolution weights are dequantised."""
    if layer.type in ("Convolution", "Deconvolution") and "weight" in layer.weights:
        num_output, kernel_w = layer.get(0, 0), layer.get(1, 0)
        kernel_h = layer.get(11, kernel_w)
        weight = layer.weights["weight"]
        if weight.dtype == np.int8:
            scales = layer.weights.get("weight_int8_scales")
            if scales is None:
                raise ConversionError(f"{source}: layer {layer.name} has int8 weights but no int8_scale_term (8=)")
            weight = weight.reshape(num_output, -1) / scales[:, None]  # ncnn quantises as round(w * scale)
        per_output = kernel_h * kernel_w * num_output
        if weight.size % per_output:
            raise ConversionError(
                f"{source}: layer {layer.name}: {weight.size} weights do not fill {num_output} outputs of "
                f"{kernel_h}x{kernel_w} kernels"
            )
        num_input = weight.size // per_output
        layer.weights["weight"] = weight.reshape(num_output, num_input, kernel_h, kernel_w).astype(np.float32)
    if layer.type == "MemoryData" and "data" in layer.weights:
        sizes = [layer.get(k, 0) for k in (2, 11, 1, 0)]  # c, d, h, w
        layer.weights["data"] = layer.weights["data"].reshape([s for s in sizes if s])


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> NcnnGraph:
    """The layers and weights of ``model.param`` + ``model.bin`` (``bin_path`` defaults to the ``.bin`` beside it).

    Raises :class:`ConversionError` naming the file for a bad magic, a layer type this reader does not know
    (the types the SR packages use, listed in :data:`LAYER_BLOBS`), a ``.bin`` that ends before the last
    layer's blobs, or one with bytes left over (a ``.bin`` of another graph). The ``.bin`` is mapped, not read:
    its layout (sizes and storage tags) is checked against the file's size before any weight is read, so a
    mismatched file of any size costs a few pages.
    """
    param_path = os.fspath(param_path)
    if bin_path is None:
        bin_path = os.path.splitext(param_path)[0] + ".bin"
    bin_path = os.fspath(bin_path)
    layers = read_param(param_path)
    for layer in layers:
        if layer.type not in LAYER_BLOBS:
            raise ConversionError(
                f"{param_path}: layer {layer.name} has type {layer.type!r}, which this reader does not support "
                f"(supported: {', '.join(sorted(LAYER_BLOBS))})"
            )
    if not os.path.isfile(bin_path):
        raise FileNotFoundError(f"{bin_path}: no such ncnn .bin file (the weights of {param_path})")
    with open(bin_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""  # pages read as touched
    try:
        expected = _read_blobs(layers, _BinReader(data, bin_path), skip=True)
        if expected != size:  # a shorter file stops the walk above: truncated
            raise ConversionError(f"{bin_path}: {size - expected:,} bytes left after the last layer's weights "
                                  f"({param_path} lays out {expected:,} bytes, the file has {size:,}): this .bin "
                                  "does not match it; no weights read")
        _read_blobs(layers, _BinReader(data, bin_path), skip=False)
    finally:
        if size:
            data.close()
    return NcnnGraph(layers, param_path)


def _read_blobs(layers: list[NcnnLayer], reader: _BinReader, skip: bool) -> int:
    """Reads every layer's blobs into its ``weights`` (with ``skip``: only walks their storage tags); returns the
    bytes the layers take."""
    for layer in layers:
        for blob, count, load_type in LAYER_BLOBS[layer.type](layer):
            weights = reader.load(count, load_type, f"layer {layer.name} ({layer.type}) {blob}", skip)
            if not skip:
                layer.weights[blob] = weights
        if not skip:
            _shape_weights(layer, reader.source)
    return reader.offset


# ------------------------------------------------------------------------------------------------- writing
