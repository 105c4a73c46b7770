"""DeSRA fine-tuning (sections 3.3 and 4.3 of the paper), and its continual form (the Discussion, section 6).

1. `make_pseudo_gt_set`: super-resolve real LR images with the GAN-SR and the MSE-SR model (whole images, tiled),
   detect the artifacts, and keep the first images with any, with their pseudo ground truth (eq. 10).
2. `fine_tune`: train the GAN-SR model on (LR, pseudo-GT) patches with the shared loop (checkpoints, resume).
3. `compare`: on held-out LR images, the artifacts detected before (the original model) and after (the EMA of the
   fine-tuned one): area, removal and addition rates (section 4.3), IoU against labels, the change outside
   the artifacts, and with HR images the fidelity of both models (`fidelity`); `write_report` shows them
   (before | after | MSE-SR).
`online_loop` repeats 1-2 on LR images as they arrive.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging

from desra_jax import report
from desra_jax.data.matching import images_by_name
from desra_jax.data.image_io import read_image, write_image
from desra_jax.files import write_bytes_atomic, write_json
from desra_jax.data.masks import find_mask, read_mask
from desra_jax.data.sr_pairs import PatchSampler
from desra_jax.detection.settings import Detector
from desra_jax.fusion import pseudo_gt
from desra_jax.inference import Upscaler
from desra_jax.metrics.detection import mean_iou, removal_addition_rates
from desra_jax.metrics.image_quality import psnr, ssim
from desra_jax.models.directory import load_model
from desra_jax.training import loop, sharding
from desra_jax.training.evaluation import Evaluation
from desra_jax.training.state import sr_states


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """How a fine-tuning run trains: the jitted `step` (states, batch, key) -> (states, metrics) of the GAN losses,
    the `optimizer` of both networks, the patch sampler's settings, the loop's `schedule`, and `discriminator(path)
    -> (module, variables)`, which continues the discriminator at `path` or, for "", makes a fresh one."""

    step: Callable
    optimizer: object
    discriminator: Callable[[str], tuple]
    schedule: loop.Schedule
    hr_patch: int
    scale: int
    batch_size: int
    seed: int
    name: str = "desra_finetune"
    prefetch: int = 2


def quantize(image: np.ndarray) -> np.ndarray:
    """The 8-bit levels a PNG keeps, as float32: pseudo-GT in memory equals pseudo-GT read back after a restart."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def read_named_images(folder: str, problems: list[str]) -> list[tuple[str, np.ndarray]]:
    """(name, image) of every readable image under `folder`, sorted by name (`images_by_name`); a file that cannot
    be read is a line in `problems`."""
    found = images_by_name(folder, problems)
    images = []
    for name, path in sorted(found.items()):
        try:
            images.append((name, read_image(path)))
        except ValueError as error:
            problems.append(f"{error}; skipped")
    return images


def make_pseudo_gt_set(lr_images, gan: Upscaler, mse: Upscaler, detect: Detector, num_images: int, feather: float,
                       out_dir: str, problems: list[str]) -> list[dict]:
    """Step 1: the first `num_images` of the (name, LR) `lr_images` whose GAN-SR result has detected artifacts,
    with their pseudo GT (eq. 10, blend edge `feather`) written to `out_dir/pseudo_gt/<name>.png` and mask to
    `out_dir/masks/<name>.png`. An image that detection refuses (smaller than its windows) is a line in
    `problems`, and skipped.

    Returns the index records {name, artifact_fraction}; `pseudo_gt/index.json` holds them with the problems
    ({"images", "problems"}) and is written after every image file, so its presence means the set is complete (a
    rerun reads it back, and its problems into `problems`).
    """
    index_path = os.path.join(out_dir, "pseudo_gt", "index.json")
    if os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        problems += index["problems"]
        return index["images"]
    records, refused = [], []
    for name, lr in lr_images:
        if len(records) == num_images:
            break
        gan_sr, mse_sr = gan(lr), mse(lr)
        try:
            mask = detect(gan_sr, mse_sr)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            refused.append(f"{name}: {error}; skipped")
            continue
        if not mask.any():
            continue
        target = quantize(np.asarray(pseudo_gt(gan_sr[None], mse_sr[None], mask[None], feather))[0])
        if jax.process_index() == 0:
            write_image(os.path.join(out_dir, "pseudo_gt", f"{name}.png"), target)
            write_image(os.path.join(out_dir, "masks", f"{name}.png"), mask)
        records.append({"name": name, "artifact_fraction": float(mask.mean())})
        logging.info("pseudo GT %d/%d: %s, %.2f %% artifact", len(records), num_images, name, 100 * mask.mean())
    problems += refused
    if not records:
        raise ValueError(f"{out_dir}: DeSRA detected no artifact in any of the {len(lr_images)} LR images; "
                         "nothing to fine-tune on")
    if jax.process_index() == 0:
        write_json(index_path, {"images": records, "problems": refused})
    return records


