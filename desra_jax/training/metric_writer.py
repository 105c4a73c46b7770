"""Scalars of a run, written twice: a JSONL file (one object per line, easy to read back) and TensorBoard
event files (tensorboardX, no TensorFlow needed)."""

from __future__ import annotations

import json
import os


class MetricWriter:
    """Appends `{"step": s, "phase": ..., **scalars}` to `<logdir>/metrics.jsonl` and logs to TensorBoard.

    A resumed run passes the step it resumed from: this phase's records after it (written by the killed run
    after its last checkpoint, and about to be written again) are dropped, so the file reads like one run.
    """

    def __init__(self, logdir: str, phase: str, resume_step: int = 0):
        from tensorboardX import SummaryWriter

        os.makedirs(logdir, exist_ok=True)
        self.phase = phase
        path = os.path.join(logdir, "metrics.jsonl")
        if os.path.exists(path):
            kept = [r for r in read_metrics(path) if r["phase"] != phase or r["step"] <= resume_step]
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
        self._jsonl = open(path, "a", encoding="utf-8")
        self._tensorboard = SummaryWriter(os.path.join(logdir, "tensorboard"))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), "phase": self.phase, **scalars}) + "\n")
        self._jsonl.flush()
        for name, value in scalars.items():
            self._tensorboard.add_scalar(f"{self.phase}/{name}", value, step)
        self._tensorboard.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._tensorboard.close()


def read_metrics(path: str) -> list[dict]:
    """All records of a metrics.jsonl file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
