"""Writing ncnn models: a graph (`desra_jax.convert.ncnn.NcnnGraph`) as ``.param`` + ``.bin`` (`write_graph`),
published through the durable-file layer so that a reader never sees a ``.param`` beside another model's ``.bin``,
and `GraphBuilder`, which builds a graph layer by layer.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections import Counter
from typing import Any

import numpy as np

from desra_jax.convert.ncnn import (ACT_LEAKY, ACT_RELU, ARRAY_KEY, LAYER_BLOBS, MAGIC, STORAGES, TAG_FP16, TAG_FP32,
                                    NcnnGraph, NcnnLayer, align4)
from desra_jax.files import write_files_atomic


def _format_value(value: Any) -> str:
    """A value as ncnn reads it back. Floats always carry an exponent (ncnn takes a value without '.' or 'e' for
    an int) and the 9 significant digits that round-trip a float32; ``-1.23456789e-38`` is the longest, at the
    15 characters ncnn scans a value into (``%15[^,\n ]``)."""
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(np.float32(value)):.8e}"
    return str(value)


def _format_params(params: dict[int, Any]) -> str:
    tokens = []
    for key, value in params.items():
        if isinstance(value, tuple):
            tokens.append(f"{ARRAY_KEY - key}={len(value)}," + ",".join(_format_value(v) for v in value))
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
    return struct.pack("<I", TAG_FP16) + data + b"\0" * (align4(len(data)) - len(data))


def write_graph(graph: NcnnGraph, param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None,
                *, storage: str = "fp16", overwrite: bool = False) -> tuple[str, str]:
    """Writes ``graph`` as ``.param`` + ``.bin``; weight blobs in ``storage`` ("fp16" or "fp32"), raw blobs
    (biases, slopes, constants) float32 as ncnn requires. Returns the two paths.

    The pair is published through `desra_jax.files.write_files_atomic`: both files are written to synced
    temporaries, a previous ``.param`` is removed, then the ``.bin`` is renamed into place and the ``.param``
    last, so a reader that finds a ``.param`` finds its own ``.bin`` (a kill between the renames leaves the new
    ``.bin`` without a ``.param``; a rerun with ``overwrite`` finishes the pair). FileExistsError naming the file
    when either exists and not ``overwrite``."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    param_path = os.fspath(param_path)
    bin_path = os.fspath(bin_path) if bin_path is not None else os.path.splitext(param_path)[0] + ".bin"
    existing = [path for path in (param_path, bin_path) if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists (pass overwrite=True, --overwrite, to replace it)")
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
    write_files_atomic([(bin_path, b"".join(chunks)), (param_path, ("\n".join(lines) + "\n").encode("utf-8"))])
    return param_path, bin_path


class GraphBuilder:
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
            params.update({9: ACT_LEAKY, 10: (float(activation),)} if activation else {9: ACT_RELU})
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