@dataclasses.dataclass
class HeldOut:
    """The held-out evaluation: (name, LR, ground-truth mask path or None, HR image or None) items, their MSE-SR
    results, the detection of the original GAN-SR model (SR results, masks), and how `fidelity` against the HR
    images is measured (`crop_border`, `lpips_fn`)."""

    items: list[dict]
    mse_results: list[np.ndarray]
    before: tuple[list[np.ndarray], list[np.ndarray]]
    crop_border: int = 0
    lpips_fn: Callable | None = None

    @classmethod
    def prepare(cls, lr_images, mask_dir: str | None, gan: Upscaler, mse: Upscaler, detect: Detector,
                problems: list[str], hr_dir: str | None = None, crop_border: int = 0,
                lpips_fn=None) -> "HeldOut":
        """From (name, LR) `lr_images`, the folder of their labels (`find_mask` by name; None: none) and the folder
        of their HR images (`held_out_hr`; None: none). An image that detection refuses (smaller than its
        windows) is a line in `problems` and left out."""
        items, mse_results, results, masks = [], [], [], []
        for name, lr in lr_images:
            mse_sr, gan_sr = mse(lr), gan(lr)
            try:
                mask = detect(gan_sr, mse_sr)
            except ValueError as error:
                problems.append(f"{name}: {error}; left out of the held-out set")
                continue
            items.append({"name": name, "lr": lr, "gt_path": find_mask(mask_dir, name) if mask_dir else None})
            mse_results.append(mse_sr)
            results.append(gan_sr)
            masks.append(mask)
        if not items:
            raise ValueError(f"none of the {len(lr_images)} held-out LR images can be evaluated")
        if hr_dir:
            hrs = held_out_hr([item["name"] for item in items], hr_dir, [r.shape[:2] for r in mse_results])
            for item, hr in zip(items, hrs):
                item["hr"] = hr
        return cls(items, mse_results, (results, masks), crop_border, lpips_fn)


