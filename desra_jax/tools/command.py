"""What every command driver (``experiments/*.py``) does around its one library call: refuse stray arguments and
a batch size below 1, set the logging, log an error that stops everything as one line with exit status 1, and
log each problem found on the way as a warning.

Logging: warnings and the project's own messages by default; the INFO chatter of the libraries underneath
(orbax's per-step save lines, JAX's "Unable to initialize backend 'tpu'") is dropped unless ``--verbosity`` is
given, in which case absl's level applies to everything as usual. Progress bars (tqdm) are not logging.
"""

from __future__ import annotations

import logging as python_logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags, logging

from desra_jax.compilation import enable_compilation_cache

#: Folders whose modules are the project's own: their INFO messages are shown by default.
_PROJECT = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), part)
                 + os.sep for part in ("desra_jax", "experiments"))


class _ProjectInfoOnly(python_logging.Filter):
    """Passes warnings and errors from anywhere, and lower levels only from the project's own modules."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno >= python_logging.WARNING or os.path.abspath(record.pathname).startswith(_PROJECT)


def quiet_libraries() -> None:
    """Drops the libraries' INFO lines unless ``--verbosity`` was given (module doc)."""
    if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
        return
    handler = logging.get_absl_handler()
    if not any(isinstance(existing, _ProjectInfoOnly) for existing in handler.filters):
        handler.addFilter(_ProjectInfoOnly())


def run_command(argv: Sequence[str], work: Callable[[], Any], errors: tuple[type[BaseException], ...] = (ValueError,),
                batch_size: int | None = None, arguments: bool = False) -> Any | None:
    """``work()``'s result, or None after logging the error when it raises one of ``errors`` (what means that
    nothing can run: a bad option, model or output folder). Before it: app.UsageError for positional arguments
    (unless ``arguments``) and for a ``batch_size`` below 1; the logging set (`quiet_libraries`). After it: each
    of the result's ``problems`` (when it is a dict that has them) logged as a warning."""
    if len(argv) > 1 and not arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if batch_size is not None and batch_size < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {batch_size}")
    quiet_libraries()
    enable_compilation_cache()
    try:
        result = work()
    except errors as error:
        logging.error("%s", error)
        return None
    for problem in result.get("problems", ()) if isinstance(result, dict) else ():
        logging.warning("%s", problem)
    return result
