"""The bad-input corpus (tests/bad_inputs.py) through every command that reads images, and the two unusable
outputs (a path that is a file, a read-only folder) given to each.

Each command runs once over the corpus, in this process (its ``run``, what its ``main`` calls): every case's file is
either processed (its output exists and the summary lists it) or named, with the reason the table below gives, in
exactly one problem of the summary file the command writes; the good pairs are processed. The drivers print each
problem and decide the exit status from the same summary; ``test_an_unusable_output_is_one_line_and_status_1``
runs each driver as a user does, on an output path that is a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from desra_jax.models import DeepLabV3Plus, SRVGGNetCompact
from desra_jax.models.directory import save_model
from desra_jax.detection.settings import DetectionSettings, SemanticSettings
from desra_jax.tools import calibrate, detect, evaluate, fuse, upscale
from tests.bad_inputs import CASES, GOOD, PAIR_CASES, write_corpus
from tests.conftest import xla_flags
from tests.faults import REPO, python_module
from tests.test_detect_cli import tiny_segformer
from tests.test_fusion import random_variables

#: Why a file is refused, by case, for a command that reads pairs: the reader's errors (alpha: 'error').
READ_REFUSALS = {name: case.read_error for name, case in CASES.items() if case.read_error}
PAIR_REFUSALS = {"sizes_differ": "differs from", "only_on_a": "no ", "only_on_b": "no "}
#: D's 11x11 window with reflect padding needs more than 5 px a side (detect, calibrate, upscale's DeSRA on a x4
#: result of 1x1); SSIM's window 11x11 (evaluate).
TOO_SMALL_FOR_D = "border='reflect': expected images larger than 5 px"
TOO_SMALL_FOR_SSIM = "ssim: expected images of at least 11x11"
#: Per command, the cases it refuses and the text of the refusal; every other case is processed.
REFUSED = {
    "detect": {**READ_REFUSALS, **PAIR_REFUSALS, "one_pixel": TOO_SMALL_FOR_D, "three_by_five": TOO_SMALL_FOR_D},
    "calibrate": {**READ_REFUSALS, **PAIR_REFUSALS, "one_pixel": TOO_SMALL_FOR_D,
                  "three_by_five": TOO_SMALL_FOR_D},
    "evaluate": {**READ_REFUSALS, **PAIR_REFUSALS, "one_pixel": TOO_SMALL_FOR_SSIM,
                 "three_by_five": TOO_SMALL_FOR_SSIM},
    "fuse": {**READ_REFUSALS, **PAIR_REFUSALS},  # the localizer takes any size
    # One folder (side a); alpha is upscaled as Real-ESRGAN does, the 3x5 image's x4 result is large enough for D.
    "upscale": {**{k: v for k, v in READ_REFUSALS.items() if k != "rgba_png"}, "one_pixel": TOO_SMALL_FOR_D},
    "finetune": {**READ_REFUSALS, "one_pixel": TOO_SMALL_FOR_D},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(root, {case: (path on a, path on b)}) of the corpus, and the tiny models the commands need beside it."""
    root = tmp_path_factory.mktemp("commands")
    written = write_corpus(root)
    sr = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    save_model(root / "srvgg", sr, sr.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"])
    localizer = DeepLabV3Plus(num_classes=1, backbone_layers=(1, 1, 1, 1), backbone_width=8, aspp_channels=16,
                              decoder_projection=8, decoder_channels=16)
    params, batch_stats = random_variables(localizer)
    save_model(root / "localizer", localizer, params, {"batch_stats": batch_stats})
    tiny_segformer(root / "segformer")
    return root, written


def run_command(command: str, root: Path, out: Path) -> tuple[dict, list[str], dict[str, Path]]:
    """Runs ``command`` over the corpus into ``out``: (its summary file, read back; the problems listed there;
    {case or good file: the output file it must have when processed})."""
    a, b = root / "a", root / "b"
    names = [*GOOD, *CASES, *PAIR_CASES]
    stem = {name: Path(CASES[name].file).stem if name in CASES else Path(name).stem for name in names}
    if command == "detect":
        detect.run(detect.DetectOptions(a, b, out, detection=DetectionSettings(min_area=4)))
        summary = json.loads((out / "summary.json").read_text())
        return summary, summary["problems"], {n: out / "masks" / f"{stem[n]}.png" for n in names}
    if command == "calibrate":
        semantics = SemanticSettings(str(root / "segformer"), segformer_size=None)
        calibrate.run(calibrate.CalibrateOptions(a, b, semantics, out / "adjustment.json"))
        summary = json.loads((out / "adjustment.json").read_text())["calibrated_on"]
        return summary, summary["problems"], {}
    if command == "evaluate":
        evaluate.run(evaluate.EvaluateOptions(a, b, out, metrics=("psnr", "ssim")))
        summary = json.loads((out / "summary.json").read_text())
        return summary, summary["problems"], {}
    if command == "fuse":
        fuse.run(fuse.FuseOptions(a, (b,), root / "localizer", out))
        summary = json.loads((out / "summary.json").read_text())
        return summary, summary["problems"], {n: out / f"{stem[n]}.png" for n in names}
    upscale.run(upscale.UpscaleOptions(a, out, str(root / "srvgg"), str(root / "srvgg"), tile=0,
                                       detection=DetectionSettings(min_area=4), report=True))
    summary = json.loads((out / "summary.json").read_text())
    files = {name: CASES[name].file if name in CASES else name for name in names}
    return summary, summary["problems"], {n: out / upscale.output_name(stem[n], Path(files[n]).suffix)
                                          for n in names}


def processed_names(command: str, summary: dict) -> list[str]:
    """The names (relative paths without extension) that the summary counts as processed."""
    if command == "calibrate":
        return summary["used"]
    return [record["name"] for record in summary["images"]]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["detect", "calibrate", "evaluate", "fuse", "upscale"])
