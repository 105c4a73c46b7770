"""The image sets of DeSRA fine-tuning (sections 3.3 and 4.3 of the paper): `DeSRAModels.detect_pair`, the one
"super-resolve with both models and detect" that every set is made with; the pseudo-GT set (`make_pseudo_gt_set`,
eq. 10, `pseudo_target`) and the held-out evaluation set (`HeldOut`), whose `evaluate` compares a fine-tuned model
with the original (`desra_jax.metrics.comparison`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import numpy as np
from absl import logging

from desra_jax.data.matching import images_by_name
from desra_jax.data.image_io import read_image, write_image
from desra_jax.files import write_json
from desra_jax.data.masks import find_mask, read_mask
from desra_jax.detection.partner import partner_blockiness
from desra_jax.detection.settings import Detector
from desra_jax.fusion import pseudo_gt
from desra_jax.inference import Upscaler
from desra_jax.metrics.comparison import compare


@dataclasses.dataclass(frozen=True)
class DeSRAModels:
    """The GAN-SR model to fine-tune, its MSE-SR partner (any MSE-SR model of the same scale), the detector, and
    the two models' names for messages."""

    gan: Upscaler
    mse: Upscaler
    detect: Detector
    names: tuple[str, str] = ("the GAN-SR model", "the MSE-SR model")

    def detect_pair(self, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(GAN-SR result, MSE-SR result, artifact mask) of the LR image (h, w, 3) in [0, 1]: (H, W, 3), (H, W, 3)
        and bool (H, W). Raises ValueError when detection refuses the image (smaller than its windows)."""
        gan_sr, mse_sr = self.gan(lr), self.mse(lr)
        return gan_sr, mse_sr, self.detect(gan_sr, mse_sr)


def quantize(image: np.ndarray) -> np.ndarray:
    """The 8-bit levels a PNG keeps, as float32: pseudo-GT in memory equals pseudo-GT read back after a restart."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def pseudo_target(gan_sr: np.ndarray, mse_sr: np.ndarray, mask: np.ndarray, feather: float) -> np.ndarray:
    """The pseudo GT of one image (eq. 10: the MSE-SR result inside the artifacts, blend edge `feather`), on the
    8-bit levels it is stored with: (H, W, 3) float32."""
    return quantize(np.asarray(pseudo_gt(gan_sr[None], mse_sr[None], mask[None], feather))[0])


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


def make_pseudo_gt_set(lr_images, models: DeSRAModels, num_images: int, feather: float, out_dir: str,
                       problems: list[str]) -> list[dict]:
    """Step 1: the first `num_images` of the (name, LR) `lr_images` whose GAN-SR result has detected artifacts,
    with their pseudo GT (`pseudo_target`, blend edge `feather`) written to `out_dir/pseudo_gt/<name>.png` and
    mask to `out_dir/masks/<name>.png`. An image that detection refuses (smaller than its windows) is a line in
    `problems`, and skipped.

    Returns the index records {name, artifact_fraction, partner_blockiness (`partner_blockiness`: the MSE-SR
    result's 8x8 blockiness over the GAN-SR result's inside the mask; None where it has no block grid)};
    `pseudo_gt/index.json` holds them with the problems ({"images", "problems"}) and is written after every image
    file, so its presence means the set is complete (a rerun reads it back, and its problems into `problems`).
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
        try:
            gan_sr, mse_sr, mask = models.detect_pair(lr)
        except ValueError as error:  # a check of detection itself, e.g. images smaller than its windows
            refused.append(f"{name}: {error}; skipped")
            continue
        if not mask.any():
            continue
        if jax.process_index() == 0:
            write_image(os.path.join(out_dir, "pseudo_gt", f"{name}.png"), pseudo_target(gan_sr, mse_sr, mask, feather))
            write_image(os.path.join(out_dir, "masks", f"{name}.png"), mask)
        ratio = partner_blockiness(gan_sr, mse_sr, mask, gan_sr.shape[0] // lr.shape[0])
        records.append({"name": name, "artifact_fraction": float(mask.mean()),
                        "partner_blockiness": ratio if np.isfinite(ratio) else None})  # JSON has no nan
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
    results, the detection of the original GAN-SR model (SR results, masks), the detector, and how `fidelity`
    against the HR images is measured (`crop_border`, `lpips_fn`)."""

    items: list[dict]
    mse_results: list[np.ndarray]
    before: tuple[list[np.ndarray], list[np.ndarray]]
    detect: Detector
    crop_border: int = 0
    lpips_fn: Callable | None = None

    @classmethod
    def prepare(cls, lr_images, mask_dir: str | None, models: DeSRAModels, problems: list[str],
                hr_dir: str | None = None, crop_border: int = 0, lpips_fn=None) -> "HeldOut":
        """From (name, LR) `lr_images`, the folder of their labels (`find_mask` by name; None: none) and the folder
        of their HR images (`held_out_hr`; None: none). An image that detection refuses (smaller than its
        windows) is a line in `problems` and left out."""
        items, mse_results, results, masks = [], [], [], []
        for name, lr in lr_images:
            try:
                gan_sr, mse_sr, mask = models.detect_pair(lr)
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
        return cls(items, mse_results, (results, masks), models.detect, crop_border, lpips_fn)

    def detect_with(self, gan: Upscaler) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(SR results, artifact masks) of `gan` on the held-out images."""
        results = [gan(item["lr"]) for item in self.items]
        return results, [self.detect(sr, mse_sr) for sr, mse_sr in zip(results, self.mse_results)]

    def evaluate(self, after) -> tuple[dict, dict]:
        """`compare` of the original model's detection with `after` (SR results, masks) of a fine-tuned one,
        against the labels and HR images the items have."""
        labels = [read_mask(item["gt_path"], shape=mask.shape) if item["gt_path"] else None
                  for item, mask in zip(self.items, self.before[1])]
        return compare(self.before, after, [item["name"] for item in self.items], labels,
                       [item.get("hr") for item in self.items], self.crop_border, self.lpips_fn)


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
