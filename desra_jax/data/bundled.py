"""The embedded default data: real RGB photographs that ship inside scikit-image (no download)."""

from __future__ import annotations

import numpy as np

#: Colour photographs bundled with scikit-image (data.pairs.bundled_split chooses which train and which validate).
PHOTOGRAPH_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def bundled_photograph(name: str) -> np.ndarray:
    """One bundled photograph as float32 RGB in [0, 1], shape (H, W, 3)."""
    import skimage.data

    if name not in PHOTOGRAPH_NAMES:
        raise ValueError(f"unknown bundled photograph {name!r}; choose one of {', '.join(PHOTOGRAPH_NAMES)}")
    image = getattr(skimage.data, name)()
    return image.astype(np.float32) / 255.0