def test_every_case_is_processed_or_named_once_in_the_summary(corpus, tmp_path, command):
    root, written = corpus
    summary, problems, outputs = run_command(command, root, tmp_path / "out")
    refused = REFUSED[command]
    cases = [*GOOD, *CASES, *PAIR_CASES] if command != "upscale" else [*GOOD, *CASES, "sizes_differ", "only_on_a"]
    for name in cases:
        path = written[name][0] or written[name][1]
        naming = [p for p in problems if p.startswith(tuple(f"{side}:" for side in written[name] if side))]
        if name in refused:
            assert len(naming) == 1 and refused[name] in naming[0], (name, naming)
            assert name not in outputs or not outputs[name].exists()
        else:
            assert naming == [], naming
            assert Path(path).stem in processed_names(command, summary), (name, processed_names(command, summary))
            assert name not in outputs or outputs[name].is_file(), outputs[name]
    assert len(problems) == len(refused), problems  # nothing else went wrong
    assert len(processed_names(command, summary)) == len(cases) - len(refused)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for this process: mode 0555 and, for root (whom modes do not stop), the
    immutable attribute (``chattr +i``); both undone on leaving."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def output_args(command: str, root: Path, out: Path) -> list[str]:
    """The command line of ``command`` over the corpus with ``out`` as its output (a folder; for calibrate the
    folder of its table)."""
    a, b = root / "a", root / "b"
    return {
        "detect": [f"--gan_dir={a}", f"--mse_dir={b}", f"--out_dir={out}"],
        "calibrate": [f"--gan_dir={a}", f"--mse_dir={b}", f"--segformer={root / 'segformer'}",
                      f"--out={out / 'adjustment.json'}"],
        "evaluate": [f"--pred={a}", f"--gt={b}", f"--out={out}"],
        "fuse": [f"--base={a}", f"--others={b}", f"--localizer={root / 'localizer'}", f"--out={out}"],
        "upscale": [f"--input={a}", f"--output={out}", f"--model={root / 'srvgg'}"],
    }[command]


