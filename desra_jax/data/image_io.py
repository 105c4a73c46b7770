"""The project's one image reader and writer: files <-> float32 RGB arrays in [0, 1], (H, W, 3) (gray, RGBA and
16-bit files too); and the one atomic writer every output goes through (images, JSON, CSV).

cv2 reads and writes BGR; the conversion to RGB happens here, once, so nothing else in the project sees BGR.
Files are decoded from bytes (``np.fromfile`` + ``cv2.imdecode``) so that paths with non-ASCII characters work
on every platform, and written through a synced temporary file and ``os.replace`` so that a reader never sees a
half-written file, even when the writer is killed or the power fails.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import socket
from pathlib import Path

import cv2
import numpy as np

from desra_jax.data.image_header import HEADER_BYTES, MAX_PIXELS, check_header, orient, read_checked, read_header
from desra_jax.kill_points import kill_point

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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically: a temporary sibling, synced to disk, then ``os.replace``.

    Creates the parent folders (``make_folders``). Either the complete new file or the previous one is visible,
    never a part: after a kill (``kill -9``) at any moment, and after a power loss too, because the file is fsynced
    before the rename and its folder after it (without those, a journaling filesystem may replay the rename of a
    file whose data never reached the disk: an empty or zero-filled file under the final name). The file's mode
    follows the umask (and a default ACL) like any other program's new file, e.g. 0644 under umask 022.

    The temporary sibling ``.<name>.<pid>-<host>-<random>.tmp`` names its writer; the first write into a folder
    in each process removes those left by writers on this machine that are no longer running (killed), and keeps
    the rest (a live writer's, or another machine's on a shared filesystem). Kill point ``write:<name>``
    (``desra_jax.kill_points``): the temporary file is complete, not yet renamed.

    Raises:
      OSError naming ``path`` when the file cannot be written (a full disk, a read-only folder, ...); the
      temporary file is removed and a previous file at ``path`` is left as it was.
    """
    path = Path(path)
    make_folders(path.parent)
    _sweep_once(path.parent)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        kill_point(f"write:{path.name}")
        os.replace(temporary, path)
    except BaseException as error:
        os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    sync_directory(path.parent)


def make_folders(folder: str | os.PathLike) -> None:
    """Creates ``folder`` and its missing parents, syncing each folder that one was created in, so that a folder
    made for a file survives a power loss with the file. NotADirectoryError naming the path where a file is."""
    folder, missing = Path(folder), []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            if not new.is_dir():  # a file, not a folder made by another writer meanwhile
                raise NotADirectoryError(errno.ENOTDIR, "not a folder (a file is there)", str(new)) from None
        sync_directory(new.parent)


def sync_directory(folder: str | os.PathLike) -> None:
    """fsyncs a folder, so that the files renamed into it or removed from it stay so after a power loss.

    A no-op on Windows (a folder cannot be opened there) and on filesystems that cannot sync a folder (EINVAL).
    """
    if os.name == "nt":
        return
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(handle)


#: This machine, as the first 8 hex digits of the SHA-1 of its host name (a name of any characters, made short).
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMPORARY = re.compile(r"^\..+\.(?P<writer>\d+-[0-9a-f]{8})-[0-9a-f]{8}\.tmp$")
_swept: set[str] = set()


def writer_tag() -> str:
    """``<pid>-<host>`` of this process, recorded in the names of its temporary files and staged models."""
    return f"{os.getpid()}-{_HOST}"


def writer_is_gone(tag: str) -> bool:
    """True when the ``<pid>-<host>`` writer ``tag`` ran on this machine and no process with its pid runs now.

    A writer on another machine (a shared filesystem) cannot be checked and counts as running. A pid that was
    reused by an unrelated process also counts as running: a leftover is kept rather than a live file removed.
    """
    pid, _, host = tag.partition("-")
    if host != _HOST:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def _create_temporary(path: Path) -> tuple[int, str]:
    """Opens a new hidden sibling of ``path`` for writing; mode 0666 less the umask, applied by the kernel
    (``tempfile.mkstemp`` would make it 0600, and ``os.replace`` keeps the mode)."""
    while True:
        temporary = str(path.parent / f".{path.name}.{writer_tag()}-{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def _sweep_once(folder: Path) -> None:
    """Removes the temporary files of killed writers from ``folder``, once per process and folder."""
    key = os.path.abspath(folder)
    if key in _swept:
        return
    _swept.add(key)
    for entry in os.scandir(folder):
        match = _TEMPORARY.match(entry.name)
        if match and writer_is_gone(match["writer"]):
            with contextlib.suppress(FileNotFoundError):  # another process swept it first
                os.unlink(entry.path)


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
        levels = np.round(np.clip(image, 0.0, 1.0) * full_scale).astype(dtype)
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


def write_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8) -> None:
    """Writes a gray, RGB or RGBA float image in [0, 1] (or a bool mask) with ``bit_depth`` bits per sample, as
    the file type its suffix names (PNG, JPEG, TIFF: ``encode_image``).

    The file appears atomically and its parent folders are created (see ``write_bytes_atomic``).
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
