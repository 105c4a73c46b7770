"""`run_finetune(config, workdir)`: the DeSRA fine-tuning job behind
`python -m experiments.main --config=configs/desra_finetune.py` (section 3.3 and 4.3 of the paper).

1. Super-resolve the real LR images of `data.lr_dir` with the GAN-SR and the MSE-SR model (whole images, tiled),
   detect the artifacts, and keep the first `data.num_images` images with any: their pseudo ground truth
   (eq. 10) and mask go to `pseudo_gt/` and `masks/`, listed in `pseudo_gt/index.json`, written last, so a
   rerun reuses a complete set and redoes an incomplete one.
2. Fine-tune the GAN-SR model on (LR, pseudo-GT) patches with the GAN losses of the config: the main job's
   sharded steps, checkpoints and resume (experiments.train.train_loop).
3. On the held-out LR images of `data.eval_lr_dir`: detect before (the original model) and after (the EMA of
   the fine-tuned one); report the artifact area, the removal and addition rates (section 4.3), with ground-truth
   masks the mean IoU of the detections against them, and how much the result changed outside the artifacts
   detected before; `eval_<step>.json`, the metric log, and `report/index.html` (before | after | MSE-SR).

`config.online=True` runs `online_loop` instead (Discussion, section 6).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
from absl import logging

from desra_jax import inference
from desra_jax.data.image_io import list_images, read_image, write_bytes_atomic, write_image
from desra_jax.data.masks import find_mask, read_mask
from desra_jax.data.pairs import PatchSampler
from desra_jax.detection import detect_artifacts
from desra_jax.fusion import pseudo_gt
from desra_jax.metrics.detection import mean_iou, removal_addition_rates
from desra_jax.training import checkpoints, sharding
from experiments import report, train
from experiments.detect import Segmenter, load_semantics


def validate(config, num_devices: int) -> None:
    """The main job's checks, plus the inputs of fine-tuning, named by config key."""
    train.validate(config, num_devices)
    for key in ("init_from", "mse_model", "data.lr_dir", "data.eval_lr_dir"):
        value = train._get(config, key)
        if not value or not os.path.exists(value):
            raise ValueError(f"config.{key}={value!r}: required, and must exist")
    for key in ("discriminator_from", "data.eval_mask_dir", "detection.segformer", "detection.class_adjustment"):
        value = train._get(config, key)
        if value and not os.path.exists(value):
            raise ValueError(f"config.{key}={value!r}: no such file or directory")
    if config.online and not os.path.isdir(config.online_settings.incoming_dir):
        raise ValueError(f"config.online_settings.incoming_dir={config.online_settings.incoming_dir!r}: no such folder")


@dataclasses.dataclass(frozen=True)
class Detector:
    """DeSRA detection with the config's settings: (GAN-SR, MSE-SR) (H, W, 3) -> (H, W) bool artifact mask."""

    threshold: float
    min_area: int
    segmenter: Segmenter | None = None
    class_adjustment: np.ndarray | None = None

    @classmethod
    def from_config(cls, detection) -> "Detector":
        segmenter, adjustment, _ = load_semantics(detection.segformer or None, detection.class_adjustment or None,
                                                  detection.segment, detection.segformer_size or None)
        return cls(detection.threshold, detection.min_area, segmenter, adjustment)

    def __call__(self, gan: np.ndarray, mse: np.ndarray) -> np.ndarray:
        gan, mse = gan[None], mse[None]
        semantics = {}
        if self.segmenter is not None:
            semantics = dict(labels=self.segmenter(gan, mse), class_adjustment=self.class_adjustment)
        mask, _ = detect_artifacts(gan, mse, threshold=self.threshold, min_area=self.min_area, **semantics)
        return np.asarray(mask[0])


@dataclasses.dataclass
class SRModel:
    """A generator and its params, super-resolving whole images in tiles (`inference.upscale`)."""

    module: object
    params: object
    tile: int
    overlap: int

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        sr = inference.upscale(self.module, self.params, lr, tile=self.tile, overlap=self.overlap)
        return np.clip(sr, 0.0, 1.0)


