"""DeSRA's continual setting (the paper's Discussion, section 6): LR images arrive in a folder; those with detected
artifacts are collected with their pseudo GT, and every `buffer_size` of them fine-tune the current model version.

On disk, in `workdir/online`: `state.json` (`OnlineState`: the incoming files seen, the buffer, the version),
`buffer/lr/` and `buffer/pseudo_gt/` (the accepted samples), `round_<k>/` (the fine-tuning run that made version k,
with its samples moved into `round_<k>/data/`) and `quarantine/` (files that could not be read or detected, each
with a `.reason.txt`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import jax
import numpy as np
from absl import logging

from desra_jax.data.matching import images_by_name
from desra_jax.data.image_io import read_image, write_image
from desra_jax.files import write_bytes_atomic, write_json
from desra_jax.models.directory import load_model
from desra_jax.training.desra_sets import DeSRAModels, HeldOut, pseudo_target
from desra_jax.training.finetune import FineTuning, fine_tune


@dataclasses.dataclass(frozen=True)
class Online:
    """The continual loop's settings: the folder LR images arrive in, samples per round, how often to look, and
    after how many looks without a new image to stop (-1: never)."""

    incoming_dir: str
    buffer_size: int
    poll_seconds: float
    idle_polls: int


@dataclasses.dataclass
class OnlineState:
    """What the loop in `root` has done: the incoming files `seen` (relative paths), the names in the `buffer`, and
    the model `version` (0: the original). `save` writes it atomically to `root/state.json` after the files it
    names, so a kill at any point loses no accepted sample."""

    root: str
    seen: list[str] = dataclasses.field(default_factory=list)
    buffer: list[str] = dataclasses.field(default_factory=list)
    version: int = 0

    @classmethod
    def load(cls, root: str) -> "OnlineState":
        """The state in `root/state.json`, or a fresh one."""
        path = os.path.join(root, "state.json")
        if not os.path.isfile(path):
            return cls(root)
        with open(path, encoding="utf-8") as f:
            return cls(root, **json.load(f))

    def save(self) -> None:
        if jax.process_index() == 0:
            write_json(os.path.join(self.root, "state.json"),
                       {"seen": self.seen, "buffer": self.buffer, "version": self.version})

    def round_dir(self, version: int) -> str:
        return os.path.join(self.root, f"round_{version:03d}")

    def accept(self, name: str, lr: np.ndarray | None = None, target: np.ndarray | None = None) -> None:
        """Marks the incoming file `name` seen; with its LR image and pseudo GT `target`, first writes them to
        `buffer/` and adds it to the buffer."""
        if lr is not None:
            if jax.process_index() == 0:
                write_image(os.path.join(self.root, "buffer", "lr", f"{name}.png"), lr)
                write_image(os.path.join(self.root, "buffer", "pseudo_gt", f"{name}.png"), target)
            self.buffer.append(name)
        self.seen.append(name)
        self.save()

    def samples_dir(self) -> str:
        """Where the buffer's samples are: `buffer/`, or `round_<next>/data/` when a kill came after the round
        moved them there but before `advance`."""
        buffer = os.path.join(self.root, "buffer")
        return buffer if os.path.isdir(buffer) else os.path.join(self.round_dir(self.version + 1), "data")

    def advance(self) -> None:
        """After round `version + 1` saved its model: moves the buffer's samples into the round and empties it."""
        version = self.version + 1
        buffer = os.path.join(self.root, "buffer")
        if jax.process_index() == 0 and os.path.isdir(buffer):
            os.replace(buffer, os.path.join(self.round_dir(version), "data"))
        self.buffer, self.version = [], version
        self.save()


