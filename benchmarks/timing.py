"""The timing helpers of the benchmarks."""

import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls; fn must block until done."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_sync(device: str) -> None:
    """Waits for torch's queued work on ``device`` ('cuda' runs asynchronously; the CPU does not)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def interleaved_seconds(runs: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall time of each blocking callable in ``runs``, called in turn (A B C A B C) so that a busy machine
    slows them alike; ``warmup`` untimed rounds first (compilation, autotuning)."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
