"""The training loop every job shares: sharded steps from a checkpoint to the last step, logs, evaluations,
orbax checkpoints (periodic, final, and on SIGTERM / SIGINT), and the workdir they live in.

Workdir layout (one per phase):
  config.json    the settings of the run, as the driver gave them
  checkpoints/   orbax CheckpointManager steps of the train states
  metrics.jsonl, tensorboard/   scalars (`MetricWriter`)
  eval_XXXXXXX.json   {"step", "summary", **details} of each evaluation
  samples/step_XXXXXXX.png   the evaluation's sample grid, when it makes one
  model/, discriminator/, ...   the final models (`save_final_models`), written last
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging as python_logging
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping

import jax
import orbax.checkpoint as ocp
from absl import logging
from tqdm import tqdm

from desra_jax.training.feeding import prefetch_to_device
from desra_jax.data.image_io import write_image
from desra_jax.files import kill_point, write_json
from desra_jax.models.directory import save_model
from desra_jax.training.evaluation import Evaluation
from desra_jax.training.metric_writer import MetricWriter


class TrainingInterrupted(Exception):
    """Raised after a SIGTERM / SIGINT once the checkpoint of the current step is written."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop stops, logs, evaluates and checkpoints (every `*_every` steps and at `num_steps`)."""

    num_steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int = 3


def eval_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, f"eval_{step:07d}.json")


def prepare_workdir(workdir: str, settings_json: str) -> str:
    """Creates `workdir`, writes `settings_json` (the run's config) to its config.json; returns the absolute path."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), json.loads(settings_json))
    return workdir


def finished_summary(workdir: str, num_steps: int, outputs: tuple[str, ...] = ("model",)) -> dict | None:
    """The final evaluation summary when `workdir` holds every model directory in `outputs` and the evaluation
    of step `num_steps`, else None (the run is to be resumed)."""
    path = eval_path(workdir, num_steps)
    if not (os.path.isfile(path) and all(os.path.isdir(os.path.join(workdir, name)) for name in outputs)):
        return None
    logging.info("%s: already trained to step %d", workdir, num_steps)
    with open(path, encoding="utf-8") as f:
        return json.load(f)["summary"]


def save_final_models(workdir: str, models: Mapping[str, tuple]) -> None:
    """Process 0 writes each `name: (module, params, extra_variables)` of `models` to `workdir/<name>`."""
    if jax.process_index() != 0:
        return
    for name, (module, params, extra) in models.items():
        save_model(os.path.join(workdir, name), module, params, extra, overwrite=True)


def _resume(workdir: str, states, keep_checkpoints: int) -> tuple[ocp.CheckpointManager, object, int]:
    """The checkpoint manager of ``workdir/checkpoints`` (the unfinished saves of a failed or killed run removed)
    and ``states`` restored from its newest checkpoint that restores, with that step (0 for none)."""
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoints, create=True),
    )
    remove_unfinished_checkpoints(os.path.join(workdir, "checkpoints"))
    states, start = restore_newest(manager, states)
    if start:
        logging.info("%s: resumed from step %d", workdir, start)
    return manager, states, start


def _wait_for_saves(manager: ocp.CheckpointManager) -> None:
    """Waits for the manager's asynchronous saves; a failed one is a single error (`checkpoint_failures`)."""
    with checkpoint_failures(manager):
        manager.wait_until_finished()


