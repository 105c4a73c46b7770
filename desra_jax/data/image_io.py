"""The project's one image reader and writer: files <-> float32 RGB arrays in [0, 1], (H, W, 3) (gray, RGBA and
16-bit files too), and the listing of a folder's images.

cv2 reads and writes BGR; the conversion to RGB happens here, once, so nothing else in the project sees BGR.
Files are decoded from bytes (``np.fromfile`` + ``cv2.imdecode``) so that paths with non-ASCII characters work
on every platform, and written through the durable-file layer (`desra_jax.files.write_bytes_atomic`), so that a
reader never sees a half-written image.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import cv2
import numpy as np

from desra_jax.data.image_header import HEADER_BYTES, MAX_PIXELS, check_header, orient, read_checked, read_header
from desra_jax.files import write_bytes_atomic

#: File name extensions (lower case) that ``list_images`` picks up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_ALPHA_POLICIES = ("error", "drop", "keep")
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """What an image file holds: ``bit_depth`` 8 or 16; ``channels`` 1 (gray), 3 (RGB) or 4 (RGBA; cv2 reads
    gray + alpha as four channels too)."""

    bit_depth: int
    channels: int

    @property
    def gray(self) -> bool:
        return self.channels == 1

    @property
    def alpha(self) -> bool:
        return self.channels == 4


def read_image(path: str | os.PathLike, alpha: str = "error", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Reads an image file as float32 RGB in [0, 1], shape (H, W, 3) (see ``decode_image``).

    A file that declares more than ``max_pixels`` pixels, or is larger than such an image can be, is refused
    before it is read or decoded (``image_header.read_checked``).

    Raises:
      ValueError naming the file: unreadable or missing file, over the limit, or any problem ``decode_image``
      names.
    """
    return read_image_and_format(path, alpha, max_pixels)[0]


def read_image_and_format(path: str | os.PathLike, alpha: str = "error",
                          max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, ImageFormat]:
    """``read_image`` and the file's :class:`ImageFormat`, for a writer that gives back what it was given (gray
    stays gray, 16 bits stay 16 bits)."""
    try:
        encoded = read_checked(path, max_pixels)
    except OSError as error:
        if os.path.islink(path) and not os.path.exists(path):
            raise ValueError(f"{path}: a broken symbolic link (to {os.readlink(path)})") from error
        raise ValueError(f"{path}: cannot read the file ({error.strerror or error})") from error
    return decode_image_and_format(encoded, str(path), alpha, max_pixels)


