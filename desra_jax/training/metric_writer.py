"""Scalars of a run, written twice: a JSONL file (one object per line, easy to read back) and TensorBoard
event files (tensorboardX, no TensorFlow needed)."""

from __future__ import annotations

import json
import os

from desra_jax.files import kill_point, write_bytes_atomic


class MetricWriter:
    """Appends `{"step": s, "phase": ..., **scalars}` to `<logdir>/metrics.jsonl` and logs to TensorBoard.

    A resumed run passes the step it resumed from: this phase's records after it (written by the killed run
    after its last checkpoint, and about to be written again) are dropped, so the file reads like one run. The
    file is rewritten atomically for that (``write_bytes_atomic``), so a kill then loses no record.

    Each record is flushed to the operating system as it is written (a killed process loses none; kill point
    ``append:metrics.jsonl`` is right after the flush); :meth:`sync` puts them on disk, for a caller about to
    save a checkpoint, so that a power loss cannot leave the checkpoint without the records before it.
    """

    def __init__(self, logdir: str, phase: str, resume_step: int = 0):
        from tensorboardX import SummaryWriter

        os.makedirs(logdir, exist_ok=True)
        self.phase = phase
        path = os.path.join(logdir, "metrics.jsonl")
        if os.path.exists(path):
            kept = [r for r in read_metrics(path) if r["phase"] != phase or r["step"] <= resume_step]
            write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))
        self._jsonl = open(path, "a", encoding="utf-8")
        self._tensorboard = SummaryWriter(os.path.join(logdir, "tensorboard"))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), "phase": self.phase, **scalars}) + "\n")
        self._jsonl.flush()
        kill_point("append:metrics.jsonl")
        for name, value in scalars.items():
            self._tensorboard.add_scalar(f"{self.phase}/{name}", value, step)
        self._tensorboard.flush()

    def sync(self) -> None:
        """Puts every record written so far on disk (fsync)."""
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())

    def close(self) -> None:
        self._jsonl.close()
        self._tensorboard.close()


def read_metrics(path: str) -> list[dict]:
    """All records of a metrics.jsonl file, in order.

    A last line cut short (no newline, not JSON: a power loss while it was appended) is left out; a broken line
    anywhere else is a ValueError naming the file and the line.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not line.endswith("\n"):
                break
            raise ValueError(f"{path}:{number}: not a JSON record ({error})") from None
    return records
