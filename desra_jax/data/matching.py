"""Images of several folders matched by name, and loaded in batches of one size: the pairing behind every
command that reads folders (detection, calibration, evaluation, fusion, fine-tuning, the localizer's masks).

A file's name is its path relative to its folder without the extension (``A/sub/x.png`` and ``B/sub/x.jpg`` are
both ``sub/x``), as in the authors' layout of one sub-folder per model; a caller may key files otherwise (e.g. the
deraining test sets' role marks). Problems (a folder without images, two files of one name, a file without a
partner, one that cannot be loaded) are collected as lines naming the file, so one bad file never stops a set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from desra_jax.data.image_io import list_images


def relative_name(relative: str) -> str:
    """'sub/x.png' -> 'sub/x'."""
    return str(PurePosixPath(relative).with_suffix(""))


def images_by_name(folder: str | Path, problems: list[str], key: Callable[[str], str | None] = relative_name,
                   exclude: str | Path | None = None) -> dict[str, Path]:
    """The images of ``folder`` (recursive) by ``key(relative path)``; a key of None leaves the file out, and so
    does lying inside ``exclude`` when that lies inside ``folder`` (a command's own output folder: its results are
    never read back as inputs). A second file with the same key, or a folder that cannot be listed, is a line in
    ``problems``."""
    folder = Path(folder)
    exclude = exclude if exclude is not None and inside(exclude, folder) else None
    found: dict[str, Path] = {}
    try:
        relatives = list_images(folder)
    except ValueError as error:
        problems.append(str(error))
        return found
    for relative in relatives:
        name = key(relative)
        if name is None or (exclude is not None and inside(folder / relative, exclude)):
            continue
        if name in found:
            problems.append(f"{folder / relative}: same name as {found[name]}; skipped")
        else:
            found[name] = folder / relative
    return found


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` lies inside ``folder`` (links resolved)."""
    return Path(folder).resolve() in Path(path).resolve().parents


def pair_by_name(folders: Sequence[tuple[str, str | Path]], problems: list[str],
                 keys: Sequence[Callable[[str], str | None]] | None = None,
                 exclude: str | Path | None = None) -> list[tuple[str, tuple[Path, ...]]]:
    """(name, (its file in each folder)) for every name that all ``folders`` have, sorted by name.

    folders: (role, folder) pairs, e.g. (("GAN-SR", gan_dir), ("MSE-SR", mse_dir)); the role names a folder in the
    problems. keys: one key function per folder (default ``relative_name``); exclude: a folder left out of every
    listing (`images_by_name`). A file whose name another folder lacks is a line in ``problems``: '<file>: no
    <role> file named '<name>' in <folder>'.
    """
    keys = keys or [relative_name] * len(folders)
    found = [images_by_name(folder, problems, key, exclude) for (_, folder), key in zip(folders, keys)]
    shared = set.intersection(*(set(names) for names in found))
    for names in found:
        for name in sorted(names.keys() - shared):
            missing = [f"{role} file named {name!r} in {folder}" for (role, folder), other in zip(folders, found)
                       if name not in other]
            problems.append(f"{names[name]}: no {', nor '.join(missing)}; skipped")
    return [(name, tuple(names[name] for names in found)) for name in sorted(shared)]


#: Pixels (of the first arrays) that `batches_by_size` holds loaded at once, besides the image just loaded.
MAX_HELD_PIXELS = 4 * 2**20


def batches_by_size(items: Sequence, batch_size: int, load: Callable[[object], tuple[np.ndarray, ...]],
                    problems: list[str], desc: str, max_held_pixels: int = MAX_HELD_PIXELS) -> Iterator[list[tuple]]:
    """Lists of up to ``batch_size`` (item, *load(item)), each list of one image size (that of the first array);
    a full list comes as soon as it is complete, the incomplete ones at the end, or earlier, largest first, when
    the loaded images together have more than ``max_held_pixels`` pixels (so a folder of large photographs of
    many sizes is never all in memory; one image above it comes alone). An item whose ``load`` raises ValueError
    becomes a line in ``problems``. Shows a progress bar named ``desc``."""
    pending = defaultdict(list)

    def pixels(shape: tuple[int, ...]) -> int:
        return len(pending[shape]) * shape[0] * shape[1]

    for item in tqdm(items, desc=desc, unit="image"):
        try:
            arrays = load(item)
        except ValueError as error:
            problems.append(f"{error}; skipped")
            continue
        shape = arrays[0].shape
        pending[shape].append((item, *arrays))
        if len(pending[shape]) == batch_size:
            yield pending.pop(shape)
        while pending and sum(map(pixels, pending)) > max_held_pixels:
            yield pending.pop(max(pending, key=pixels))
    yield from pending.values()


def stack_padded(images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(batch_size, ...) stack of ``images``, a short list padded by repeating its last image, so that each image
    size compiles once; the caller drops (or ignores) the rows past ``len(images)``."""
    return np.stack(images + [images[-1]] * (batch_size - len(images)))