def held_out_hr(names: list[str], hr_dir: str, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The image in `hr_dir` of each of `names` (`images_by_name`), each of the (H, W) in `shapes` (its SR
    result's); one missing or of another size is an error naming it."""
    problems: list[str] = []
    found = images_by_name(hr_dir, problems)
    hrs = []
    for name, shape in zip(names, shapes):
        if name not in found:
            raise ValueError(f"{hr_dir}: no HR image named {name!r} for the held-out LR image of that name")
        hr = read_image(found[name])
        if hr.shape[:2] != tuple(shape):
            raise ValueError(f"{found[name]}: HR image of {hr.shape[0]}x{hr.shape[1]}, expected {shape[0]}x{shape[1]} "
                             f"(the size of the SR result of {name!r})")
        hrs.append(hr)
    return hrs


def fidelity(results: list[np.ndarray], hrs: list[np.ndarray], crop_border: int, lpips_fn=None) -> dict:
    """Mean PSNR and SSIM (RGB, `crop_border` pixels off each side, BasicSR's `calculate_psnr` / `calculate_ssim`
    as Real-ESRGAN's validation uses them) of SR `results` against their `hrs`, and the mean LPIPS with
    `lpips_fn(x, y) -> (N,)` (None: not measured)."""
    scores = {"psnr": [], "ssim": [], "lpips": []}
    for result, hr in zip(results, hrs):
        pair = (result[None], hr[None])
        scores["psnr"].append(float(psnr(*pair, crop_border=crop_border)[0]))
        scores["ssim"].append(float(ssim(*pair, crop_border=crop_border)[0]))
        if lpips_fn is not None:
            scores["lpips"].append(float(lpips_fn(*pair)[0]))
    return {k: float(np.mean(v)) for k, v in scores.items() if v}


def detect_held_out(held_out, gan: Upscaler, mse_results: list[np.ndarray], detect: Detector):
    """(SR results, artifact masks) of `gan` on the held-out images."""
    results = [gan(item["lr"]) for item in held_out]
    return results, [detect(sr, mse_sr) for sr, mse_sr in zip(results, mse_results)]


def compare(before, after, held_out: list[dict], crop_border: int = 0, lpips_fn=None) -> tuple[dict, dict]:
    """Section 4.3's before/after comparison over the held-out set: (summary, per-image records).

    before, after: (SR results, masks) of the original and the fine-tuned model. `removal_rate` and
    `addition_rate` are the headline figures: against the labelled artifacts (B = the ground-truth masks, as
    the paper's Table 3 measures) when every held-out image has a label, else against the detection before
    fine-tuning (B = the masks before); `rates_against` in the returned details says which. Both versions are
    kept under their own names (`detected_*`, and with labels `gt_*`, with the mean IoU of each detection
    against the labels). `change_outside_artifacts`: mean absolute change of the SR result where nothing was
    detected before, on the [0, 1] scale (and `change_in_artifacts` where something was, for comparison).
    `new_artifact_fraction`: the fraction of pixels detected after fine-tuning where nothing was detected before,
    the area behind the addition rate (which counts a region as added for one such pixel). When
    every held-out item has its HR image, `<metric>_before` / `<metric>_after` are both models' `fidelity`
    (`crop_border`, `lpips_fn`): fine-tuning should not cost fidelity (section 4.3).
    Returns (summary, details {"rates_against", "per_image"}).
    """
    (sr_before, masks_before), (sr_after, masks_after) = before, after
    rates = removal_addition_rates(masks_before, masks_after)
    change = [float(np.abs(a - b)[~m].mean()) if (~m).any() else 0.0
              for a, b, m in zip(sr_after, sr_before, masks_before)]
    change_in = [float(np.abs(a - b)[m].mean()) for a, b, m in zip(sr_after, sr_before, masks_before) if m.any()]
    new = [float((a & ~b).mean()) for a, b in zip(masks_after, masks_before)]
    summary = {
        "artifact_fraction_before": float(np.mean([m.mean() for m in masks_before])),
        "artifact_fraction_after": float(np.mean([m.mean() for m in masks_after])),
        "new_artifact_fraction": float(np.mean(new)),
        "detected_removal_rate": rates["removal_rate"],
        "detected_addition_rate": rates["addition_rate"],
        "change_outside_artifacts": float(np.mean(change)),
        "change_in_artifacts": float(np.mean(change_in)) if change_in else 0.0,
    }
    per_image = [
        {"name": item["name"], "artifact_fraction_before": float(b.mean()), "artifact_fraction_after": float(a.mean()),
         "new_artifact_fraction": n, **{k: counts[k] for k in ("n_before", "n_removed", "n_after", "n_added")},
         "change_outside_artifacts": c}
        for item, b, a, n, counts, c in zip(held_out, masks_before, masks_after, new, rates["per_image"], change)
    ]
    labelled = [i for i, item in enumerate(held_out) if item["gt_path"]]
    if labelled:
        gts = [read_mask(held_out[i]["gt_path"], shape=masks_before[i].shape) for i in labelled]
        summary["iou_before"] = mean_iou([masks_before[i] for i in labelled], gts)
        summary["iou_after"] = mean_iou([masks_after[i] for i in labelled], gts)
        gt_rates = removal_addition_rates(gts, [masks_after[i] for i in labelled])
        summary["gt_removal_rate"], summary["gt_addition_rate"] = gt_rates["removal_rate"], gt_rates["addition_rate"]
    if held_out and all(item.get("hr") is not None for item in held_out):
        hrs = [item["hr"] for item in held_out]
        for when, results in (("before", sr_before), ("after", sr_after)):
            summary.update({f"{k}_{when}": v for k, v in fidelity(results, hrs, crop_border, lpips_fn).items()})
    against = "labels" if labelled and len(labelled) == len(held_out) else "detection before"
    prefix = "gt" if against == "labels" else "detected"
    summary = {"removal_rate": summary[f"{prefix}_removal_rate"], "addition_rate": summary[f"{prefix}_addition_rate"],
               **summary}
    return summary, {"rates_against": against, "per_image": per_image}


def write_report(workdir: str, held_out: HeldOut, after, summary: dict, rates_against: str) -> None:
    """`report/index.html`: the summary (naming what the removal and addition rates count against), and per
    held-out image, before | after (detected masks overlaid) | MSE-SR."""
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
                         [("removal / addition rates against", rates_against)]
                         + [(k, f"{v:.4f}") for k, v in summary.items()], rows, [], columns)


def fine_tune(settings: FineTuning, workdir: str, gan: Upscaler, pairs: list[tuple[str, np.ndarray, np.ndarray]],
              held_out: HeldOut, detect: Detector, discriminator_from: str, mesh, problems=()) -> dict:
    """Steps 2 and 3: fine-tunes `gan` on (name, LR, pseudo-GT) `pairs` in `workdir` (resumable), evaluates on
    the held-out set, writes the report and model/ + discriminator/. `problems` (the input files skipped, by
    name) go into each evaluation's file. Returns the final held-out summary."""
    if (summary := loop.finished_summary(workdir, settings.schedule.num_steps, ("model", "discriminator"))) is not None:
        return summary
    discriminator, d_variables = settings.discriminator(discriminator_from)
    states = sr_states(gan.module, gan.params, settings.optimizer, discriminator, d_variables)
    states = jax.device_put(states, sharding.replicated(mesh))
    sampler = PatchSampler(
        [(name, target) for name, _, target in pairs], hr_patch=settings.hr_patch, scale=settings.scale,
        batch_size=settings.batch_size, seed=settings.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), lr_images=[lr for _, lr, _ in pairs],
    )
    last = {}

    def evaluate(states, step):
        del step
        tuned = dataclasses.replace(gan, params=states["generator"].ema_params)
        last["after"] = detect_held_out(held_out.items, tuned, held_out.mse_results, detect)
        summary, details = compare(held_out.before, last["after"], held_out.items, held_out.crop_border,
                                   held_out.lpips_fn)
        last["rates_against"] = details["rates_against"]
        return Evaluation(summary, {**details, "train_images": [p[0] for p in pairs], "problems": list(problems)})

    states, summary = loop.train_loop(workdir, states, sampler.batch, settings.step, evaluate,
                                      jax.random.key(settings.seed), mesh, settings.schedule, name=settings.name,
                                      prefetch=settings.prefetch)
    if jax.process_index() == 0:
        write_report(workdir, held_out, last["after"], summary, last["rates_against"])
    d_state = states["discriminator"]
    loop.save_final_models(workdir, {"model": (gan.module, states["generator"].ema_params, {}),
                                     "discriminator": (discriminator, d_state.params, d_state.model_state)})
    return summary


