"""What an image file declares before its pixels: its size (PNG ``IHDR``, JPEG ``SOFn``, BMP, WebP ``VP8 ``/``VP8L``/
``VP8X``, TIFF's first IFD) and a JPEG's EXIF orientation, read from the first bytes of the file without decoding.

``read_checked`` refuses a file that declares more pixels than a limit, or that is larger than an image of that
many pixels can be, before reading it: a decompression bomb (a few MB of PNG declaring 30000 x 30000) or a giant
file costs a header's read, not the gigabytes of its decoding. A format whose header is not read here (or a header
this module cannot parse) is bounded by the file-size check alone; the decoder names what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct

import numpy as np

#: Default limit on an image's pixels: Pillow's decompression-bomb limit (2**31 - 1) // 4 // 3 = 178,956,970 px
#: (a 13,377 x 13,377 square, over twice an 8K frame), which decodes to 537 MB of 8-bit RGB and 2.1 GB as float32.
MAX_PIXELS = 178_956_970
#: The most bytes a pixel of an accepted file can take: 16-bit RGBA stored uncompressed (PNG, TIFF, BMP hold less).
BYTES_PER_PIXEL = 8
#: Room for what a file holds besides its pixels (EXIF, ICC profiles, text chunks, thumbnails).
METADATA_BYTES = 16 << 20
#: Where the headers read here lie, at most: the first MiB of a file (JPEG segments before the frame hold at most
#: 64 KiB each; a TIFF whose first IFD lies further is bounded by its size only).
HEADER_BYTES = 1 << 20
#: The name under which commands take the limit (``--max_pixels``; library functions: ``max_pixels``).
LIMIT_OPTION = "--max_pixels"

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION = 256, 257, 0x0112
_TIFF_IFD_ENTRIES = 4096  # more entries than any real first IFD: a bound on what a header read costs


@dataclasses.dataclass(frozen=True)
class Header:
    """``width`` x ``height`` as the file declares them (None: not read from this format); ``orientation`` the
    EXIF orientation 1-8 (1: stored as displayed; only JPEG's is read)."""

    width: int | None = None
    height: int | None = None
    orientation: int = 1


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of at most ``max_pixels`` pixels can be (uncompressed 16-bit RGBA, metadata)."""
    return max_pixels * BYTES_PER_PIXEL + METADATA_BYTES


def read_header(stream) -> Header:
    """The :class:`Header` of the image whose bytes a seekable binary ``stream`` holds from its position 0."""
    start = stream.read(32)
    stream.seek(0)
    try:
        if start.startswith(b"\x89PNG\r\n\x1a\n") and start[12:16] == b"IHDR":
            width, height = struct.unpack(">II", start[16:24])
            return Header(width, height)
        if start.startswith(b"\xff\xd8"):
            return _jpeg_header(stream)
        if start.startswith(b"BM"):
            return _bmp_header(start)
        if start.startswith(b"RIFF") and start[8:12] == b"WEBP":
            return _webp_header(start)
        if start[:4] in (b"II*\0", b"MM\0*"):
            tags = _tiff_tags(stream, (_TIFF_WIDTH, _TIFF_HEIGHT))
            return Header(tags.get(_TIFF_WIDTH), tags.get(_TIFF_HEIGHT))
    except (struct.error, ValueError):  # a header cut short: the decoder names the file as unreadable
        pass
    return Header()


def check_header(header: Header, name: str, max_pixels: int) -> None:
    """ValueError naming ``name``, the declared size and the option when ``header`` declares over ``max_pixels``."""
    if header.width is not None and header.height is not None and header.width * header.height > max_pixels:
        raise ValueError(
            f"{name}: declares {header.width} x {header.height} = {header.width * header.height:,} pixels, more than "
            f"the limit of {max_pixels:,} (raise it with {LIMIT_OPTION})"
        )


def read_checked(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The bytes of the image file ``path`` (uint8), read only after the file's size and declared pixels are
    checked against ``max_pixels``.

    Raises:
      ValueError naming the file, its size or declared pixels, and the option: a file larger than
      :func:`max_file_bytes` or a header over the limit. OSError when the file cannot be opened or read.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_file_bytes(max_pixels):
            raise ValueError(
                f"{path}: {size:,} bytes, more than an image of at most {max_pixels:,} pixels can take "
                f"({max_file_bytes(max_pixels):,} bytes); not read (raise the limit with {LIMIT_OPTION})"
            )
        check_header(read_header(io.BytesIO(file.read(HEADER_BYTES))), str(path), max_pixels)
        file.seek(0)
        return np.frombuffer(file.read(), dtype=np.uint8)


def _jpeg_header(stream) -> Header:
    """Walks a JPEG's marker segments up to the first scan: the frame size (SOFn) and the EXIF orientation."""
    stream.seek(2)
    width = height = None
    orientation = 1
    while True:
        byte = stream.read(1)
        if not byte:
            break
        if byte != b"\xff":
            continue
        marker = stream.read(1)[0]
        if marker == 0xFF or marker in _JPEG_STANDALONE:
            if marker == 0xFF:
                stream.seek(-1, io.SEEK_CUR)  # fill bytes: the next 0xFF starts the marker
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            break
        (length,) = struct.unpack(">H", stream.read(2))
        payload = stream.read(length - 2)
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", payload[1:5])
        elif marker == 0xE1 and payload.startswith(b"Exif\0\0"):
            orientation = _tiff_tags(io.BytesIO(payload[6:]), (_TIFF_ORIENTATION,)).get(_TIFF_ORIENTATION, 1)
    return Header(width, height, orientation if 1 <= orientation <= 8 else 1)


def _bmp_header(start: bytes) -> Header:
    """BITMAPCOREHEADER (12 bytes: 16-bit sizes) or a later info header (signed 32-bit; negative height: top-down)."""
    (info_size,) = struct.unpack("<I", start[14:18])
    if info_size == 12:
        return Header(*struct.unpack("<HH", start[18:22]))
    width, height = struct.unpack("<ii", start[18:26])
    return Header(abs(width), abs(height))


def _webp_header(start: bytes) -> Header:
    """The canvas of a simple lossy (``VP8 ``), lossless (``VP8L``) or extended (``VP8X``) WebP."""
    chunk, payload = start[12:16], start[20:32]
    if chunk == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return Header(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and payload[:1] == b"\x2f":
        (bits,) = struct.unpack("<I", payload[1:5])
        return Header((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        return Header(int.from_bytes(payload[4:7], "little") + 1, int.from_bytes(payload[7:10], "little") + 1)
    return Header()


def _tiff_tags(stream, wanted: tuple[int, ...]) -> dict[int, int]:
    """The SHORT or LONG values of the ``wanted`` tags of the first IFD of TIFF-structured bytes (a TIFF file, or
    the EXIF block of a JPEG) that ``stream`` holds from position 0."""
    stream.seek(0)
    order = {b"II": "<", b"MM": ">"}.get(stream.read(2))
    if order is None:
        return {}
    _, offset = struct.unpack(order + "HI", stream.read(6))
    stream.seek(offset)
    (count,) = struct.unpack(order + "H", stream.read(2))
    entries = stream.read(12 * min(count, _TIFF_IFD_ENTRIES))
    found = {}
    for start in range(0, len(entries) - 11, 12):
        tag, kind, number = struct.unpack(order + "HHI", entries[start : start + 8])
        if tag in wanted and number == 1 and kind in (3, 4):
            code, size = ("H", 2) if kind == 3 else ("I", 4)
            found[tag] = struct.unpack(order + code, entries[start + 8 : start + 8 + size])[0]
    return found


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, ...) image as stored, turned as its EXIF ``orientation`` (1-8) says it is displayed: 2 mirrored,
    3 turned 180 degrees, 4 flipped, 5 transposed, 6 turned 90 degrees clockwise, 7 transversed, 8 turned 90
    degrees counter-clockwise (as cv2.imread's IMREAD_COLOR and image viewers show it)."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(image)
    return np.ascontiguousarray(turned)
