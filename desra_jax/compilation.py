"""JAX's persistent compilation cache for the commands: a new process loads the programs an earlier one compiled
(the SR networks take tens of seconds to compile on a CPU) instead of compiling them again.

The cache lives in a user cache folder, ``$XDG_CACHE_HOME/desra-jax/jax`` (``~/.cache/desra-jax/jax``), or where
the environment variable ``DESRA_JAX_COMPILATION_CACHE`` points; set it to ``off`` (or ``0``, ``none``, empty)
to turn the cache off. Two processes may share the folder: the cache is given a size limit, which makes JAX take
a file lock around every read and write (``filelock``, installed with PyTorch and Hugging Face's libraries), so
no process reads an entry another is still writing; without ``filelock`` the cache stays off.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import jax

#: The environment variable naming the cache folder, or turning the cache off.
ENVIRONMENT_VARIABLE = "DESRA_JAX_COMPILATION_CACHE"
OFF = ("", "0", "off", "none", "false")
#: Entries beyond this many bytes evict the least recently used ones.
MAX_BYTES = 4 * 1024**3
#: Programs that compile faster than this are not worth a file.
MIN_COMPILE_SECONDS = 0.5

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/desra-jax/jax``, ``~/.cache/desra-jax/jax`` without XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "desra-jax" / "jax"


def cache_dir_setting(path: str | os.PathLike | None = None) -> Path | None:
    """The folder the cache should use: ``path`` if given, else the environment variable's, else
    `default_cache_dir`; None when the setting turns it off."""
    setting = os.fspath(path) if path is not None else os.environ.get(ENVIRONMENT_VARIABLE)
    if setting is None:
        return default_cache_dir()
    if setting.strip().lower() in OFF:
        return None
    return Path(setting).expanduser()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache in `cache_dir_setting(path)` for this process (JAX's own
    ``JAX_COMPILATION_CACHE_DIR``, when set and neither ``path`` nor ours is, stays as it is); returns the folder,
    or None when the setting is off, ``filelock`` is missing, or the folder cannot be made (a warning says which: a
    command runs without the cache rather than fail)."""
    jax_own = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if path is None and ENVIRONMENT_VARIABLE not in os.environ and jax_own:
        return Path(jax_own)  # JAX's own setting, already in force
    folder = cache_dir_setting(path)
    if folder is None:
        return None
    if importlib.util.find_spec("filelock") is None:
        _log.warning("compilation cache off: the filelock package that makes it safe to share is not installed")
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _log.warning("compilation cache off: cannot make %s (%s)", folder, error)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