@dataclasses.dataclass(frozen=True)
class Online:
    """The continual loop's settings: the folder LR images arrive in, samples per round, how often to look, and
    after how many looks without a new image to stop (-1: never)."""

    incoming_dir: str
    buffer_size: int
    poll_seconds: float
    idle_polls: int


def quarantine(root: str, incoming_dir: str, relative: str, reason: str) -> str:
    """Moves the incoming file `relative` aside to `root/quarantine/` with a `.reason.txt` beside it, so that a bad
    file is looked at once, not on every restart; returns where it went."""
    target = os.path.join(root, "quarantine", relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    write_bytes_atomic(f"{target}.reason.txt", (reason + "\n").encode("utf-8"))
    shutil.move(os.path.join(incoming_dir, relative), target)
    return target


def online_loop(settings: FineTuning, online: Online, workdir: str, gan: Upscaler, mse: Upscaler, detect: Detector,
                held_out: HeldOut, feather: float, discriminator_from: str, mesh) -> dict:
    """The continual setting of the paper's Discussion (section 6), in `workdir/online`.

    Polls `online.incoming_dir` for LR images not seen before (keyed by their full relative path, so `a.png` and
    `a.jpg` are two samples). Each is super-resolved by the current model version and detected; one with artifacts
    is accepted: its LR and pseudo GT are written to `buffer/`, then its name is added to `state.json` (written
    atomically after the files, so an accepted sample survives any kill). A file that cannot be read or detected
    (smaller than detection's windows) is moved to `quarantine/` with its reason and counted as seen. When the buffer holds `buffer_size` samples, a fine-tuning
    round runs in `round_<k>/` (resumable, like the batch job) from the current version and its discriminator;
    its `model/` becomes version k, and only then are the buffer's samples moved into `round_<k>/data/` and the
    state advanced. Returns the last round's held-out summary.
    """
    root = os.path.join(workdir, "online")
    state_path = os.path.join(root, "state.json")
    state = {"seen": [], "buffer": [], "version": 0}
    if os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)

    def save_state():
        if jax.process_index() == 0:
            write_json(state_path, state)

    def round_dir(version: int) -> str:
        return os.path.join(root, f"round_{version:03d}")

    def current_model() -> Upscaler:
        if not state["version"]:
            return gan
        module, variables = load_model(os.path.join(round_dir(state["version"]), "model"))
        return dataclasses.replace(gan, module=module, params=variables["params"])

    summary, idle = {}, 0
    model = current_model()
    while True:
        if len(state["buffer"]) >= online.buffer_size:
            version = state["version"] + 1
            # The buffer's files are moved into the round only after its model is saved; a kill between that move
            # and the state update leaves them there.
            samples = os.path.join(root, "buffer")
            if not os.path.isdir(samples):
                samples = os.path.join(round_dir(version), "data")
            pairs = [(name, read_image(os.path.join(samples, "lr", f"{name}.png")),
                      read_image(os.path.join(samples, "pseudo_gt", f"{name}.png"))) for name in state["buffer"]]
            previous_d = os.path.join(round_dir(state["version"]), "discriminator") if state["version"] else ""
            summary = fine_tune(settings, round_dir(version), model, pairs, held_out, detect,
                                previous_d or discriminator_from, mesh)
            if jax.process_index() == 0 and os.path.isdir(os.path.join(root, "buffer")):
                os.replace(os.path.join(root, "buffer"), os.path.join(round_dir(version), "data"))
            state.update(buffer=[], version=version)
            save_state()
            model = current_model()
            logging.info("online: version %d from %d samples; held-out %s", version, len(pairs), summary)
        problems: list[str] = []
        incoming = images_by_name(online.incoming_dir, problems, key=lambda relative: relative)
        for problem in problems:
            logging.warning("online: %s", problem)
        new = sorted(name for name in incoming if name not in state["seen"])
        if not new:
            idle += 1
            if 0 <= online.idle_polls <= idle:
                return summary
            time.sleep(online.poll_seconds)
            continue
        idle = 0
        for name in new:
            try:
                lr = read_image(incoming[name])  # its errors name the file
                gan_sr, mse_sr = model(lr), mse(lr)
                mask = detect(gan_sr, mse_sr)  # refuses images smaller than its windows
            except ValueError as error:
                reason = str(error) if str(error).startswith(str(incoming[name])) else f"{incoming[name]}: {error}"
                if jax.process_index() == 0:
                    moved = quarantine(root, online.incoming_dir, name, reason)
                    logging.warning("online: %s; moved to %s", reason, moved)
                state["seen"].append(name)
                save_state()
                continue
            if mask.any() and len(state["buffer"]) < online.buffer_size:
                target = np.asarray(pseudo_gt(gan_sr[None], mse_sr[None], mask[None], feather))[0]
                if jax.process_index() == 0:
                    write_image(os.path.join(root, "buffer", "lr", f"{name}.png"), lr)
                    write_image(os.path.join(root, "buffer", "pseudo_gt", f"{name}.png"), target)
                state["buffer"].append(name)
            state["seen"].append(name)
            save_state()
            if len(state["buffer"]) >= online.buffer_size:
                break  # fine-tune before looking at more images, so they meet the new version
