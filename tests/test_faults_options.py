"""Option values that would fail late or mean nothing are refused when the options are built, before any work,
with one line naming the flag: in each command's options dataclass (what a library user builds too), and from the
command line as one error line, exit status 1, nothing written. Also a model directory of the wrong kind given to
``fuse`` as its localizer."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desra_jax.detection.settings import DetectionSettings, SemanticSettings
from desra_jax.tools import calibrate, detect, evaluate, fuse, upscale
from tests.conftest import xla_flags
from tests.faults import REPO
from tests.test_faults_outputs import photos, tiny_sr

#: (command, flag, value) refused; the message begins '--<flag>: expected'.
REFUSED = [
    *[("upscale", "outscale", value) for value in (0.0, -1.0, math.inf, math.nan)],
    ("upscale", "tile", -5), ("upscale", "tile_pad", -1), ("upscale", "feather", -3.0),
    ("upscale", "threshold", math.nan), ("upscale", "threshold", 1.5), ("upscale", "min_area", -1),
    ("upscale", "max_pixels", 0), ("upscale", "max_output_pixels", 0), ("upscale", "max_batch_mib", 0),
    ("detect", "threshold", math.nan), ("detect", "threshold", -0.1), ("detect", "min_area", -1),
    ("detect", "batch_size", 0), ("detect", "max_pixels", -1),
    ("calibrate", "num_bins", 0), ("calibrate", "num_bins", -20), ("calibrate", "num_bins", 30),
    ("calibrate", "percentile", 0.0), ("calibrate", "percentile", math.nan),
    ("evaluate", "crop_border", -1), ("evaluate", "max_pixels", 0),
    ("fuse", "feather", -3.0), ("fuse", "threshold", math.nan), ("fuse", "temperature", 0.0),
]
DETECTION = ("threshold", "min_area")


def build(command: str, root: Path, **values):
    """``command``'s options over folders under ``root`` with ``values`` (detection settings among them)."""
    a, b, out = root / "a", root / "b", root / "out"
    detection = {key: values.pop(key) for key in DETECTION if key in values and command in ("upscale", "detect")}
    if command == "upscale":
        return upscale.UpscaleOptions(a, out, "model", detection=DetectionSettings(**detection), **values)
    if command == "detect":
        return detect.DetectOptions(a, b, out, detection=DetectionSettings(**detection), **values)
    if command == "calibrate":
        return calibrate.CalibrateOptions(a, b, SemanticSettings("segformer"), out / "table.json", **values)
    if command == "evaluate":
        return evaluate.EvaluateOptions(a, b, out, **values)
    return fuse.FuseOptions(a, (b,), root / "localizer", out, **values)


@pytest.mark.parametrize("command, flag, value", REFUSED)
def test_a_value_out_of_range_is_refused_naming_the_flag(tmp_path, command, flag, value):
    with pytest.raises(ValueError, match=f"^--{flag}: expected "):
        build(command, tmp_path, **{flag: value})
    build(command, tmp_path)  # the defaults pass


#: One refused value per command, from the command line.
COMMAND_LINES = {
    "upscale": ["--input=a", "--output=out", "--model=model", "--outscale=nan"],
    "detect": ["--gan_dir=a", "--mse_dir=b", "--out_dir=out", "--threshold=nan"],
    "calibrate": ["--gan_dir=a", "--mse_dir=b", "--segformer=s", "--out=out/table.json", "--num_bins=0"],
    "evaluate": ["--pred=a", "--gt=b", "--out=out", "--crop_border=-1"],
    "fuse": ["--base=a", "--others=b", "--localizer=l", "--out=out", "--feather=-3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMAND_LINES))
def test_a_refused_value_is_one_line_and_status_1_before_any_work(tmp_path, command):
    result = subprocess.run([sys.executable, "-m", f"experiments.{command}", *COMMAND_LINES[command]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
                                 "XLA_FLAGS": xla_flags()})
    errors = [line for line in result.stderr.splitlines() if line.startswith("E")]  # absl: E1231 12:00:00 ...
    flag = COMMAND_LINES[command][-1].split("=")[0]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and f"] {flag}: expected " in errors[0], result.stderr[-3000:]
    assert not (tmp_path / "out").exists()


def test_fuse_refuses_an_sr_model_as_its_localizer_in_one_line(tmp_path):
    sr = tiny_sr(tmp_path / "srvgg")
    photos(tmp_path / "a", ["x.png"])
    photos(tmp_path / "b", ["x.png"])
    with pytest.raises(ValueError) as raised:
        fuse.run(fuse.FuseOptions(tmp_path / "a", (tmp_path / "b",), sr, tmp_path / "out"))
    assert str(raised.value) == (f"{sr}: holds a SRVGGNetCompact model, not an artifact localizer (a DeepLabV3Plus "
                                 "model directory, as experiments.localizer writes)")