def quantize(image: np.ndarray) -> np.ndarray:
    """The 8-bit levels a PNG keeps, as float32: pseudo-GT in memory equals pseudo-GT read back after a restart."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def read_lr_images(folder: str) -> list[tuple[str, np.ndarray]]:
    """(name without extension, image) of every image under `folder`, sorted; errors name the file."""
    return [(os.path.splitext(rel)[0], read_image(os.path.join(folder, rel))) for rel in list_images(folder)]


def make_pseudo_gt_set(lr_images, gan: SRModel, mse: SRModel, detect: Detector, num_images: int, feather: float,
                       out_dir: str) -> list[dict]:
    """Step 1: the first `num_images` LR images whose GAN-SR result has detected artifacts, with their pseudo
    GT (eq. 10) written to `out_dir/pseudo_gt/<name>.png` and mask to `out_dir/masks/<name>.png`.

    Returns the index records {name, lr_path, artifact_fraction}; `pseudo_gt/index.json` holds them and is
    written after every image file, so its presence means the set is complete (a rerun reads it back).
    """
    index_path = os.path.join(out_dir, "pseudo_gt", "index.json")
    if os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as f:
            return json.load(f)
    records = []
    for name, lr in lr_images:
        if len(records) == num_images:
            break
        gan_sr, mse_sr = gan(lr), mse(lr)
        mask = detect(gan_sr, mse_sr)
        if not mask.any():
            continue
        target = quantize(np.asarray(pseudo_gt(gan_sr[None], mse_sr[None], mask[None], feather))[0])
        if jax.process_index() == 0:
            write_image(os.path.join(out_dir, "pseudo_gt", f"{name}.png"), target)
            write_image(os.path.join(out_dir, "masks", f"{name}.png"), mask)
        records.append({"name": name, "artifact_fraction": float(mask.mean())})
        logging.info("pseudo GT %d/%d: %s, %.2f %% artifact", len(records), num_images, name, 100 * mask.mean())
    if not records:
        raise ValueError(f"{out_dir}: DeSRA detected no artifact in any of the {len(lr_images)} LR images; "
                         "nothing to fine-tune on")
    if jax.process_index() == 0:
        write_bytes_atomic(index_path, json.dumps(records, indent=2).encode())
    return records


def load_discriminator(config, path: str):
    """The discriminator to continue (a model directory or BasicSR net_d .pth at `path`) or, for path "", a
    fresh one: (module, variables)."""
    if not path:
        module = train.make_discriminator(config)
        hr = np.zeros((1, config.data.hr_patch, config.data.hr_patch, 3), np.float32)
        return module, module.init(jax.random.key(config.seed + 1), hr, train=False)
    if os.path.isdir(path):
        return checkpoints.load_model(path)
    from desra_jax.convert import load_discriminator as load_torch_discriminator

    return load_torch_discriminator(path)


def held_out_set(config) -> list[dict]:
    """Held-out LR images with their ground-truth masks where `data.eval_mask_dir` has one (by name)."""
    masks = config.data.eval_mask_dir
    return [{"name": name, "lr": lr, "gt_path": find_mask(masks, name) if masks else None}
            for name, lr in read_lr_images(config.data.eval_lr_dir)]


def detect_held_out(held_out, gan: SRModel, mse_results: list[np.ndarray], detect: Detector):
    """(SR results, artifact masks) of `gan` on the held-out images."""
    results = [gan(item["lr"]) for item in held_out]
    return results, [detect(sr, mse_sr) for sr, mse_sr in zip(results, mse_results)]


def compare(before, after, held_out: list[dict]) -> tuple[dict, list[dict]]:
    """Section 4.3's before/after comparison over the held-out set: (summary, per-image records).

    before, after: (SR results, masks) of the original and the fine-tuned model. Rates count regions with the
    detection before fine-tuning as B (`removal_addition_rates`); with ground-truth masks also the mean IoU of
    each detection against them and the rates with the ground truth as B. `change_outside_artifacts`: mean
    absolute change of the SR result where nothing was detected before, on the [0, 1] scale (and
    `change_in_artifacts` where something was, for comparison).
    """
    (sr_before, masks_before), (sr_after, masks_after) = before, after
    rates = removal_addition_rates(masks_before, masks_after)
    change = [float(np.abs(a - b)[~m].mean()) if (~m).any() else 0.0
              for a, b, m in zip(sr_after, sr_before, masks_before)]
    change_in = [float(np.abs(a - b)[m].mean()) for a, b, m in zip(sr_after, sr_before, masks_before) if m.any()]
    summary = {
        "artifact_fraction_before": float(np.mean([m.mean() for m in masks_before])),
        "artifact_fraction_after": float(np.mean([m.mean() for m in masks_after])),
        "removal_rate": rates["removal_rate"],
        "addition_rate": rates["addition_rate"],
        "change_outside_artifacts": float(np.mean(change)),
        "change_in_artifacts": float(np.mean(change_in)) if change_in else 0.0,
    }
    per_image = [
        {"name": item["name"], "artifact_fraction_before": float(b.mean()), "artifact_fraction_after": float(a.mean()),
         **{k: counts[k] for k in ("n_before", "n_removed", "n_after", "n_added")}, "change_outside_artifacts": c}
        for item, b, a, counts, c in zip(held_out, masks_before, masks_after, rates["per_image"], change)
    ]
    labelled = [i for i, item in enumerate(held_out) if item["gt_path"]]
    if labelled:
        gts = [read_mask(held_out[i]["gt_path"], shape=masks_before[i].shape) for i in labelled]
        summary["iou_before"] = mean_iou([masks_before[i] for i in labelled], gts)
        summary["iou_after"] = mean_iou([masks_after[i] for i in labelled], gts)
        gt_rates = removal_addition_rates(gts, [masks_after[i] for i in labelled])
        summary["gt_removal_rate"], summary["gt_addition_rate"] = gt_rates["removal_rate"], gt_rates["addition_rate"]
    return summary, per_image


def write_report(workdir: str, held_out: "HeldOut", after, summary: dict) -> None:
    """`report/index.html`: per held-out image, before | after (detected masks overlaid) | MSE-SR."""
    out_dir = os.path.join(workdir, "report")
    rows = []
    for item, gan_before, mask_before, gan_after, mask_after, mse_sr in zip(
        held_out.items, *held_out.before, *after, held_out.mse_results
    ):
        name = item["name"]
        cells = {"before": report.overlay_mask(gan_before, mask_before),
                 "after": report.overlay_mask(gan_after, mask_after), "mse": mse_sr}
        row = {"name": name, "caption": f"{name}: {100 * mask_before.mean():.2f} % -> {100 * mask_after.mean():.2f} %"}
        for key, image in cells.items():
            write_image(os.path.join(out_dir, "images", f"{name}_{key}.png"), report.thumbnail(image))
            row[key] = f"images/{name}_{key}.png"
        rows.append(row)
    columns = (("before", "GAN-SR before (detected artifacts)"), ("after", "fine-tuned (detected artifacts)"),
               ("mse", "MSE-SR"))
    report.write_gallery(os.path.join(out_dir, "index.html"), out_dir, "DeSRA fine-tuning",
                         [(k, f"{v:.4f}") for k, v in summary.items()], rows, [], columns)


@dataclasses.dataclass
class HeldOut:
    """The held-out evaluation: images, their MSE-SR results and the detection of the original GAN-SR model."""

    items: list[dict]
    mse_results: list[np.ndarray]
    before: tuple[list[np.ndarray], list[np.ndarray]]

    @classmethod
    def prepare(cls, config, gan: SRModel, mse: SRModel, detect: Detector) -> "HeldOut":
        items = held_out_set(config)
        mse_results = [mse(item["lr"]) for item in items]
        return cls(items, mse_results, detect_held_out(items, gan, mse_results, detect))


def fine_tune(config, workdir: str, gan: SRModel, pairs: list[tuple[str, np.ndarray, np.ndarray]],
              held_out: HeldOut, detect: Detector, discriminator_from: str, mesh) -> dict:
    """Step 2 and 3: fine-tunes `gan` on (name, LR, pseudo-GT) `pairs` in `workdir` (resumable), evaluates on
    the held-out set, writes the report and model/ + discriminator/. Returns the final held-out summary."""
    if (summary := train.finished_summary(workdir, config.train.num_steps)) is not None:
        return summary
    discriminator, d_variables = load_discriminator(config, discriminator_from)
    states = train.initial_states(config, gan.module, gan.params, discriminator, d_variables, mesh)
    sampler = PatchSampler(
        [(name, target) for name, _, target in pairs], hr_patch=config.data.hr_patch, scale=config.scale,
        batch_size=config.data.batch_size, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), lr_images=[lr for _, lr, _ in pairs],
    )
    last = {}

    def evaluate(states, step, writer):
        tuned = dataclasses.replace(gan, params=states["generator"].ema_params)
        last["after"] = detect_held_out(held_out.items, tuned, held_out.mse_results, detect)
        summary, per_image = compare(held_out.before, last["after"], held_out.items)
        if writer:
            writer.write(step, {f"val/{k}": v for k, v in summary.items()})
            write_bytes_atomic(os.path.join(workdir, f"eval_{step:07d}.json"), json.dumps(
                {"step": step, "summary": summary, "per_image": per_image, "train_images": [p[0] for p in pairs]},
                indent=2).encode())
        logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
        return summary

    states, summary = train.train_loop(config, workdir, states, sampler, evaluate, jax.random.key(config.seed), mesh)
    if jax.process_index() == 0:
        write_report(workdir, held_out, last["after"], summary)
    train.save_final_models(workdir, gan.module, discriminator, states)
    return summary


def run_finetune(config, workdir: str, mesh=None) -> dict:
    """The whole job (module docstring); resumes where a previous run stopped. Returns the final held-out
    summary."""
    mesh = mesh or sharding.data_mesh()
    validate(config, mesh.size)
    workdir = train.prepare_workdir(config, workdir)
    if (summary := train.finished_summary(workdir, config.train.num_steps)) is not None:
        return summary
    gan = SRModel(*train.load_generator(config.init_from, config), config.eval.tile, config.eval.overlap)
    mse = SRModel(*train.load_generator(config.mse_model, config), config.eval.tile, config.eval.overlap)
    detect = Detector.from_config(config.detection)
    held_out = HeldOut.prepare(config, gan, mse, detect)
    if config.online:
        return online_loop(config, workdir, gan, mse, detect, held_out, mesh)

    lr_images = read_lr_images(config.data.lr_dir)
    records = make_pseudo_gt_set(lr_images, gan, mse, detect, config.data.num_images, config.detection.feather,
                                 workdir)
    lr_by_name = dict(lr_images)
    pairs = [(r["name"], lr_by_name[r["name"]], read_image(os.path.join(workdir, "pseudo_gt", f"{r['name']}.png")))
             for r in records]
    return fine_tune(config, workdir, gan, pairs, held_out, detect, config.discriminator_from, mesh)


def online_loop(config, workdir: str, gan: SRModel, mse: SRModel, detect: Detector, held_out: HeldOut, mesh) -> dict:
    """The continual setting of the paper's Discussion (section 6), in `workdir/online`.

    Polls `online_settings.incoming_dir` for LR images not seen before. Each is super-resolved by the current
    model version and detected; one with artifacts is accepted: its LR and pseudo GT are written to
    `buffer/`, then its name is added to `state.json` (written atomically after the files, so an accepted
    sample survives any kill). When the buffer holds `buffer_size` samples, a fine-tuning round runs in
    `round_<k>/` (resumable, like the batch job) from the current version; its `model/` becomes version k, and
    only then are the buffer's samples moved into `round_<k>/data/` and the state advanced. Stops after
    `idle_polls` polls without a new image (never with -1). Returns the last round's held-out summary.
    """
    settings = config.online_settings
    root = os.path.join(workdir, "online")
    state_path = os.path.join(root, "state.json")
    state = {"seen": [], "buffer": [], "version": 0}
    if os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)

    def save_state():
        if jax.process_index() == 0:
            write_bytes_atomic(state_path, json.dumps(state, indent=2).encode())

    def round_dir(version: int) -> str:
        return os.path.join(root, f"round_{version:03d}")

    def current_model() -> SRModel:
        if not state["version"]:
            return gan
        module, variables = checkpoints.load_model(os.path.join(round_dir(state["version"]), "model"))
        return dataclasses.replace(gan, module=module, params=variables["params"])

    summary, idle = {}, 0
    model = current_model()
    while True:
        if len(state["buffer"]) >= settings.buffer_size:
            version = state["version"] + 1
            # The buffer's files are moved into the round only after its model is saved; a kill between that move
            # and the state update leaves them there.
            samples = os.path.join(root, "buffer")
            if not os.path.isdir(samples):
                samples = os.path.join(round_dir(version), "data")
            pairs = [(name, read_image(os.path.join(samples, "lr", f"{name}.png")),
                      read_image(os.path.join(samples, "pseudo_gt", f"{name}.png"))) for name in state["buffer"]]
            previous_d = os.path.join(round_dir(state["version"]), "discriminator") if state["version"] else ""
            summary = fine_tune(config, round_dir(version), model, pairs, held_out, detect,
                                previous_d or config.discriminator_from, mesh)
            if jax.process_index() == 0 and os.path.isdir(os.path.join(root, "buffer")):
                os.replace(os.path.join(root, "buffer"), os.path.join(round_dir(version), "data"))
            state.update(buffer=[], version=version)
            save_state()
            model = current_model()
            logging.info("online: version %d from %d samples; held-out %s", version, len(pairs), summary)
        incoming = [(os.path.splitext(rel)[0], rel) for rel in list_images(settings.incoming_dir)]
        new = [(name, rel) for name, rel in incoming if name not in state["seen"]]
        if not new:
            idle += 1
            if 0 <= settings.idle_polls <= idle:
                return summary
            time.sleep(settings.poll_seconds)
            continue
        idle = 0
        for name, rel in new:
            lr = read_image(os.path.join(settings.incoming_dir, rel))
            gan_sr, mse_sr = model(lr), mse(lr)
            mask = detect(gan_sr, mse_sr)
            if mask.any() and len(state["buffer"]) < settings.buffer_size:
                target = np.asarray(pseudo_gt(gan_sr[None], mse_sr[None], mask[None], config.detection.feather))[0]
                if jax.process_index() == 0:
                    write_image(os.path.join(root, "buffer", "lr", f"{name}.png"), lr)
                    write_image(os.path.join(root, "buffer", "pseudo_gt", f"{name}.png"), target)
                state["buffer"].append(name)
            state["seen"].append(name)
            save_state()
            if len(state["buffer"]) >= settings.buffer_size:
                break  # fine-tune before looking at more images, so they meet the new version
