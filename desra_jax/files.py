"""Durable outputs: the one atomic writer every output of the project goes through (bytes, JSON, CSV; images via
``data.image_io.write_image``; a group of files published in a fixed order), the folders they go into, sweeping
the temporaries of killed writers, output-folder checks (outputs that would land on an input or on each other;
the options record that keeps a rerun with other options from keeping old results), and the fault-injection kill
points.

A file is written to a hidden temporary sibling, synced to disk and renamed over its name (``os.replace``), so a
reader never sees a half-written file, even when the writer is killed or the power fails.

Kill points are named moments at which a test can SIGKILL the running process. A fault-injection test sets
``DESRA_JAX_KILL_AT`` in a subprocess's environment, and the process kills itself with SIGKILL (as ``kill -9``
would: no handler, no flush, no cleanup) the moment it reaches the named point::

    DESRA_JAX_KILL_AT='save_model:discriminator'      the first time that point is reached
    DESRA_JAX_KILL_AT='write:eval_*.json@2'           the second time any matching point is reached

The name is matched against each point with ``fnmatch`` (``*``, ``?``, ``[...]``); ``@N`` (N >= 1) counts the
matching points this process has reached and kills at the N-th. A named moment, unlike a timed ``kill -9``,
repeats exactly from run to run. Just before the kill, one line ``desra_jax: killed at <point>`` goes straight
to the stderr file descriptor, so a test can tell where the process died. With the variable unset (normal use),
a kill point costs one lookup in ``os.environ``.

The points, each named after what it guards (``<name>`` is a file's or a directory's base name):

==================================  =========================================================================
``write:<name>``                    ``write_files_atomic`` (every image, JSON, CSV and ncnn output, and
                                    ``metrics.jsonl`` when a resumed run rewrites it): the temporary files of
                                    the group are complete and synced, the files before ``<name>`` in the group
                                    renamed into place, ``<name>`` not yet
``append:metrics.jsonl``            ``MetricWriter.write``: one record is appended and flushed
``save_model:<name>``               ``directory.save_model``: the staged model is complete and synced, not
                                    yet moved to ``<name>``
``save_model:<name>:moved_aside``   ``directory.save_model`` replacing a model: the previous ``<name>`` is
                                    renamed aside, the new one not yet moved in
``checkpoint:<step>``               ``loop.train_loop``: the orbax save of step ``<step>`` has started (its
                                    write may be in flight), the metrics before it are synced
==================================  =========================================================================
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import hashlib
import io
import json
import os
import re
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

#: The environment variable naming the point to kill at: ``pattern`` or ``pattern@N``.
KILL_AT = "DESRA_JAX_KILL_AT"

_reached: dict[str, int] = {}


def parse_kill_at(value: str) -> tuple[str, int]:
    """``'pattern@N'`` -> ``(pattern, N)``; a value without ``@N`` means the first time (N = 1)."""
    pattern, at, count = value.rpartition("@")
    if not at:
        return value, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{KILL_AT}={value!r}: expected 'point' or 'point@N' with N >= 1")
    return pattern, int(count)


def kill_point(name: str) -> None:
    """SIGKILLs this process if ``DESRA_JAX_KILL_AT`` names ``name`` (see the module docstring); else returns."""
    value = os.environ.get(KILL_AT)
    if value is None:
        return
    pattern, count = parse_kill_at(value)
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _reached[value] = _reached.get(value, 0) + 1
    if _reached[value] == count:
        os.write(2, f"\ndesra_jax: killed at {name}\n".encode())  # on a line of its own, after a progress bar
        os.kill(os.getpid(), signal.SIGKILL)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically: a temporary sibling, synced to disk, then ``os.replace``.

    Creates the parent folders (``make_folders``). Either the complete new file or the previous one is visible,
    never a part: after a kill (``kill -9``) at any moment, and after a power loss too, because the file is fsynced
    before the rename and its folder after it (without those, a journaling filesystem may replay the rename of a
    file whose data never reached the disk: an empty or zero-filled file under the final name). The file's mode
    follows the umask (and a default ACL) like any other program's new file, e.g. 0644 under umask 022.

    The temporary sibling ``.<name>.<pid>-<host>-<random>.tmp`` names its writer; the first write into a folder
    in each process removes those left by writers on this machine that are no longer running (killed), and keeps
    the rest (a live writer's, or another machine's on a shared filesystem). Kill point ``write:<name>``: the
    temporary file is complete, not yet renamed.

    Raises:
      OSError naming ``path`` when the file cannot be written (a full disk, a read-only folder, ...); the
      temporary file is removed and a previous file at ``path`` is left as it was.
    """
    write_files_atomic([(path, data)])


