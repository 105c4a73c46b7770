"""Paired LR/HR training patches made on the host from HR images: numpy, deterministic from a seed.

BasicSR's ``PairedImageDataset`` with the LR made on the fly: crop an HR patch, apply one random element of the dihedral
group (BasicSR's ``augment``), and make the LR patch with ``bicubic_downsample``, the degradation that made
DIV2K's LR images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from desra_jax.data.bundled import PHOTOGRAPH_NAMES, bundled_photograph
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.data.image_io import list_images, read_image

NamedImage = tuple[str, np.ndarray]

#: Validation photographs of the bundled split: natural RGB scenes (fur and a cup on a table, with flat and
#: textured regions, where GAN-SR artifacts show); the other bundled photographs train.
BUNDLED_VALIDATION = ("chelsea", "coffee")


def random_crop_pair(
    hr: np.ndarray, lr: np.ndarray, hr_patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned random patches of an existing HR/LR pair (BasicSR's ``paired_random_crop``).

    hr: (H, W, C), lr: (H / scale, W / scale, C). The position is drawn on the LR grid, so the HR patch starts at
    ``scale`` times it. Returns (hr_patch, hr_patch, C) and (hr_patch / scale, hr_patch / scale, C) views.
    """
    lr_patch = _lr_patch_size(hr_patch, scale)
    (hr_h, hr_w), (lr_h, lr_w) = hr.shape[:2], lr.shape[:2]
    if (hr_h, hr_w) != (lr_h * scale, lr_w * scale):
        raise ValueError(f"random_crop_pair: HR shape {hr.shape} is not {scale} times LR shape {lr.shape}")
    if min(lr_h, lr_w) < lr_patch:
        raise ValueError(f"random_crop_pair: LR shape {lr.shape} is smaller than the LR patch {lr_patch}x{lr_patch}")
    top, left = rng.integers(lr_h - lr_patch + 1), rng.integers(lr_w - lr_patch + 1)
    lr_crop = lr[top : top + lr_patch, left : left + lr_patch]
    hr_crop = hr[top * scale : (top + lr_patch) * scale, left * scale : (left + lr_patch) * scale]
    return hr_crop, lr_crop


