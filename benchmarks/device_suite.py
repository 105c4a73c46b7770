"""desra-jax against PyTorch on one accelerator, in one call: one JSON, one table, at most ~6 minutes.

Rows (each timed JAX / PyTorch interleaved, A B A B, median of the repeats after one warm-up call each):
  * bf16 matmul 8192^3 in PyTorch: the rate every row's achieved TFLOP/s is set against;
  * RRDBNet x4plus (23 blocks) forward at 512^2 LR and on a 1920x1080 frame, float32 and bfloat16 (PyTorch:
    eager float32, and fp16 autocast as Real-ESRGAN's ``--half`` inference);
  * the Real-ESRNet MSE step and the Real-ESRGAN GAN step (L1 + VGG19 perceptual + vanilla GAN 0.1, U-Net
    discriminator with SN) at the released sizes, 12 GT patches of 256 per device; JAX with the second-order
    degradation inside the step (on the device) and without; PyTorch without (its twin of the degradation
    draws on the CPU), both from the same degraded batch;
  * SPAN x4 forward at 512^2 LR; DeSRA's D map and the whole detection pipeline (semantics-free) at 2048^2
    (the pipeline against the numpy / scipy / cv2 reference on the host: PyTorch has no connected components);
  * SegFormer b0 (random weights of transformers' b0 config, converted) at 512^2.
TFLOP/s are from XLA's cost analysis of the JAX computation (the same work in both frameworks). Weights are
random (no downloads). The JSON at ``--out`` is rewritten after every row, so a cut-off run keeps its rows;
rows that would start after ``--budget`` seconds are skipped and listed.

    python3 -m benchmarks.device_suite                 # writes $OUT/device_suite.json (or ./device_suite.json)
    python3 -m benchmarks.device_suite --smoke         # every row at tiny sizes (CPU: 2-4 minutes)
    python3 -m benchmarks.device_suite --rows "matmul,rrdbnet"   # only the rows whose names contain these
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import traceback

# JAX takes 75 % of an accelerator's memory at its first use by default; PyTorch runs beside it in this process.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import jax
import torch

from benchmarks import device_rows
from benchmarks.timing import torch_sync


@dataclasses.dataclass(frozen=True)
class Sizes:
    matmul: int = 8192
    lr: int = 512
    frame: tuple[int, int] = (1080, 1920)
    num_block: int = 23
    num_feat: int = 64
    num_grow_ch: int = 32
    batch_per_device: int = 12
    gt: int = 256
    d_num_feat: int = 64
    detection: int = 2048
    segformer: int = 512
    segformer_widths: tuple[int, ...] = (32, 64, 160, 256)
    segformer_decoder: int = 256
    repeats: int = 3


FULL = Sizes()
SMOKE = Sizes(matmul=256, lr=16, frame=(18, 32), num_block=1, num_feat=8, num_grow_ch=4, batch_per_device=2,
              gt=32, d_num_feat=4, detection=96, segformer=64, segformer_widths=(4, 8, 20, 32),
              segformer_decoder=16, repeats=1)


class Suite:
    """Runs rows under a time budget, each in try/except, and rewrites the JSON after each."""

    def __init__(self, out: str, budget: float, header: dict):
        self.out, self.deadline = out, time.monotonic() + budget
        self.report = {"header": header, "rows": [], "skipped": [], "errors": {}}

    def run(self, name: str, row) -> None:
        if time.monotonic() > self.deadline:
            self.report["skipped"].append(name)
        else:
            start = time.monotonic()
            try:
                for result in row():
                    self.report["rows"].append({"row": name, **result})
                    self.write()
            except Exception as error:  # noqa: BLE001 (one failing row must not lose the table)
                self.report["errors"][name] = f"{type(error).__name__}: {error}"[:500]
                traceback.print_exc()
            print(f"[{name}: {time.monotonic() - start:.1f} s]", file=sys.stderr, flush=True)
        self.write()

    def write(self) -> None:
        temporary = f"{self.out}.partial"
        with open(temporary, "w") as file:
            json.dump(self.report, file, indent=1)
        os.replace(temporary, self.out)


def table(report: dict) -> str:
    """The rows as a fixed-width table (seconds, ratio JAX / PyTorch: below 1 JAX is faster, TFLOP/s)."""
    peak = report["header"].get("peak_tflops") or float("nan")
    lines = [f"{'row':<44}{'JAX s':>9}{'PT s':>9}{'JAX/PT':>8}{'PT fp16 s':>10}{'TFLOP/s':>9}{'of peak':>8}"]
    for r in report["rows"]:
        jax_s, torch_s, half_s = r.get("jax_s"), r.get("torch_s"), r.get("torch_fp16_s")
        rate = r["flops"] / jax_s / 1e12 if r.get("flops") and jax_s else float("nan")

        def cell(value, width, form=".4f"):
            return f"{value:>{width}{form}}" if value is not None else f"{'-':>{width}}"

        ratio = jax_s / torch_s if jax_s and torch_s else None
        lines.append(f"{r['row'] + (' ' + r['variant'] if r.get('variant') else ''):<44}{cell(jax_s, 9)}"
                     f"{cell(torch_s, 9)}{cell(ratio, 8, '.2f')}{cell(half_s, 10)}{rate:>9.1f}{rate / peak:>8.2f}")
    for name in report["skipped"]:
        lines.append(f"{name:<44} skipped: past the time budget")
    for name, error in report["errors"].items():
        lines.append(f"{name:<44} FAILED: {error[:150]}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: a check of every row")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "device_suite.json"))
    parser.add_argument("--rows", default="", help="comma-separated parts of row names to run (default: all)")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds after which rows are skipped")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    if device == "cpu":
        torch.set_flush_denormal(True)  # as XLA's CPU code does
    header = {"jax": jax.__version__, "torch": torch.__version__, "python": platform.python_version(),
              "jax_devices": [d.device_kind for d in jax.devices()], "jax_backend": jax.default_backend(),
              "torch_device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
              "sizes": dataclasses.asdict(sizes), "smoke": args.smoke,
              "torch_cudnn_tf32": torch.backends.cudnn.allow_tf32,
              "torch_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
              "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision)}
    suite = Suite(args.out, args.budget, header)
    rows = device_rows.Rows(sizes, device, header)
    wanted = [part.strip().lower() for part in args.rows.split(",") if part.strip()]
    for name, row in rows.ordered():
        if wanted and not any(part in name.lower() for part in wanted):
            continue
        suite.run(name, row)
        torch_sync(device)
    print(table(suite.report))
    print(f"JSON: {args.out}")
    return suite.report


if __name__ == "__main__":
    main()
