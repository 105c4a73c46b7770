"""(image, artifact mask) pairs for the localizer: pairing files by name, loading them, and random training crops.

Masks are PNGs (nonzero = artifact), labelme JSON files, or the ``masks/`` folder that ``python -m
experiments.detect --gan_dir A --out_dir C`` writes: ``C/masks/<name>.png`` is the mask of ``A/<name>.<ext>``, so
the image folder is the GAN-SR folder and the mask folder is ``C`` (or ``C/masks``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from desra_jax.data.matching import images_by_name
from desra_jax.data.image_io import read_image
from desra_jax.data.masks import MASK_EXTENSIONS, find_mask, read_mask
from desra_jax.data.sr_pairs import BatchRows, augment, checked_training_image

#: (name, image float32 (H, W, 3) in [0, 1], mask bool (H, W)); the name appears in errors.
MaskPair = tuple[str, np.ndarray, np.ndarray]


def detection_masks_folder(mask_dir: str | Path) -> Path:
    """``mask_dir/masks`` when ``mask_dir`` is an output folder of experiments.detect (it holds ``summary.json``
    and ``masks/``), else ``mask_dir`` itself."""
    mask_dir = Path(mask_dir)
    if (mask_dir / "summary.json").is_file() and (mask_dir / "masks").is_dir():
        return mask_dir / "masks"
    return mask_dir


def pair_mask_files(image_dir: str | Path, mask_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, image path, mask path) for every image of ``image_dir`` (recursive, sorted), ``name`` being its
    relative path without extension and its mask ``mask_dir/<name>`` with the first of ``MASK_EXTENSIONS`` found.

    Masks without an image are ignored (a detection folder may cover more images). Raises ValueError naming the
    files when an image has no mask or two images share a name.
    """
    image_dir, mask_dir = Path(image_dir), detection_masks_folder(mask_dir)
    if not mask_dir.is_dir():
        raise ValueError(f"{mask_dir}: not a folder of masks")
    problems: list[str] = []
    images = images_by_name(image_dir, problems)
    if problems:  # no images, or two of one name: which one would the mask belong to?
        raise ValueError("; ".join(problems))
    found, missing = [], []
    for name, image_path in images.items():
        mask_path = find_mask(mask_dir, name)
        if mask_path is None:
            missing.append(f"{image_path}: no mask {mask_dir / name}{{{','.join(MASK_EXTENSIONS)}}}")
        else:
            found.append((name, image_path, mask_path))
    if missing:
        raise ValueError(f"{len(missing)} image(s) without a mask: " + "; ".join(missing[:5])
                         + ("; ..." if len(missing) > 5 else ""))
    return found


def load_mask_pairs(image_dir: str | Path, mask_dir: str | Path) -> list[MaskPair]:
    """Every (name, image, mask) of ``pair_mask_files``, read; ValueError names a mask whose size is not its
    image's, and an unreadable file."""
    pairs = []
    for _, image_path, mask_path in pair_mask_files(image_dir, mask_dir):
        image = read_image(image_path)
        pairs.append((str(image_path), image, read_mask(mask_path, shape=image.shape[:2])))
    return pairs


def _checked_pair(name: str, image: np.ndarray, mask: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask = checked_training_image(name, image, patch, "patch"), np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{name}: expected a mask of the image's size {image.shape[:2]}, got shape {mask.shape}")
    return image, mask.astype(np.float32)[..., None]


class MaskPatchSampler:
    """Batches of random (image, mask) training crops, each batch a pure function of (seed, step).

    Like ``sr_pairs.PatchSampler``: each sample picks a pair uniformly, a uniformly placed ``patch`` square in it and
    one of the 8 flips / rotations of the square (``sr_pairs.augment``, the same for image and mask), drawn as
    ``sr_pairs.BatchRows`` says; so a resumed run sees the same batches and each process makes its own rows.
    """

    def __init__(self, pairs: list[MaskPair], patch: int, batch_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1):
        self.rows = BatchRows("MaskPatchSampler", batch_size, seed, process_index, process_count)
        if not pairs:
            raise ValueError("MaskPatchSampler: no training pairs")
        self.pairs = [_checked_pair(name, image, mask, patch) for name, image, mask in pairs]
        self.patch = patch

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of ``step``: {'image': (b, p, p, 3), 'mask': (b, p, p, 1)}
        float32 (mask 0 / 1), b = batch_size / process_count, p = patch."""
        images, masks = zip(*(self._sample(rng) for rng in self.rows.generators(step)))
        return {"image": np.stack(images), "mask": np.stack(masks)}

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.pairs[rng.integers(len(self.pairs))]
        top = rng.integers(image.shape[0] - self.patch + 1)
        left = rng.integers(image.shape[1] - self.patch + 1)
        window = np.s_[top : top + self.patch, left : left + self.patch]
        return tuple(np.ascontiguousarray(a) for a in augment([image[window], mask[window]], rng))