def train_loop(
    workdir: str,
    states,
    make_batch: Callable[[int], dict],
    step_fn: Callable,
    evaluate: Callable[[object, int], Evaluation],
    key: jax.Array,
    mesh,
    schedule: Schedule,
    *,
    name: str,
    prefetch: int = 2,
) -> tuple[object, dict]:
    """Runs `step_fn(states, batch, key) -> (states, metrics)` on `make_batch(step)` (this process's rows of the
    global batch, sharded over `mesh`) from the latest checkpoint in `workdir/checkpoints` to `schedule.num_steps`.

    Logs the metrics (progress bar, JSONL, TensorBoard, phase `name`) every `log_every` steps; calls
    `evaluate(states, step)` every `eval_every` steps and at the end and records it (`Evaluation`); checkpoints
    every `checkpoint_every` steps, at the end, and on SIGTERM / SIGINT, after which it raises
    TrainingInterrupted. `key` is folded with the step number, so a resumed run draws the same keys. Returns the
    final states and the last evaluation summary.
    """
    manager, states, start = _resume(workdir, states, schedule.keep_checkpoints)
    num_steps = schedule.num_steps
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, phase=name, resume_step=start) if is_main else None
    record = _EvaluationRecord(workdir, name, start, writer)
    summary = {}
    batches = prefetch_to_device(make_batch, range(start, num_steps), mesh, prefetch)
    progress = _Progress(tqdm(total=num_steps, initial=start, desc=name, disable=not is_main, dynamic_ncols=True),
                         writer, start)
    stop = _StopRequest()
    try:
        with _quiet_disk_full():
            for step, batch in zip(range(start + 1, num_steps + 1), batches):
                states, metrics = step_fn(states, batch, jax.random.fold_in(key, step))
                progress.step(step, metrics, step % schedule.log_every == 0 or step == num_steps)
                if step % schedule.eval_every == 0 or step == num_steps:
                    summary = record(evaluate(states, step), step)
                if step % schedule.checkpoint_every == 0 or step == num_steps or stop.requested:
                    _save_checkpoint(manager, states, step, writer)
                if stop.requested:
                    _wait_for_saves(manager)
                    raise TrainingInterrupted(f"{stop.requested} at step {step}: checkpoint saved in "
                                              f"{workdir}/checkpoints; rerun the same command to resume")
            _wait_for_saves(manager)
        if not summary:  # killed after the last checkpoint but before the models were written
            summary = record(evaluate(states, num_steps), num_steps)
    finally:
        progress.bar.close()
        stop.restore()
        batches.close()
        if writer:
            writer.close()
    return states, summary


@dataclasses.dataclass
class _EvaluationRecord:
    """Records an evaluation on process 0 (``writer`` set): its scalars, sample grid and ``eval_XXXXXXX.json``;
    logs its summary and returns it. A run killed after its final evaluation was recorded evaluates the same
    restored states again (the caller may need the outputs) without recording them twice."""

    workdir: str
    name: str
    start: int
    writer: MetricWriter | None

    def __call__(self, evaluation: Evaluation, step: int) -> dict:
        if self.writer and not (self.start == step and os.path.isfile(eval_path(self.workdir, step))):
            self.writer.write(step, {f"val/{k}": v for k, v in evaluation.summary.items()})
            if evaluation.samples is not None:
                write_image(os.path.join(self.workdir, "samples", f"step_{step:07d}.png"), evaluation.samples)
            write_json(eval_path(self.workdir, step), {"step": step, "summary": evaluation.summary,
                                                       **evaluation.details})
        logging.info("%s step %d: %s", self.name, step,
                     ", ".join(f"{k}={v:.4f}" for k, v in evaluation.summary.items()))
        return evaluation.summary


@dataclasses.dataclass
class _Progress:
    """The progress bar, and on logging steps the metrics with the steps per second since the last one (to the
    bar's postfix and, on process 0, the ``writer``)."""

    bar: tqdm
    writer: MetricWriter | None
    last_step: int
    last_time: float = dataclasses.field(default_factory=time.perf_counter)

    def step(self, step: int, metrics: dict, log: bool) -> None:
        self.bar.update(1)
        if not log:
            return
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        metrics["steps_per_s"] = (step - self.last_step) / (now - self.last_time)
        self.last_step, self.last_time = step, now
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
        if self.writer:
            self.writer.write(step, metrics)


def _save_checkpoint(manager: ocp.CheckpointManager, states, step: int, writer: MetricWriter | None) -> None:
    """Starts the asynchronous save of step ``step``, after the metric log is on disk (a resumed run starts from
    the checkpoint and appends to that log)."""
    if writer:
        writer.sync()
    with checkpoint_failures(manager):
        manager.save(step, args=ocp.args.StandardSave(states))
    kill_point(f"checkpoint:{step}")


#: What orbax's and tensorstore's messages say when the disk is full.
_DISK_FULL = ("No space left on device", "RESOURCE_EXHAUSTED", "[Errno 28]")