def quarantine(root: str, incoming_dir: str, relative: str, reason: str) -> str:
    """Moves the incoming file `relative` aside to `root/quarantine/` with a `.reason.txt` beside it, so that a bad
    file is looked at once, not on every restart; returns where it went."""
    target = os.path.join(root, "quarantine", relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    write_bytes_atomic(f"{target}.reason.txt", (reason + "\n").encode("utf-8"))
    shutil.move(os.path.join(incoming_dir, relative), target)
    return target


def current_models(state: OnlineState, models: DeSRAModels) -> DeSRAModels:
    """`models` with the GAN-SR model of the state's version (`round_<k>/model`; version 0: the original)."""
    if not state.version:
        return models
    module, variables = load_model(os.path.join(state.round_dir(state.version), "model"))
    return dataclasses.replace(models, gan=dataclasses.replace(models.gan, module=module, params=variables["params"]))


def run_round(settings: FineTuning, state: OnlineState, models: DeSRAModels, held_out: HeldOut,
              discriminator_from: str, mesh) -> dict:
    """Fine-tunes the current version on the buffer in `round_<k>/` (resumable) from its discriminator (the
    previous round's, or `discriminator_from`), then `advance`s; returns the round's held-out summary."""
    samples = state.samples_dir()
    pairs = [(name, read_image(os.path.join(samples, "lr", f"{name}.png")),
              read_image(os.path.join(samples, "pseudo_gt", f"{name}.png"))) for name in state.buffer]
    previous_d = os.path.join(state.round_dir(state.version), "discriminator") if state.version else ""
    summary = fine_tune(settings, state.round_dir(state.version + 1), models.gan, pairs, held_out,
                        previous_d or discriminator_from, mesh)
    state.advance()
    logging.info("online: version %d from %d samples; held-out %s", state.version, len(pairs), summary)
    return summary


def take_new(state: OnlineState, online: Online, models: DeSRAModels, feather: float, new: list[str],
             incoming: dict[str, str]) -> None:
    """Looks at the `new` incoming files in order until the buffer is full: one with detected artifacts is
    accepted into the buffer with its pseudo GT; one that cannot be read or detected (smaller than detection's
    windows) is quarantined; each is marked seen."""
    for name in new:
        try:
            lr = read_image(incoming[name])  # its errors name the file
            gan_sr, mse_sr, mask = models.detect_pair(lr)
        except ValueError as error:
            reason = str(error) if str(error).startswith(str(incoming[name])) else f"{incoming[name]}: {error}"
            if jax.process_index() == 0:
                moved = quarantine(state.root, online.incoming_dir, name, reason)
                logging.warning("online: %s; moved to %s", reason, moved)
            state.accept(name)
            continue
        if mask.any() and len(state.buffer) < online.buffer_size:
            state.accept(name, lr, pseudo_target(gan_sr, mse_sr, mask, feather))
        else:
            state.accept(name)
        if len(state.buffer) >= online.buffer_size:
            return  # fine-tune before looking at more images, so they meet the new version


def online_loop(settings: FineTuning, online: Online, workdir: str, models: DeSRAModels, held_out: HeldOut,
                feather: float, discriminator_from: str, mesh) -> dict:
    """The continual setting in `workdir/online` (module docstring).

    Polls `online.incoming_dir` for LR images not seen before (keyed by their full relative path, so `a.png` and
    `a.jpg` are two samples), each detected with the current model version (`take_new`). When the buffer holds
    `buffer_size` samples, a round runs (`run_round`); its `model/` becomes the next version. Stops after
    `online.idle_polls` looks without a new image. Returns the last round's held-out summary.
    """
    state = OnlineState.load(os.path.join(workdir, "online"))
    summary, idle = {}, 0
    current = current_models(state, models)
    while True:
        if len(state.buffer) >= online.buffer_size:
            summary = run_round(settings, state, current, held_out, discriminator_from, mesh)
            current = current_models(state, models)
        problems: list[str] = []
        incoming = images_by_name(online.incoming_dir, problems, key=lambda relative: relative)
        for problem in problems:
            logging.warning("online: %s", problem)
        new = sorted(name for name in incoming if name not in state.seen)
        if not new:
            idle += 1
            if 0 <= online.idle_polls <= idle:
                return summary
            time.sleep(online.poll_seconds)
            continue
        idle = 0
        take_new(state, online, current, feather, new, incoming)