def augment(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flips and rotation applied to every (H, W, C) image (BasicSR's ``augment``).

    Horizontal flip, vertical flip and a transpose, each with probability 1/2: BasicSR's "rot90" is the
    transpose, which with the two flips reaches all 8 rotations and reflections of the square, equally likely.
    """
    hflip, vflip, transpose = rng.random(3) < 0.5
    return [_dihedral(image, hflip, vflip, transpose) for image in images]


def _dihedral(image: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    if hflip:
        image = image[:, ::-1]
    if vflip:
        image = image[::-1]
    if transpose:
        image = image.transpose(1, 0, 2)
    return image


class BatchRows:
    """The rows of a global batch that one process makes, and the random generator of each.

    Process p of P makes the contiguous rows [p B / P, (p + 1) B / P) of the global batch of ``batch_size`` B;
    row i of step s draws from ``numpy.random.default_rng((seed, s, i))``, so a batch is the same bit for bit
    whether steps run in order, resume after a restart, or are split over hosts. ``owner`` names the sampler in
    errors.
    """

    def __init__(self, owner: str, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
        if batch_size < 1 or batch_size % process_count:
            raise ValueError(
                f"{owner}: batch_size {batch_size} is not a positive multiple of process_count {process_count}"
            )
        if not 0 <= process_index < process_count:
            raise ValueError(f"{owner}: process_index {process_index} is outside [0, {process_count})")
        if seed < 0:
            raise ValueError(f"{owner}: expected a non-negative seed, got {seed}")
        self.seed = seed
        self.local_batch_size = batch_size // process_count
        self.first_row = process_index * self.local_batch_size

    def generators(self, step: int) -> list[np.random.Generator]:
        """One generator per row of this process's slice of the batch of ``step``."""
        rows = range(self.first_row, self.first_row + self.local_batch_size)
        return [np.random.default_rng((self.seed, step, row)) for row in rows]


class PatchSampler:
    """Batches of random (LR, HR) training patches, each batch a pure function of (seed, step).

    images: HR images as float (H, W, 3) arrays or (name, array) pairs; the names appear in errors. Each sample
    picks an image uniformly (each image equally often, as an epoch of BasicSR's dataset does, whatever its
    size), a uniformly placed ``hr_patch`` square in it, and one of the 8 dihedral variants; its LR is
    ``bicubic_downsample(hr, scale)``. With ``lr_images`` (the LR partner of each image, e.g. real LR inputs and
    their DeSRA pseudo ground truth) the LR patch is instead cropped from the partner at the same place
    (``random_crop_pair``) and augmented with it. ``with_lr=False`` gives the HR patches alone, for a step that
    degrades them itself (Real-ESRGAN's on-device degradation).

    Rows and their random draws as ``BatchRows`` says; each sample's LR is computed alone, so ``batch(s)`` is a
    pure function of (seed, s, process).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | NamedImage],
        hr_patch: int,
        scale: int,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        lr_images: Sequence[np.ndarray] | None = None,
        with_lr: bool = True,
    ):
        _lr_patch_size(hr_patch, scale)
        self.rows = BatchRows("PatchSampler", batch_size, seed, process_index, process_count)
        named = [item if isinstance(item, tuple) else (f"image {i}", item) for i, item in enumerate(images)]
        if not named:
            raise ValueError("PatchSampler: no training images")
        self.names = [name for name, _ in named]
        self.images = [checked_training_image(name, image, hr_patch) for name, image in named]
        self.lr_images = None
        if lr_images is not None:
            if len(lr_images) != len(named):
                raise ValueError(f"PatchSampler: {len(lr_images)} LR images for {len(named)} HR images")
            self.lr_images = [_checked_lr_partner(name, np.asarray(lr, np.float32), hr, scale)
                              for name, lr, hr in zip(self.names, lr_images, self.images)]
        self.hr_patch, self.scale, self.with_lr = hr_patch, scale, with_lr

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of ``step``: {'lr': (b, p / scale, p / scale, 3),
        'hr': (b, p, p, 3)} float32, b = batch_size / process_count, p = hr_patch."""
        if self.lr_images is not None:
            lr, hr = zip(*(self._paired_sample(rng) for rng in self.rows.generators(step)))
            return {"lr": np.stack(lr), "hr": np.stack(hr)}
        hr = [self._hr_sample(rng) for rng in self.rows.generators(step)]
        if not self.with_lr:  # the step makes its LR (training.steps.Degradation)
            return {"hr": np.stack(hr)}
        return {
            "lr": np.stack([bicubic_downsample(patch, self.scale) for patch in hr]),
            "hr": np.stack(hr),
        }

    def _hr_sample(self, rng: np.random.Generator) -> np.ndarray:
        image = self.images[rng.integers(len(self.images))]
        top = rng.integers(image.shape[0] - self.hr_patch + 1)
        left = rng.integers(image.shape[1] - self.hr_patch + 1)
        (patch,) = augment([image[top : top + self.hr_patch, left : left + self.hr_patch]], rng)
        return np.ascontiguousarray(patch)

    def _paired_sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        index = rng.integers(len(self.images))
        hr, lr = random_crop_pair(self.images[index], self.lr_images[index], self.hr_patch, self.scale, rng)
        lr, hr = augment([lr, hr], rng)
        return np.ascontiguousarray(lr), np.ascontiguousarray(hr)


def _checked_lr_partner(name: str, lr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    if lr.ndim != 3 or lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise ValueError(f"{name}: LR partner of shape {lr.shape} is not 1/{scale} of the HR image {hr.shape}")
    return lr


def _lr_patch_size(hr_patch: int, scale: int) -> int:
    if scale < 1 or hr_patch < scale or hr_patch % scale:
        raise ValueError(f"expected an HR patch size divisible by the scale {scale}, got {hr_patch}")
    return hr_patch // scale


def checked_training_image(name: str, image: np.ndarray, patch: int, patch_name: str = "HR patch") -> np.ndarray:
    """``image`` as float32 after checking that it is an (H, W, 3) RGB image of finite values with both sides at
    least ``patch``; ValueError names ``name`` and what is wrong (``patch_name`` says which patch)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB image, got shape {image.shape}")
    if min(image.shape[:2]) < patch:
        height, width = image.shape[:2]
        raise ValueError(f"{name}: image of {height}x{width} is smaller than the {patch_name} {patch}x{patch}")
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return image


def load_folder(folder: str | os.PathLike) -> list[NamedImage]:
    """Every image in ``folder`` (recursively, sorted) as (path, float32 RGB (H, W, 3) in [0, 1])."""
    paths = [os.path.join(folder, relative) for relative in list_images(folder)]
    return [(path, read_image(path)) for path in paths]


def bundled_split() -> tuple[list[NamedImage], list[NamedImage]]:
    """(train, val) lists of (name, image) from the photographs bundled with scikit-image.

    Validation: ``BUNDLED_VALIDATION`` (chelsea, coffee); training: the other four (astronaut, rocket,
    immunohistochemistry, hubble_deep_field), in ``PHOTOGRAPH_NAMES`` order.
    """
    train = [(name, bundled_photograph(name)) for name in PHOTOGRAPH_NAMES if name not in BUNDLED_VALIDATION]
    val = [(name, bundled_photograph(name)) for name in BUNDLED_VALIDATION]
    return train, val