class _QuietDiskFull(python_logging.Filter):
    """Drops orbax's own error logs of a full disk (a traceback from each of its writer threads) and asyncio's
    "Event loop is closed" from its writer threads that finish after their loop, which :func:`checkpoint_failures`
    replaces with one error. Installed on the ``absl`` and ``concurrent.futures`` loggers while training."""

    LOGGERS = ("absl", "concurrent.futures")

    def filter(self, record: python_logging.LogRecord) -> bool:
        text = record.getMessage() + ("".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
        disk_full = "orbax" in record.pathname and any(mark in text for mark in _DISK_FULL)
        return not (disk_full or (record.name == "concurrent.futures" and "Event loop is closed" in text))


@contextlib.contextmanager
def _quiet_disk_full():
    """`_QuietDiskFull` on its loggers for the duration."""
    quiet = _QuietDiskFull()
    for logger in quiet.LOGGERS:
        python_logging.getLogger(logger).addFilter(quiet)
    try:
        yield
    finally:
        for logger in quiet.LOGGERS:
            python_logging.getLogger(logger).removeFilter(quiet)


@contextlib.contextmanager
def checkpoint_failures(manager: ocp.CheckpointManager):
    """Runs a checkpoint save or wait; a failure to write (a full disk, a lost mount) becomes one OSError naming the
    checkpoint folder and the first line of the cause, after the unfinished ``*.orbax-checkpoint-tmp`` folders are
    removed (the finished checkpoints stay, and a rerun resumes from the newest). Orbax's own logs of a full disk
    are left out: the error says it once."""
    try:
        yield
    except Exception as error:  # orbax re-raises its writer threads' errors as they came
        directory = os.fspath(manager.directory)
        _join_orbax_threads()  # the save's other writer threads end (and log) before their folder is removed
        with contextlib.suppress(Exception):  # the same failure again, once every save has ended
            manager.close()
        remove_unfinished_checkpoints(directory)
        full = any(mark in f"{error!r} {error.__cause__!r} {error.__context__!r}" for mark in _DISK_FULL)
        raise OSError(f"{directory}: cannot write the checkpoint ({'the disk is full' if full else _first_line(error)})"
                      f"; free space and rerun the same command to resume from step {manager.latest_step() or 0}"
                      ) from error


def remove_unfinished_checkpoints(directory: str) -> None:
    """Removes the ``*.orbax-checkpoint-tmp`` folders of saves that never finished from the checkpoint folder
    ``directory`` (process 0; the job is its folder's only writer)."""
    if jax.process_index() == 0:
        for unfinished in glob.glob(os.path.join(glob.escape(directory), "*.orbax-checkpoint-tmp*")):
            shutil.rmtree(unfinished, ignore_errors=True)


def _join_orbax_threads(timeout: float = 60.0) -> None:
    """Waits up to ``timeout`` seconds for orbax's writer threads of a failed save: the first failure is raised
    while its siblings still write."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        started_by = (type(thread).__module__, getattr(getattr(thread, "_target", None), "__module__", None) or "")
        if any(name.startswith("orbax.") for name in started_by) and thread is not threading.current_thread():
            with contextlib.suppress(Exception):  # orbax's threads raise their own error again on join
                thread.join(max(0.0, deadline - time.monotonic()))


def restore_newest(manager: ocp.CheckpointManager, states):
    """``(states restored from the newest checkpoint that restores, its step)``, or ``(states, 0)`` when there is
    none. A newer checkpoint that fails to restore (a truncated or damaged file) is logged with the reason and
    renamed ``<step>.damaged`` (never deleted); nothing is renamed unless an older one restores, so a restore that
    fails for every checkpoint (e.g. states of another shape) raises, naming the newest checkpoint."""
    failed = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored = manager.restore(step, args=ocp.args.StandardRestore(states))
        except Exception as error:  # orbax and tensorstore raise many kinds for damaged files
            failed.append((step, error))
            continue
        for bad_step, error in failed:
            aside = _set_aside(os.path.join(os.fspath(manager.directory), str(bad_step)))
            logging.warning("checkpoint %d does not restore (%s); moved aside to %s, resuming from step %d", bad_step,
                            _first_line(error), aside, step)
        if failed:
            manager.reload()
        return restored, step
    if failed:
        step, error = failed[0]
        raise ValueError(f"{manager.directory}/{step}: no checkpoint restores; the newest fails with: "
                         f"{_first_line(error)}") from error
    return states, 0


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def _set_aside(folder: str) -> str:
    """Renames ``folder`` to ``<folder>.damaged`` (``.damaged-2``, ... when taken) on process 0; returns the name."""
    aside, number = f"{folder}.damaged", 1
    while os.path.exists(aside):
        number += 1
        aside = f"{folder}.damaged-{number}"
    if jax.process_index() == 0:
        os.rename(folder, aside)
    return aside


class _StopRequest:
    """Turns SIGTERM / SIGINT into a flag that the loop checks after each step (then checkpoints and stops)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = ""
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        del frame
        self.requested = signal.Signals(signum).name

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