@pytest.mark.parametrize("command", ["detect", "calibrate", "evaluate", "fuse", "upscale"])
def test_a_read_only_output_folder_is_refused_before_any_work(corpus, tmp_path, command):
    root, _ = corpus
    runs = {
        "detect": lambda out: detect.run(detect.DetectOptions(root / "a", root / "b", out)),
        "calibrate": lambda out: calibrate.run(calibrate.CalibrateOptions(
            root / "a", root / "b", SemanticSettings(str(root / "nowhere")), out / "adjustment.json")),
        "evaluate": lambda out: evaluate.run(evaluate.EvaluateOptions(root / "a", root / "b", out)),
        "fuse": lambda out: fuse.run(fuse.FuseOptions(root / "a", (root / "b",), root / "nowhere", out)),
        "upscale": lambda out: upscale.run(upscale.UpscaleOptions(root / "a", out, str(root / "nowhere"))),
    }
    with read_only(tmp_path / "out") as out:
        with pytest.raises(ValueError, match=f"^{out}: the output folder is not writable$"):
            runs[command](out)  # before the models (here: missing) are looked at
    assert list(out.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["detect", "calibrate", "evaluate", "fuse", "upscale"])
def test_an_unusable_output_is_one_line_and_status_1(corpus, tmp_path, command):
    root, _ = corpus
    (tmp_path / "file").write_text("a file where the output folder should be\n")
    result = subprocess.run(python_module(f"experiments.{command}", *output_args(command, root, tmp_path / "file")),
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags()})
    errors = [line for line in result.stderr.splitlines() if line.startswith("E")]  # absl: E1231 12:00:00 ...
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and errors[0].endswith(f"{tmp_path / 'file'}: exists and is not a folder; give an "
                                                   "output folder"), result.stderr[-3000:]


def test_the_finetune_job_names_each_lr_file_it_skips(tmp_path):
    """The fine-tune job's first step over the corpus's side a as its LR folder (the held-out set: side b): every
    case is detected or named once in the job's problems, which ``pseudo_gt/index.json`` keeps for a rerun."""
    from desra_jax.detection.settings import Detector
    from desra_jax.inference import Upscaler
    from desra_jax.training import desra_sets
    from tests.test_finetune import constructed_generators

    written = write_corpus(tmp_path / "corpus")
    model, mse_params, gan_params = constructed_generators()
    gan, mse = Upscaler(model, gan_params, 64, 8), Upscaler(model, mse_params, 64, 8)
    detect = Detector(DetectionSettings(0.7, 4))
    train_problems: list[str] = []
    models = desra_sets.DeSRAModels(gan, mse, detect)
    lr_images = desra_sets.read_named_images(str(tmp_path / "corpus" / "a"), train_problems)
    records = desra_sets.make_pseudo_gt_set(lr_images, models, 100, 0.0, str(tmp_path / "run"), train_problems)
    refused = REFUSED["finetune"]
    for name in [*GOOD, *CASES]:
        stem = Path(written[name][0]).stem
        naming = [p for p in train_problems if p.startswith((f"{written[name][0]}:", f"{stem}:"))]
        assert len(naming) == (name in refused) and all(refused[name] in p for p in naming), (name, naming)
    assert len(train_problems) == len(refused)
    index = json.loads((tmp_path / "run" / "pseudo_gt" / "index.json").read_text())
    assert index["images"] == records and index["problems"] == [p for p in train_problems if p.startswith("one_")]
    assert {"good_1", "good_2"} <= {record["name"] for record in records}

    # Side b holds only readable partners; the 1x1 one is too small to be evaluated.
    held_problems: list[str] = []
    held_out = desra_sets.HeldOut.prepare(desra_sets.read_named_images(str(tmp_path / "corpus" / "b"), held_problems),
                                          None, models, held_problems)
    assert len(held_problems) == 1 and held_problems[0].startswith(f"one_pixel: {TOO_SMALL_FOR_D}")
    assert sorted(item["name"] for item in held_out.items) == sorted(
        Path(b).stem for _, b in written.values() if b and Path(b).stem != "one_pixel")
