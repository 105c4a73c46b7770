"""Damaged and hostile model files get one error naming the file and what is wrong, never a traceback from deep
inside: ncnn ``.param`` files (``read_ncnn`` / ``load_ncnn``) and model directories (``load_model``)."""

import json

import pytest

from desra_jax.convert import ConversionError
from desra_jax.convert.ncnn_models import load_ncnn

#: A 1x1 convolution from 2 to 4 channels and a PixelShuffle of factor 2: the layer lines a case changes.
INPUT = "Input in 0 1 data"
CONV = "Convolution conv 1 1 data c 0=4 1=1 5=1 6=8"
SHUFFLE = "PixelShuffle ps 1 1 c out 0=2"


def write_param(tmp_path, lines, name="m", data=None) -> str:
    """``<name>.param`` with the magic, the counts and ``lines``, an empty ``.bin`` beside it; the path."""
    param = tmp_path / f"{name}.param"
    param.write_bytes(data if data is not None else "\n".join(["7767517", f"{len(lines)} 3", *lines, ""]).encode())
    (tmp_path / f"{name}.bin").write_bytes(b"")
    return str(param)


@pytest.mark.parametrize("lines, line, message", [
    ([INPUT, CONV, "PixelShuffle ps 1 1 c out 0=0"], 5,
     "(ps, PixelShuffle): upscale factor (0=) must be a whole number in [1, 16], got '0'"),
    ([INPUT, CONV, "PixelShuffle ps 1 1 c out 0=-2"], 5,
     "(ps, PixelShuffle): upscale factor (0=) must be a whole number in [1, 16], got '-2'"),
    ([INPUT, CONV, "PixelShuffle ps 1 1 c out 0=1000"], 5,
     "(ps, PixelShuffle): upscale factor (0=) must be a whole number in [1, 16], got '1000'"),
    ([INPUT, "Convolution conv 1 1 data c 0=4 1=0 5=1 6=8", SHUFFLE], 4,
     "(conv, Convolution): kernel_w (1=) must be a positive whole number, got '0'"),
    ([INPUT, "Convolution conv 1 1 data c 0=four 1=1 5=1 6=8", SHUFFLE], 4,
     "(conv, Convolution): num_output (0=) must be a positive whole number, got 'four'"),
    ([INPUT, "Convolution conv one 1 data c 0=4 1=1 5=1 6=8", SHUFFLE], 4,
     "a blob count must be a whole number, got 'one'"),
    ([INPUT, "Interp up 1 1 data out 0=1 1=1e9 2=1e9"], 4,
     "(up, Interp): scale (1=) must lie in (0, 16], got '1000000000.0'"),
])
def test_bad_layer_parameters_are_one_line_naming_the_file_and_line(tmp_path, lines, line, message):
    param = write_param(tmp_path, lines)
    with pytest.raises(ConversionError) as raised:
        load_ncnn(param)
    where = f"{param}:{line}" + ("" if message.startswith("(") else ":")  # 'file:line (layer, type): ...'
    assert str(raised.value) == f"{where} {message}"


def test_a_param_that_is_not_text_or_not_a_param_is_named_with_a_short_excerpt(tmp_path):
    binary = write_param(tmp_path, [], "binary", data=b"7767517\n1 1\nInput \xff\xfe 0 1 data\n")
    with pytest.raises(ConversionError) as raised:
        load_ncnn(binary)
    assert str(raised.value) == (f"{binary}:3: not UTF-8 text, so not an ncnn .param "
                                 "(starts 'Input \ufffd\ufffd 0 1 data\\n')")

    secret = "root:x:0:0:root:/root:/bin/bash and the rest of a line no error should print"
    (tmp_path / "passwd").write_text(f"{secret}\ndaemon:x:1:1\n")
    (tmp_path / "passwd.param").symlink_to(tmp_path / "passwd")
    with pytest.raises(ConversionError) as raised:
        load_ncnn(tmp_path / "passwd.param")
    assert str(raised.value) == (f"{tmp_path / 'passwd.param'}: not an ncnn .param file (the first line must be "
                                 f"7767517, got {secret[:60]!r}...)")

    long_line = write_param(tmp_path, [], "long", data=b"7767517\n" + b"9" * 100_000 + b"\n")
    with pytest.raises(ConversionError) as raised:
        load_ncnn(long_line)
    assert str(raised.value) == (f"{long_line}:2: a line longer than 4096 characters, so not an ncnn .param "
                                 f"(starts {'9' * 60!r}...)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny SRVGGNetCompact (num_conv 2, x4) and its model.json, read back as a dict."""
    import jax
    import numpy as np

    from desra_jax.models.directory import save_model
    from desra_jax.models.srvgg import SRVGGNetCompact

    module = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    directory = tmp_path_factory.mktemp("models") / "srvgg"
    save_model(directory, module, module.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"])
    return directory, json.loads((directory / "model.json").read_text())


def _edited(saved: dict, edit: str):
    """``saved`` (a model.json) changed as ``edit`` names."""
    config = json.loads(json.dumps(saved))
    if edit == "a list":
        return [config]
    if edit == "no architecture":
        del config["architecture"]
    elif edit == "dtype object":
        config["config"]["dtype"] = {"dtype": "object"}
    elif edit == "upscale 0":
        config["config"]["upscale"] = 0
    elif edit == "num_conv 5":
        config["config"]["num_conv"] = 5
    elif edit == "architecture RRDBNet":
        config["architecture"] = "RRDBNet"
        config["config"] = {"num_feat": 8, "num_block": 1}
    return config


@pytest.mark.parametrize("edit, message", [
    ("a list", "expected an object with keys 'architecture' and 'config', got a list"),
    ("no architecture", "key 'architecture' must hold a string, got nothing"),
    ("dtype object", ('config.dtype: expected {"dtype": one of float32, bfloat16, float16, float64}, got '
                      '{"dtype": "object"}')),
    ("upscale 0", "key 'config' makes no working SRVGGNetCompact ("),
    ("num_conv 5", "key 'config' does not fit the saved variables: 9 parameters missing (first ['body_10']"),
    ("architecture RRDBNet", "key 'config' does not fit the saved variables: "),
])
def test_a_damaged_model_json_is_one_line_naming_the_file_and_key(model_dir, tmp_path, edit, message):
    import shutil

    from desra_jax.models.directory import load_model

    source, saved = model_dir
    directory = tmp_path / "edited"
    shutil.copytree(source, directory)
    (directory / "model.json").write_text(json.dumps(_edited(saved, edit)))
    with pytest.raises(ValueError) as raised:
        load_model(directory)
    assert str(raised.value).startswith(f"{directory / 'model.json'}: {message}"), str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_scalar_where_ncnn_expects_an_array_is_named(tmp_path):
    import struct

    import numpy as np

    from desra_jax.convert.ncnn import read_ncnn
    from desra_jax.convert.ncnn_models import _conv_params

    param = tmp_path / "act.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\nConvolution conv 1 1 data out 0=1 1=1 5=1 6=1 9=2 10=0.5\n")
    (tmp_path / "act.bin").write_bytes(struct.pack("<I", 0) + np.ones(2, np.float32).tobytes())
    graph = read_ncnn(param)
    with pytest.raises(ConversionError) as raised:
        _conv_params(graph.layers[1], graph.source, 1, 1, kernel=1, activation=0.5)
    assert str(raised.value) == (f"{param}: layer conv: expected the activation parameters (10=) as an array, "
                                 "got 0.5")