def write_files_atomic(files: Sequence[tuple[str | os.PathLike, bytes]]) -> None:
    """Publishes a group of files: every one written to its synced temporary first, then renamed into place in
    the given order. The last file of a group of several marks it complete: a previous file of that name is
    removed before the first rename, so that a reader that finds the last file finds the rest of its group, never
    a mix of two groups (an ncnn ``.bin`` and its ``.param``: ``[(bin, ...), (param, ...)]``). Each file is
    atomic as in `write_bytes_atomic`; kill point ``write:<name>`` before each rename.

    Raises:
      OSError naming the file that cannot be written; the temporaries not yet renamed are removed.
    """
    staged: list[tuple[Path, str]] = []
    current = None
    try:
        for path, data in files:
            current = Path(path)
            staged.append((current, _write_temporary(current, data)))
        mark = Path(files[-1][0]) if len(staged) > 1 else None
        if mark is not None and mark.exists():
            mark.unlink()
            sync_directory(mark.parent)
        while staged:
            current, temporary = staged[0]
            kill_point(f"write:{current.name}")
            os.replace(temporary, current)
            staged.pop(0)
            sync_directory(current.parent)
    except BaseException as error:
        for _, temporary in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None and current is not None:
            raise OSError(error.errno, error.strerror, str(current)) from error
        raise


def _write_temporary(path: Path, data: bytes) -> str:
    """A new synced temporary sibling of ``path`` holding ``data`` (parent folders made, dead writers swept)."""
    make_folders(path.parent)
    _sweep_once(path.parent)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


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


def same_path(path: str | os.PathLike) -> str:
    """``path`` as one spelling of the file it names (links resolved, case folded where the system folds it)."""
    return os.path.normcase(os.path.realpath(path))


def check_collisions(outputs: Sequence[tuple[Path, str]], inputs: Sequence[Path]) -> None:
    """Refuses, before any work, a run whose outputs would land on one of its ``inputs`` or on another of its
    outputs. ``outputs``: (path, what writes it, e.g. "the result of in/a.png"). ValueError naming both paths."""
    taken = {same_path(path): f"the input {path}" for path in inputs}
    for path, what in outputs:
        other = taken.get(same_path(path))
        if other is not None and other.startswith("the input"):
            raise ValueError(f"{path}: would be written as {what}, and is {other}; nothing was written (give "
                             "another output folder or name)")
        if other is not None:
            raise ValueError(f"{path}: would be written twice, as {other} and as {what}; nothing was written (give "
                             "another output name, e.g. a --suffix or --ext that tells them apart)")
        taken[same_path(path)] = what


def check_options_record(path: str | os.PathLike, options: dict, overwrite: bool) -> None:
    """Keeps a folder's results from mixing options: ``path`` records the ``options`` (JSON values) that shaped
    the results beside it, and is written (before any work) when absent or different. A record of other options is
    a ValueError naming each difference, unless ``overwrite`` (the caller then makes every result again)."""
    path, options = Path(path), json.loads(json.dumps(options))
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(recorded, dict):
            raise ValueError(f"expected a JSON object, got {type(recorded).__name__}")
    except FileNotFoundError:
        recorded = options
    except (OSError, ValueError) as error:  # damaged: the results beside it are of unknown options
        if not overwrite:
            raise ValueError(f"{path}: the options record cannot be read ({error}); rerun with --overwrite to "
                             "make the results again") from error
        recorded = {}
    differing = [f"{key} {recorded.get(key)!r} (now {value!r})" for key, value in options.items()
                 if recorded.get(key) != value]
    if differing and not overwrite:
        raise ValueError(f"{path.parent}: holds results made with other options: {', '.join(differing)}; rerun "
                         "with --overwrite to replace them, or give another output folder")
    if differing or not path.exists():
        write_json(path, options)
