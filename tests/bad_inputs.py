"""A corpus of bad (and merely unusual) input images, for every test of a command that reads images.

``write_corpus(root)`` writes two folders that pair file by file, ``root/a`` and ``root/b`` (name them with
``sides``), the way a paired command sees its inputs (GAN-SR and MSE-SR outputs, predictions and ground truth):
good photograph pairs plus one pair per case of :data:`CASES`, the case's file on side ``a`` and a good partner of
the same size on side ``b``, and the two pair-level cases of :data:`PAIR_CASES`. Each case's expected outcome is in
the table: what ``read_image`` does with the file under each alpha policy (an error naming the file with the given
text, or the image with the values the writer knows it wrote), and the size a command that needs a minimum
(SSIM's 11x11 window, reflect padding) has to check. A command run over the corpus must name every case's file in
its output and in its summary, and process the good pairs.

Two cases are hostile: a small PNG whose header declares 30000 x 30000 pixels (decoding it would take 2.7 GB) and
a sparse 6 GiB file named ``.png`` (no disk used); both are refused from their header or size, never decoded.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import photo_crop

#: Side length of the good images and of the partners; small, so a command runs over the corpus in seconds.
SIZE = 24


@dataclasses.dataclass(frozen=True)
class Case:
    """One file and what becomes of it.

    ``read_error``: the text of ``read_image(path)``'s ValueError (after the file's name), or None when the file
    is read. ``read_error_drop_alpha``: the same for ``read_image(path, alpha='drop')``. ``shape``: (H, W) of the
    image when read, for the size checks of the commands.
    """

    name: str
    file: str
    read_error: str | None
    read_error_drop_alpha: str | None
    shape: tuple[int, int] | None


NOT_AN_IMAGE = "not a readable image file"
#: The header-declared giant: 30000 x 30000 RGB, the size of the issue's decompression bomb.
GIANT_SIDE = 30000
GIANT_ERROR = f"declares {GIANT_SIDE} x {GIANT_SIDE} = {GIANT_SIDE**2:,} pixels, more than the limit of 178,956,970"
#: The sparse giant's size: 6 GiB, far over what an image within the default pixel limit can take.
SPARSE_SIZE = 6 << 30
SPARSE_ERROR = f"{SPARSE_SIZE:,} bytes, more than an image of at most 178,956,970 pixels can take"
CASES = {
    case.name: case
    for case in (
        Case("zero_bytes", "zero_bytes.png", NOT_AN_IMAGE, NOT_AN_IMAGE, None),
        Case("truncated_png", "truncated_png.png", NOT_AN_IMAGE, NOT_AN_IMAGE, None),
        Case("truncated_jpeg", "truncated_jpeg.jpg", NOT_AN_IMAGE, NOT_AN_IMAGE, None),
        Case("text_named_png", "text_named_png.png", NOT_AN_IMAGE, NOT_AN_IMAGE, None),
        Case("float32_tiff", "float32_tiff.tif", "expected 8-bit or 16-bit samples, got float32",
             "expected 8-bit or 16-bit samples, got float32", None),
        Case("rgba_png", "rgba_png.png", "has an alpha channel", None, (SIZE, SIZE)),
        Case("one_pixel", "one_pixel.png", None, None, (1, 1)),
        Case("three_by_five", "three_by_five.png", None, None, (3, 5)),
        Case("sixteen_bit_png", "sixteen_bit_png.png", None, None, (SIZE, SIZE)),
        Case("gray_png", "gray_png.png", None, None, (SIZE, SIZE)),
        Case("gray_jpeg", "gray_jpeg.jpg", None, None, (SIZE, SIZE)),
        Case("declared_giant_png", "declared_giant_png.png", GIANT_ERROR, GIANT_ERROR, None),
        Case("sparse_giant_png", "sparse_giant_png.png", SPARSE_ERROR, SPARSE_ERROR, None),
        Case("exif_rotated_jpeg", "exif_rotated_jpeg.jpg", None, None, (SIZE, SIZE - 8)),
    )
}
#: Pair-level cases: (file on side a, file on side b); None where the side has no file of that name.
PAIR_CASES = {
    "sizes_differ": ("sizes_differ.png", "sizes_differ.png"),  # SIZE x SIZE on a, SIZE x (SIZE + 8) on b
    "only_on_a": ("only_on_a.png", None),
    "only_on_b": (None, "only_on_b.png"),
}
#: Good pairs written beside the cases: the rest of the set, which a command must still process.
GOOD = ("good_1.png", "good_2.png")
#: Tolerance for the JPEG case's values: its largest decoding error is 1 level (8-bit, quality 100, measured on
#: this crop with OpenCV's libjpeg); 2 levels leave room for another libjpeg's rounding.
JPEG_TOLERANCE = 2 / 255


def _photo(height: int, width: int, top: int = 60) -> np.ndarray:
    """(height, width, 3) float32 RGB crop of a bundled photograph."""
    return photo_crop("astronaut", (height, width), top, 150)[0]


def _png(levels: np.ndarray) -> bytes:
    """PNG bytes of (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA levels (cv2 writes BGR: flipped here)."""
    if levels.ndim == 3:
        levels = cv2.cvtColor(levels, cv2.COLOR_RGB2BGR if levels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return cv2.imencode(".png", levels)[1].tobytes()


def _levels(image: np.ndarray, dtype=np.uint8) -> np.ndarray:
    return np.round(image * np.iinfo(dtype).max).astype(dtype)


def declared_giant_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 8-bit RGB pixels, holding one compressed row of zeros
    (a decoder allocates the whole image before it finds the data short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def exif_jpeg(levels: np.ndarray, orientation: int, quality: int = 100) -> bytes:
    """JPEG bytes of (H, W, 3) uint8 RGB ``levels`` as stored, with an EXIF orientation tag (PIL writes it)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, "JPEG", quality=quality, subsampling=0, exif=exif.tobytes())
    return buffer.getvalue()


