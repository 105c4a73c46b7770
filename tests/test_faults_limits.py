"""Hostile inputs in bounded memory: images whose header or size exceeds the pixel limit are refused before they are
read or decoded, model files are checked from their headers before their weights are read, and EXIF orientation
is applied on read. Peak memory is measured in a child process (its ``ru_maxrss``, as its parent sees it)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from desra_jax.data.image_header import MAX_PIXELS, max_file_bytes, read_header
from desra_jax.data.image_io import read_image
from tests.bad_inputs import GIANT_ERROR, SPARSE_ERROR, SPARSE_SIZE, declared_giant_png, exif_jpeg
from tests.conftest import photo_crop
from tests.faults import REPO

#: The bound on a child's peak memory while it refuses a giant input.
PEAK_BOUND = 1 << 30


def peak_memory(code: str) -> tuple[dict, int]:
    """Runs ``code`` (Python, which prints one JSON line last) in a child of a child and returns (that JSON, the
    child's peak resident memory in bytes): ``RUSAGE_CHILDREN`` of the middle process, whose only child it is."""
    measure = textwrap.dedent(f"""
        import resource, subprocess, sys
        done = subprocess.run([sys.executable, "-c", {code!r}], capture_output=True, text=True)
        sys.stderr.write(done.stderr)
        print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else "null")
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    """)
    result = subprocess.run([sys.executable, "-c", measure], check=False, cwd=REPO, capture_output=True, text=True,
                            timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    reported, peak = result.stdout.strip().splitlines()[-2:]
    assert reported != "null", result.stderr[-3000:]
    return json.loads(reported), int(peak)


@pytest.fixture
def photo_levels():
    """A 20 x 28 crop of the astronaut photograph as uint8 RGB."""
    return np.round(photo_crop("astronaut", (20, 28), 100, 150)[0] * 255).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_each_format_declares_its_size_and_is_refused_over_the_limit(tmp_path, photo_levels, suffix):
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(cv2.imencode(suffix, photo_levels[:, :, ::-1])[1].tobytes())
    with open(path, "rb") as file:
        header = read_header(file)
    assert (header.width, header.height) == (28, 20)
    assert read_image(path, max_pixels=560).shape == (20, 28, 3)
    with pytest.raises(ValueError) as raised:
        read_image(path, max_pixels=559)
    assert str(raised.value) == (f"{path}: declares 28 x 20 = 560 pixels, more than the limit of 559 (raise it with "
                                 "--max_pixels)")


def test_giant_images_are_refused_unread_in_bounded_memory(tmp_path):
    bomb, sparse = tmp_path / "bomb.png", tmp_path / "sparse.png"
    bomb.write_bytes(declared_giant_png(30000, 30000))
    with open(sparse, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        file.truncate(SPARSE_SIZE)
    refusals, peak = peak_memory(textwrap.dedent(f"""
        import json
        from desra_jax.data.image_io import read_image
        errors = []
        for path in ({str(bomb)!r}, {str(sparse)!r}):
            try:
                read_image(path)
            except ValueError as error:
                errors.append(str(error))
        print(json.dumps(errors))
    """))
    assert refusals == [f"{bomb}: {GIANT_ERROR} (raise it with --max_pixels)",
                        (f"{sparse}: {SPARSE_ERROR} ({max_file_bytes(MAX_PIXELS):,} bytes); not read (raise the "
                         "limit with --max_pixels)")]
    assert bomb.stat().st_size < 1 << 20 and peak < PEAK_BOUND, peak


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_cv2_imread_shows_it(tmp_path, photo_levels, orientation):
    path = tmp_path / "turned.jpg"
    path.write_bytes(exif_jpeg(photo_levels, orientation))
    shown = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1] / np.float32(255)  # applies EXIF orientation
    image = read_image(path)
    assert image.shape == shown.shape == ((28, 20, 3) if orientation >= 5 else (20, 28, 3))
    np.testing.assert_allclose(image, shown, rtol=0, atol=1e-7)


def test_giant_ncnn_files_are_refused_from_their_layout_in_bounded_memory(tmp_path):
    from desra_jax.convert.registry import available_models

    param = tmp_path / "x4plus.param"
    param.write_bytes(Path(available_models()["realesrgan-x4plus"]).read_bytes())
    with open(tmp_path / "x4plus.bin", "wb") as file:  # zeros: every storage tag reads float32
        file.truncate(8 << 30)
    with open(tmp_path / "line.param", "wb") as file:  # 100 MiB of one line
        file.write(b"7767517\n")
        file.truncate(100 << 20)
    errors, peak = peak_memory(textwrap.dedent(f"""
        import json
        from desra_jax.convert.ncnn import read_ncnn
        errors = []
        for path in ({str(param)!r}, {str(tmp_path / "line.param")!r}):
            try:
                read_ncnn(path)
            except ValueError as error:
                errors.append(str(error))
        print(json.dumps(errors))
    """))
    assert errors[0].startswith(f"{tmp_path / 'x4plus.bin'}: 8,523,141,240 bytes left after the last layer's weights "
                                f"({param} lays out 66,793,352 bytes, the file has 8,589,934,592)")
    assert errors[1] == (f"{tmp_path / 'line.param'}: 104,857,600 bytes, larger than any ncnn .param this reader "
                         "accepts (16,777,216 bytes); not read")
    assert peak < PEAK_BOUND, peak


def sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A ``.safetensors`` file of float32 tensors ``{name: shape}`` whose data is a hole (sparse: no disk used)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(len(text).to_bytes(8, "little") + text)
        file.truncate(8 + len(text) + offset)


def test_giant_torch_files_are_refused_from_their_header_in_bounded_memory(tmp_path):
    unrelated, misshapen = tmp_path / "unrelated.safetensors", tmp_path / "rrdb.safetensors"
    garbage = tmp_path / "g.pth"
    sparse_safetensors(unrelated, {"encoder.embed.weight": (1 << 30,)})  # 4 GiB
    sparse_safetensors(misshapen, {"conv_first.weight": (1024, 1024, 32, 32), "conv_last.weight": (3, 1024, 3, 3)})
    with open(garbage, "wb") as file:
        file.truncate(8 << 30)
    errors, peak = peak_memory(textwrap.dedent(f"""
        import json
        from desra_jax.convert.registry import load_sr_model
        errors = []
        for path in ({str(unrelated)!r}, {str(misshapen)!r}, {str(garbage)!r}):
            try:
                load_sr_model(path)
            except ValueError as error:
                errors.append(str(error))
        print(json.dumps(errors))
    """))
    assert errors[0].startswith(f"{unrelated}: keys (encoder.embed.weight, ...) fit none of the architectures")
    assert errors[1].startswith(f"{misshapen}: "), errors[1]  # a 4 GiB first conv: the shapes go no further
    assert errors[2].startswith(f"{garbage}: not a readable PyTorch checkpoint (")
    assert "weights_only" not in errors[2] and len(errors[2]) < 400
    assert peak < PEAK_BOUND, peak