def decode_image(encoded: bytes | np.ndarray, name: str, alpha: str = "error",
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The bytes of an image file (PNG, JPEG, ...) as float32 RGB in [0, 1], shape (H, W, 3), turned as a JPEG's
    EXIF orientation says it is displayed.

    8-bit files are divided by 255 and 16-bit files by 65535 (both are exact scalings, nothing is clipped).
    Grayscale files are repeated into three channels. A fourth (alpha) channel follows ``alpha``: ``'error'``
    (default) raises, because compositing over an arbitrary background would silently change what a detector or
    a loss sees; ``'drop'`` ignores it; ``'keep'`` returns it as a fourth channel, (H, W, 4) RGBA.

    Raises:
      ValueError naming ``name`` (a file path, or where the bytes came from): undecodable bytes, a header
      declaring more than ``max_pixels`` pixels, alpha channel with ``alpha='error'``, a sample type other than
      8/16-bit unsigned (e.g. float TIFF/EXR), an unexpected channel count.
    """
    return decode_image_and_format(encoded, name, alpha, max_pixels)[0]


def decode_image_and_format(encoded: bytes | np.ndarray, name: str, alpha: str = "error",
                            max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, ImageFormat]:
    """``decode_image`` and the :class:`ImageFormat` of the bytes."""
    if alpha not in _ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {_ALPHA_POLICIES}, got {alpha!r}")
    encoded = np.frombuffer(encoded, dtype=np.uint8)
    header = read_header(io.BytesIO(encoded[:HEADER_BYTES]))
    check_header(header, name, max_pixels)
    try:  # IMREAD_UNCHANGED keeps depth and alpha, and ignores EXIF: the orientation is applied below
        image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    except cv2.error as error:  # e.g. more pixels than OpenCV's own limit
        raise ValueError(f"{name}: not a readable image file ({str(error).strip().splitlines()[-1][:120]})") from None
    if image is None:
        raise ValueError(f"{name}: not a readable image file")
    image = orient(image, header.orientation)
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
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if alpha == "keep" else cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"{name}: expected 1, 3 or 4 channels, got shape {image.shape}")
    found = ImageFormat(bit_depth=8 * image.dtype.itemsize, channels=1 if image.ndim == 2 else image.shape[2])
    return rgb.astype(np.float32) / np.float32(scale), found


#: File name extensions (lower case) ``write_image`` writes, with the bit depths each can hold.
WRITABLE_DEPTHS = {".png": (8, 16), ".jpg": (8,), ".jpeg": (8,), ".tif": (8, 16), ".tiff": (8, 16)}


def encode_image(image: np.ndarray, suffix: str = ".png", bit_depth: int = 8, name: str = "image") -> bytes:
    """An (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA image, float in [0, 1] or bool, as the bytes of a file of
    type ``suffix`` (one of :data:`WRITABLE_DEPTHS`) with ``bit_depth`` bits per sample.

    Floats are clipped to [0, 1] and rounded to the nearest level (of 255 or 65535); ``True`` is full scale.
    JPEG holds neither alpha nor 16 bits: asking for either is an error, not a silent conversion. ``name`` only
    appears in error messages.
    """
    suffix = suffix.lower()
    if suffix not in WRITABLE_DEPTHS:
        raise ValueError(f"{name}: cannot write {suffix!r} files; expected one of {', '.join(WRITABLE_DEPTHS)}")
    if bit_depth not in WRITABLE_DEPTHS[suffix]:
        raise ValueError(f"{name}: {suffix} files hold {' or '.join(map(str, WRITABLE_DEPTHS[suffix]))}-bit "
                         f"samples, not {bit_depth}-bit")
    image = np.asarray(image)
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if channels not in (1, 3, 4) or (channels == 4 and suffix in (".jpg", ".jpeg")):
        allowed = "(H, W) gray or (H, W, 3) RGB" + ("" if suffix in (".jpg", ".jpeg") else " or (H, W, 4) RGBA")
        raise ValueError(f"{name}: expected an {allowed} image for {suffix}, got shape {image.shape}")
    full_scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    if image.dtype == bool:
        levels = image.astype(dtype) * dtype(full_scale)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{name}: image contains NaN or infinite values")
        levels = _to_levels(image, full_scale, dtype)
    else:
        raise ValueError(f"{name}: expected a float image in [0, 1] or a bool mask, got {image.dtype}")
    if channels > 1:
        levels = cv2.cvtColor(levels, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(suffix, levels)
    if not ok:
        raise ValueError(f"{name}: {suffix} encoding failed for shape {image.shape}")
    return encoded.tobytes()


def encode_png(image: np.ndarray, name: str = "image") -> bytes:
    """An (H, W, 3) RGB or (H, W) gray image, float in [0, 1] or bool, as the bytes of an 8-bit PNG file
    (``encode_image``)."""
    return encode_image(image, ".png", 8, name)


def _to_levels(image: np.ndarray, full_scale: float, dtype) -> np.ndarray:
    """``round(clip(image, 0, 1) * full_scale)`` as ``dtype``, 256 rows at a time: the float temporaries of a
    large result (805 MB for an 8192^2 RGB float32 image) are never made whole."""
    levels = np.empty(image.shape, dtype)
    for top in range(0, image.shape[0], 256):
        levels[top : top + 256] = np.round(np.clip(image[top : top + 256], 0.0, 1.0) * full_scale)
    return levels


def write_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8) -> None:
    """Writes a gray, RGB or RGBA float image in [0, 1] (or a bool mask) with ``bit_depth`` bits per sample, as
    the file type its suffix names (PNG, JPEG, TIFF: ``encode_image``).

    The file appears atomically and its parent folders are created (`desra_jax.files.write_bytes_atomic`).
    """
    write_bytes_atomic(path, encode_image(image, Path(path).suffix, bit_depth, name=str(path)))


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Sorted paths (relative to ``folder``, with '/' separators) of the image files in ``folder``.

    Extensions are matched case-insensitively against ``IMAGE_EXTENSIONS``; hidden files (such as the temporary
    files of ``write_bytes_atomic``) are skipped. Symbolic links are followed, to files and to folders alike (as
    BasicSR's ``scandir`` does: a dataset assembled from links reads like a copied one), and an image is listed
    under the link's name. A broken link named like an image is listed, so that reading it names it (see
    ``read_image``) beside the other unreadable files.

    Raises:
      ValueError naming the entry: a missing folder or one without images; a subfolder that cannot be read; a
      link to a folder that contains it (a loop, which would list the same images without end); a broken link
      that is not named like an image (it may have been a folder of images).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder}: not a folder")
    found = sorted(_image_files(str(root), "", {_identity(str(root))}, recursive))
    if not found:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return found


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _image_files(folder: str, prefix: str, ancestors: set[tuple[int, int]], recursive: bool):
    """Yields ``prefix + name`` of the images under ``folder``; ``ancestors`` are the folders above, by inode."""
    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        raise ValueError(f"{folder}: cannot read the folder ({error.strerror or error})") from error
    for entry in entries:
        is_image = entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".")
        if entry.is_symlink() and not os.path.exists(entry.path):
            if is_image:
                yield prefix + entry.name
                continue
            raise ValueError(f"{entry.path}: a broken symbolic link (to {os.readlink(entry.path)})")
        if entry.is_dir():
            if not recursive:
                continue
            identity = _identity(entry.path)
            if identity in ancestors:
                raise ValueError(
                    f"{entry.path}: a symbolic link to {os.path.realpath(entry.path)}, a folder that contains it "
                    "(a loop); remove the link or point it elsewhere"
                )
            yield from _image_files(entry.path, f"{prefix}{entry.name}/", ancestors | {identity}, recursive)
        elif is_image and entry.is_file():
            yield prefix + entry.name