def case_file(name: str) -> tuple[bytes, np.ndarray | None]:
    """The bytes of case ``name``'s file and, for a file that is read, the float32 RGB image it holds: the levels
    written divided by their full scale (for the gray JPEG, the levels before compression: see JPEG_TOLERANCE; for
    the EXIF-rotated one, cv2's decoding of the pixels as stored, turned as displayed).
    The sparse giant's bytes are its first bytes, a PNG signature; ``write_corpus`` extends it to SPARSE_SIZE."""
    photo = _photo(SIZE, SIZE)
    rgb = _levels(photo)
    if name == "zero_bytes":
        return b"", None
    if name == "declared_giant_png":
        return declared_giant_png(GIANT_SIDE, GIANT_SIDE), None
    if name == "sparse_giant_png":
        return b"\x89PNG\r\n\x1a\n", None
    if name == "exif_rotated_jpeg":  # stored landscape (SIZE - 8) x SIZE, displayed portrait: turned 90 degrees
        data = exif_jpeg(rgb[: SIZE - 8], 6)  # colour at quality 100 decodes within 4 levels: compared with the
        stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]  # pixels as stored
        return data, np.rot90(stored, -1) / np.float32(255)
    if name == "truncated_png":
        whole = _png(rgb)
        return whole[: len(whole) // 2], None
    if name == "truncated_jpeg":
        whole = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        return whole[: len(whole) // 2], None
    if name == "text_named_png":
        return b"This is a text file with an image's name.\n", None
    if name == "float32_tiff":
        return cv2.imencode(".tiff", photo[:, :, ::-1].copy())[1].tobytes(), None
    if name == "rgba_png":
        alpha = np.full((SIZE, SIZE, 1), 128, np.uint8)
        return _png(np.concatenate([rgb, alpha], axis=2)), rgb / np.float32(255)
    if name in ("one_pixel", "three_by_five"):
        small = rgb[: CASES[name].shape[0], : CASES[name].shape[1]]
        return _png(small), small / np.float32(255)
    if name == "sixteen_bit_png":
        deep = _levels(photo, np.uint16)
        return _png(deep), deep / np.float32(65535)
    gray = _levels(photo.mean(axis=2))
    three = np.repeat(gray[:, :, None], 3, axis=2) / np.float32(255)
    if name == "gray_png":
        return _png(gray), three
    if name == "gray_jpeg":
        return cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes(), three
    raise KeyError(f"no bad-input case {name!r}; cases: {', '.join(CASES)}")


def write_corpus(root, sides: tuple[str, str] = ("a", "b")) -> dict[str, tuple[Path | None, Path | None]]:
    """Writes the corpus under ``root/<side>`` (see the module docstring); returns {case or good file name:
    (path on side a, path on side b)}, None where a side has no file."""
    root = Path(root)
    a, b = (root / side for side in sides)
    a.mkdir(parents=True, exist_ok=True)
    b.mkdir(parents=True, exist_ok=True)
    written = {}

    def put(folder: Path, file: str, data: bytes) -> Path:
        (folder / file).write_bytes(data)
        return folder / file

    for i, file in enumerate(GOOD):
        photo = _png(_levels(_photo(SIZE, SIZE, top=100 + 30 * i)))
        written[file] = (put(a, file, photo), put(b, file, photo))
    for case in CASES.values():
        data, _ = case_file(case.name)
        height, width = case.shape or (SIZE, SIZE)
        written[case.name] = (put(a, case.file, data), put(b, case.file, _png(_levels(_photo(height, width)))))
        if case.name == "sparse_giant_png":
            with open(written[case.name][0], "r+b") as file:
                file.truncate(SPARSE_SIZE)
    for name, (file_a, file_b) in PAIR_CASES.items():
        width_b = SIZE + 8 if name == "sizes_differ" else SIZE
        written[name] = (file_a and put(a, file_a, _png(_levels(_photo(SIZE, SIZE)))),
                         file_b and put(b, file_b, _png(_levels(_photo(SIZE, width_b)))))
    return written
