"""Ground-truth artifact masks: PNG images or labelme JSON annotations (the DeSRA data set was labelled with
labelme, section 4.1 of the paper) -> boolean (H, W) arrays, ``True`` = artifact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from desra_jax.data.image_io import IMAGE_EXTENSIONS, read_image

#: The extension of labelme annotation files; ``read_mask`` reads every other file as an image.
LABELME_EXTENSION = ".json"

#: Mask file extensions, tried in this order by ``find_mask``.
MASK_EXTENSIONS = (".png", LABELME_EXTENSION) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png")


def find_mask(folder: str | os.PathLike, name: str) -> Path | None:
    """The mask of the image called ``name`` (relative path without extension) in ``folder``: the first of
    ``folder/name`` + each of ``MASK_EXTENSIONS`` that exists, or None."""
    candidates = (Path(folder) / f"{name}{ext}" for ext in MASK_EXTENSIONS)
    return next((path for path in candidates if path.is_file()), None)


def _check_shape(path, mask_shape: tuple[int, int], shape: tuple[int, int] | None) -> None:
    if shape is not None and tuple(mask_shape) != tuple(shape):
        raise ValueError(f"{path}: expected a mask of size {tuple(shape)} (H, W), got {tuple(mask_shape)}")


def _draw_labelme_shape(mask: np.ndarray, points: np.ndarray, shape_type: str, path, index: int) -> None:
    """Fills one labelme shape into ``mask`` (uint8, in place); points are (x, y) pixel coordinates.

    Follows labelme's own ``shape_to_mask``: a polygon is filled with its outline, a rectangle spans its two
    corners inclusively, a circle is given by its centre and a point on its rim. Coordinates are rounded to the
    nearest pixel.
    """
    where = f"{path}: shapes[{index}] ({shape_type})"
    corners = np.round(points).astype(np.int32)
    if shape_type == "polygon":
        if len(corners) < 3:
            raise ValueError(f"{where}: a polygon needs at least 3 points, got {len(corners)}")
        cv2.fillPoly(mask, [corners.reshape(-1, 1, 2)], 1)
    elif shape_type in ("rectangle", "circle"):
        if len(corners) != 2:
            raise ValueError(f"{where}: expected 2 points, got {len(corners)}")
        if shape_type == "rectangle":
            cv2.rectangle(mask, tuple(map(int, corners[0])), tuple(map(int, corners[1])), 1, thickness=-1)
        else:
            radius = int(round(float(np.hypot(*(points[1] - points[0])))))
            cv2.circle(mask, tuple(map(int, corners[0])), radius, 1, thickness=-1)
    else:
        raise ValueError(f"{where}: only polygon, rectangle and circle shapes enclose an area")


def read_labelme_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Rasterises every shape of a labelme JSON file into one boolean (H, W) mask (labels are not told apart).

    The size comes from the file's ``imageHeight`` / ``imageWidth`` (checked against ``shape`` when given);
    ``shape`` is used when the file lacks them. Raises ValueError naming the file for malformed JSON, a missing
    ``shapes`` list, shapes without area, or a size mismatch.
    """
    try:
        annotation = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable labelme JSON file ({error})") from error
    if not isinstance(annotation, dict) or not isinstance(annotation.get("shapes"), list):
        raise ValueError(f"{path}: expected a labelme annotation with a 'shapes' list")
    if "imageHeight" in annotation and "imageWidth" in annotation:
        size = (int(annotation["imageHeight"]), int(annotation["imageWidth"]))
        _check_shape(path, size, shape)
    elif shape is not None:
        size = tuple(shape)
    else:
        raise ValueError(f"{path}: has no imageHeight/imageWidth; pass the image size as shape=(H, W)")
    mask = np.zeros(size, dtype=np.uint8)
    for index, item in enumerate(annotation["shapes"]):
        points = np.asarray(item.get("points", []), dtype=np.float64).reshape(-1, 2)
        _draw_labelme_shape(mask, points, item.get("shape_type") or "polygon", path, index)
    return mask.astype(bool)


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, artifact_value: int | None = None
              ) -> np.ndarray:
    """A ground-truth artifact mask as boolean (H, W): labelme JSON (see ``read_labelme_mask``) or an image file
    read by ``read_image``.

    ``artifact_value=None``: any nonzero pixel (in any channel) is an artifact. ``artifact_value=255``: as the
    authors' released metric scripts (TencentARC/DeSRA ``metrics/calc_*.py``) read labels, only pixels at 255 in
    every channel: they read ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, whose gray level of a colour PNG is 255
    only for white, and ``np.asarray(gt_mask / 255, dtype="int32")`` truncates every other level to 0. Another
    level v keeps the pixels at v in every channel; labelme files ignore it. ``shape`` (H, W), when given, is the
    size the mask must have (that of its image); ValueError names the file.
    """
    if artifact_value is not None and not 0 < artifact_value <= 255:
        raise ValueError(f"{path}: artifact_value must be an 8-bit level 1-255 or None, got {artifact_value}")
    if Path(path).suffix.lower() == LABELME_EXTENSION:
        return read_labelme_mask(path, shape)
    image = read_image(path, alpha="drop")
    if artifact_value is None:
        mask = image.max(axis=2) > 0
    else:
        mask = np.all(np.round(image * 255.0) == artifact_value, axis=2)
    _check_shape(path, mask.shape, shape)
    return mask
