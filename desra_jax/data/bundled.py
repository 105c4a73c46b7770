"""The embedded default data: real photographs that ship inside scikit-image (no download), and the LR sets made
from them for DeSRA on a real GAN-SR model (`write_lr_sets`)."""

from __future__ import annotations

import functools
import json
import os
import zlib

import numpy as np

from desra_jax.data.image_io import write_image
from desra_jax.files import write_json

#: Colour photographs bundled with scikit-image (data.sr_pairs.bundled_split chooses which train and which validate).
PHOTOGRAPH_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
#: More photographs in scikit-image's data folder: the left view of its stereo pair, and three gray texture
#: photographs (read as RGB with equal channels). Textures are where GAN-SR models make their artifacts.
MORE_PHOTOGRAPH_NAMES = ("motorcycle", "grass", "gravel", "brick")
#: How `lr_photograph` makes an LR image: "bicubic" (MATLAB's antialiased bicubic, as DIV2K) or "realesrgan"
#: (Real-ESRGAN's second-order degradation with its released settings, one fixed draw per photograph).
LR_DEGRADATIONS = ("bicubic", "realesrgan")


def bundled_photograph(name: str) -> np.ndarray:
    """One bundled photograph (`PHOTOGRAPH_NAMES` or `MORE_PHOTOGRAPH_NAMES`) as float32 RGB in [0, 1], (H, W, 3)."""
    import skimage.data

    if name not in PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES:
        raise ValueError(f"unknown bundled photograph {name!r}; choose one of "
                         f"{', '.join(PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES)}")
    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image.astype(np.float32) / 255.0


def centre_crop(image: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """The centre `size` x `size` crop of `image` (the whole side where it is shorter), each side cut down to a
    multiple of `multiple`."""
    height, width = (min(side, size) // multiple * multiple for side in image.shape[:2])
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


def lr_photograph(name: str, hr: np.ndarray, scale: int, degradation: str, seed: int) -> np.ndarray:
    """The 8-bit LR image of photograph `name`'s HR crop `hr` (H and W divisible by `scale`) under `degradation`
    (`LR_DEGRADATIONS`). The Real-ESRGAN draw is keyed by `seed` and the name, so each photograph's LR is the same
    whatever set it is in."""
    from desra_jax.data.degradations import bicubic_downsample

    if degradation == "bicubic":
        return np.round(np.clip(bicubic_downsample(hr, scale), 0.0, 1.0) * 255.0) / np.float32(255.0)
    if degradation == "realesrgan":
        import jax

        key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode("utf-8")))
        return np.asarray(_realesrgan_degradation(scale)(key, hr[None]))[0]
    raise ValueError(f"unknown LR degradation {degradation!r}; choose one of {', '.join(LR_DEGRADATIONS)}")


@functools.cache
def _realesrgan_degradation(scale: int):
    """`realesrgan_degrade` with the released settings at `scale`, jitted: one compilation per HR shape (run op by
    op, its hundreds of small operations take four times as long on the CPU)."""
    import jax

    from desra_jax.data.realesrgan_degradation import RealESRGANSettings, realesrgan_degrade

    return jax.jit(lambda key, hr: realesrgan_degrade(key, hr, RealESRGANSettings(scale=scale)))


def write_lr_sets(root: str, sets: dict[str, tuple[str, ...]], scale: int, degradation: str, seed: int,
                  crop: int) -> dict[str, str]:
    """Writes each set {set name: photograph names} as `root/<set>_lr/<name>.png` (`lr_photograph` of the centre
    `crop` of the photograph) and `root/<set>_hr/<name>.png` (that crop), then `root/index.json` with the settings.
    A rerun with the same settings finds the index and writes nothing; other settings are refused, naming both.
    Returns {"<set>_lr": folder, "<set>_hr": folder}."""
    settings = {"sets": {k: list(v) for k, v in sets.items()}, "scale": scale, "degradation": degradation,
                "seed": seed, "crop": crop}
    folders = {f"{name}_{kind}": os.path.join(root, f"{name}_{kind}") for name in sets for kind in ("lr", "hr")}
    index = os.path.join(root, "index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            written = json.load(f)
        if written != settings:
            raise ValueError(f"{index}: the LR sets there were made with {written}, not {settings}; "
                             "use another folder")
        return folders
    for set_name, names in sets.items():
        for name in names:
            hr = centre_crop(bundled_photograph(name), crop, scale)
            write_image(os.path.join(folders[f"{set_name}_hr"], f"{name}.png"), hr)
            write_image(os.path.join(folders[f"{set_name}_lr"], f"{name}.png"),
                        lr_photograph(name, hr, scale, degradation, seed))
    write_json(index, settings)
    return folders
