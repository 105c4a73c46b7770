"""The project's one image reader and writer: files <-> float32 RGB arrays in [0, 1], (H, W, 3); and the one
atomic writer every output goes through (images, JSON, CSV).

cv2 reads and writes BGR; the conversion to RGB happens here, once, so nothing else in the project sees BGR.
Files are decoded from bytes (``np.fromfile`` + ``cv2.imdecode``) so that paths with non-ASCII characters work
on every platform, and written through a temporary file and ``os.replace`` so that a reader never sees a
half-written file, even when the writer is killed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

#: File name extensions (lower case) that ``list_images`` picks up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_ALPHA_POLICIES = ("error", "drop")
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def read_image(path: str | os.PathLike, alpha: str = "error") -> np.ndarray:
    """Reads an image file as float32 RGB in [0, 1], shape (H, W, 3) (see ``decode_image``).

    Raises:
      ValueError naming the file: unreadable or missing file, or any problem ``decode_image`` names.
    """
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ValueError(f"{path}: cannot read the file ({error.strerror or error})") from error
    return decode_image(encoded, str(path), alpha)


def decode_image(encoded: bytes | np.ndarray, name: str, alpha: str = "error") -> np.ndarray:
    """The bytes of an image file (PNG, JPEG, ...) as float32 RGB in [0, 1], shape (H, W, 3).

    8-bit files are divided by 255 and 16-bit files by 65535 (both are exact scalings, nothing is clipped).
    Grayscale files are repeated into three channels. A fourth (alpha) channel follows ``alpha``: ``'error'``
    (default) raises, because compositing over an arbitrary background would silently change what a detector or
    a loss sees; ``'drop'`` ignores it.

    Raises:
      ValueError naming ``name`` (a file path, or where the bytes came from): undecodable bytes, alpha channel
      with ``alpha='error'``, a sample type other than 8/16-bit unsigned (e.g. float TIFF/EXR), an unexpected
      channel count.
    """
    if alpha not in _ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {_ALPHA_POLICIES}, got {alpha!r}")
    encoded = np.frombuffer(encoded, dtype=np.uint8)
    image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    if image is None:
        raise ValueError(f"{name}: not a readable image file")
    if image.dtype not in _FULL_SCALE:
        raise ValueError(f"{name}: expected 8-bit or 16-bit samples, got {image.dtype}")
    scale = _FULL_SCALE[image.dtype]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        rgb = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        if alpha == "error":
            raise ValueError(f"{name}: has an alpha channel (shape {image.shape}); expected an RGB image")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"{name}: expected 1, 3 or 4 channels, got shape {image.shape}")
    return rgb.astype(np.float32) / np.float32(scale)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    Creates the parent folders. Either the complete new file or the previous one is visible, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def output_folder(path: str | os.PathLike) -> Path:
    """Creates the folder ``path`` for a command's outputs, before any work: ValueError naming it when it is a
    file or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder; give an output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{path}: cannot create the output folder ({error.strerror})") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: the output folder is not writable")
    return path


def write_json(path: str | os.PathLike, value) -> None:
    """Writes ``value`` as indented JSON to ``path``, atomically (``write_bytes_atomic``)."""
    write_bytes_atomic(path, json.dumps(value, indent=2).encode("utf-8"))


def write_csv(path: str | os.PathLike, records: list[dict], columns: list[str]) -> None:
    """Writes the ``columns`` of ``records`` (one row each, other keys ignored) as CSV to ``path``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def encode_png(image: np.ndarray, name: str = "image") -> bytes:
    """An (H, W, 3) RGB or (H, W) gray image, float in [0, 1] or bool, as the bytes of an 8-bit PNG file.

    Floats are clipped to [0, 1] and rounded to the nearest 8-bit level; ``True`` becomes 255. ``name`` only
    appears in error messages.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"{name}: expected an (H, W, 3) RGB or (H, W) gray image, got shape {image.shape}")
    if image.dtype == bool:
        levels = image.astype(np.uint8) * 255
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{name}: image contains NaN or infinite values")
        levels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"{name}: expected a float image in [0, 1] or a bool mask, got {image.dtype}")
    if levels.ndim == 3:
        levels = cv2.cvtColor(levels, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", levels)
    if not ok:
        raise ValueError(f"{name}: PNG encoding failed for shape {image.shape}")
    return encoded.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes an (H, W, 3) RGB float image in [0, 1] (or an (H, W) gray image / bool mask) as an 8-bit PNG.

    The file appears atomically and its parent folders are created (see ``write_bytes_atomic``).
    """
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"{path}: write_image writes PNG files; expected a .png name")
    write_bytes_atomic(path, encode_png(image, name=str(path)))


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Sorted paths (relative to ``folder``, with '/' separators) of the image files in ``folder``.

    Extensions are matched case-insensitively against ``IMAGE_EXTENSIONS``; hidden files (such as the temporary
    files of ``write_bytes_atomic``) are skipped. Raises ValueError naming a missing folder or one without images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder}: not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = sorted(
        path.relative_to(root).as_posix()
        for path in candidates
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )
    if not found:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return found
