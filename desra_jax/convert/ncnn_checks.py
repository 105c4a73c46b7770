"""Bounds on what an ncnn ``.param`` may hold, checked while it is read, so that a hostile or damaged file gets one
error naming it instead of a traceback, an allocation of gigabytes or an XLA abort.

- The ``.param`` is read line by line, at most :data:`MAX_PARAM_BYTES` in all and :data:`MAX_LINE_CHARS` a line
  (ncnn itself scans a layer's type and name into 256 bytes, a value into 15), as UTF-8.
- Errors quote at most :data:`EXCERPT_CHARS` characters of any file content (a ``.param`` that is really another
  file, e.g. a link to ``/etc/passwd``, is named, not printed).
- Layer parameters the converted modules use are checked for sense: counts and kernel sizes positive, PixelShuffle
  and Interp factors in [1, :data:`MAX_FACTOR`] (a factor of 1000 asks XLA for an output of a million times the
  input's pixels).
"""

from __future__ import annotations

import math
import os

from desra_jax.convert.torch_state import ConversionError

#: The largest .param read: the SR packages' graphs are under 200 KB (realesrgan-x4plus: ~150 KB).
MAX_PARAM_BYTES = 16 << 20
#: The longest .param line read: their longest lines hold a few hundred characters.
MAX_LINE_CHARS = 4096
#: How much of a file's content an error quotes.
EXCERPT_CHARS = 60
#: The largest PixelShuffle / Interp factor accepted: SR models upscale by 1 to 8.
MAX_FACTOR = 16


def excerpt(text: str) -> str:
    """``text`` quoted, cut to :data:`EXCERPT_CHARS` characters (``...`` marks a cut)."""
    return repr(text[:EXCERPT_CHARS]) + ("..." if len(text) > EXCERPT_CHARS else "")


def read_param_lines(path: str) -> list[tuple[int, list[str]]]:
    """``(line number, tokens)`` of the non-blank lines of the ``.param`` at ``path``, within the bounds above.

    Raises:
      ConversionError naming the file (and line): larger than MAX_PARAM_BYTES, a line over MAX_LINE_CHARS, or a
      line that is not UTF-8 text.
    """
    size = os.path.getsize(path)
    if size > MAX_PARAM_BYTES:
        raise ConversionError(f"{path}: {size:,} bytes, larger than any ncnn .param this reader accepts "
                              f"({MAX_PARAM_BYTES:,} bytes); not read")
    lines = []
    with open(path, "rb") as file:
        for number in range(1, size + 2):
            raw = file.readline(MAX_LINE_CHARS + 1)
            if not raw:
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConversionError(f"{path}:{number}: not UTF-8 text, so not an ncnn .param "
                                      f"(starts {excerpt(raw.decode('utf-8', 'replace'))})") from None
            if len(raw) > MAX_LINE_CHARS and not raw.endswith(b"\n"):
                raise ConversionError(f"{path}:{number}: a line longer than {MAX_LINE_CHARS} characters, so not an "
                                      f"ncnn .param (starts {excerpt(text)})")
            if text.split():
                lines.append((number, text.split()))
    return lines


def whole_number(text: str, where: str, what: str) -> int:
    """``text`` as an int; ConversionError naming ``where`` and ``what`` when it is not one."""
    try:
        return int(text)
    except ValueError:
        raise ConversionError(f"{where}: {what} must be a whole number, got {excerpt(text)}") from None


def check_layer(layer, where: str) -> None:
    """The parameters of an ``NcnnLayer`` that shape arrays or outputs: ConversionError naming ``where``."""
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConversionError(f"{where} ({layer.name}, {layer.type}): {message}")

    def positive(key: int, default, what: str) -> None:
        value = layer.get(key, default)
        require(isinstance(value, int) and value > 0, f"{what} ({key}=) must be a positive whole number, got "
                                                      f"{excerpt(str(value))}")

    if layer.type in ("Convolution", "Deconvolution"):
        positive(0, 0, "num_output")
        positive(1, 0, "kernel_w")
        positive(11, layer.get(1, 0), "kernel_h")
        positive(6, 0, "weight_data_size")
    elif layer.type == "PixelShuffle":
        factor = layer.get(0, 1)
        require(isinstance(factor, int) and 1 <= factor <= MAX_FACTOR,
                f"upscale factor (0=) must be a whole number in [1, {MAX_FACTOR}], got {excerpt(str(factor))}")
    elif layer.type == "Interp":
        for key in (1, 2):
            scale = layer.get(key, 1.0)
            require(isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= MAX_FACTOR,
                    f"scale ({key}=) must lie in (0, {MAX_FACTOR}], got {excerpt(str(scale))}")
    elif layer.type in ("PReLU", "MemoryData"):
        for key in (0, 1, 2, 11):
            value = layer.get(key, 0)
            require(isinstance(value, int) and value >= 0, f"size ({key}=) must be a whole number >= 0, got "
                                                           f"{excerpt(str(value))}")
