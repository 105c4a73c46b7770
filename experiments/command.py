"""What every command driver (``experiments/*.py``) does around its one library call: refuse stray arguments and
a batch size below 1, set the logging, log an error that stops everything as one line (exit status 1) and each
problem found on the way as a warning; and the flags that several commands share, defined once.

Logging: warnings and the project's own messages by default; the INFO chatter of the libraries underneath (orbax's
per-step save lines, JAX's "Unable to initialize backend 'tpu'") is dropped unless ``--verbosity`` is given.
"""

from __future__ import annotations

import logging as python_logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags, logging

from desra_jax.compilation import enable_compilation_cache
from desra_jax.data.ade20k import ADE20K_ADJUSTMENT_TSV
from desra_jax.data.image_header import LIMIT_OPTION, MAX_PIXELS
from desra_jax.detection.indicator import INDICATOR_ALIASES, INDICATORS
from desra_jax.detection.semantic_model import DEFAULT_SEGFORMER_SIZE, DEFAULT_SEGMENT, RESIZE_MODES, SEGMENT_CHOICES
from desra_jax.detection.sliding import WINDOW_METHODS

#: Folders whose modules are the project's own: their INFO messages are shown by default.
_PROJECT = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), part)
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
    """``work()``'s result, or None after logging the error when it raises one of ``errors`` (nothing can run: a
    bad option, model or output folder). Before it: app.UsageError for positional arguments (unless ``arguments``)
    and a ``batch_size`` below 1; the logging set. After it: the result's ``problems`` logged as warnings."""
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


def define_max_pixels_flag() -> None:
    """``--max_pixels``, the limit on an input image's declared pixels, for every command that reads images."""
    flags.DEFINE_integer(LIMIT_OPTION.lstrip("-"), MAX_PIXELS, "Refuse (by name, undecoded) images declaring more.")


def define_semantic_flags(required: bool = False) -> None:
    """``--segformer`` and the settings of the semantic adjustment (`SemanticSettings`, one name each)."""
    flags.DEFINE_string("segformer", None, "SegFormer for the semantic adjustment: a Hugging Face directory "
                        "(config.json + weights) or an mmseg checkpoint (desra_jax.convert.load_segformer).",
                        required=required)
    flags.DEFINE_enum("segment", DEFAULT_SEGMENT, list(SEGMENT_CHOICES),
                      "Which image of a pair SegFormer segments: 'gan' (default) as the authors' released detection "
                      "script does; 'mse' as the paper's text says (appendix A.2).")
    flags.DEFINE_integer("segformer_size", DEFAULT_SEGFORMER_SIZE, "SegFormer's input size (512 for the "
                         "*-512-512 models, 640 for the authors' MiT-B5 640x640); larger images are segmented in "
                         "sliding windows at their own resolution (desra_jax.detection.segment); 0: whole images.")
    flags.DEFINE_enum("segformer_resize", "auto", ["auto", *RESIZE_MODES], "How SegFormer sees an image: 'square' "
                      "(stretched to --segformer_size, sliding windows over larger ones), 'keep_ratio' (the authors' "
                      "mmseg pipeline: fit into 2048x640 keeping the aspect ratio, whole image); 'auto': keep_ratio "
                      "for an mmseg checkpoint, square for a Hugging Face one.")


def define_detection_flags() -> None:
    """The flags of `DetectionSettings` (read back with ``DetectionSettings.from_values(FLAGS.flag_values_dict())``),
    the semantic ones included."""
    flags.DEFINE_float("threshold", 0.7, "Artifact where clip(D / A, 0, 1) < threshold (eq. 9/14).")
    flags.DEFINE_integer("min_area", 4000, "Keep 8-connected regions of more than this many pixels.")
    flags.DEFINE_enum("indicator", "released", [*INDICATORS, *INDICATOR_ALIASES], "The indicator: 'released' (eq. "
                      "7 as released; also 'relative'), 'printed' (eq. 7 as printed, without C in the numerator), "
                      "'absolute', 'unnormalized' (Table 4).")
    flags.DEFINE_enum("window_method", None, list(WINDOW_METHODS), "How local windows are summed (default: the "
                      "faster on this backend).")
    define_semantic_flags()
    flags.DEFINE_string("class_adjustment", None, "With --segformer: the per-class A_k table, the authors' "
                        "'name--bin' text file, their table as TSV or a JSON from experiments.calibrate "
                        f"(default: the published ADE20K table, {ADE20K_ADJUSTMENT_TSV.name}).")


def define_distributed_flags() -> None:
    """``--distributed`` and the arguments of ``jax.distributed.initialize``."""
    flags.DEFINE_bool("distributed", False, "Multi-host: call jax.distributed.initialize(); each process takes its "
                      "share of the files.")
    flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0 (else detected).")
    flags.DEFINE_integer("num_processes", None, "With --distributed: number of processes (else auto-detected).")
    flags.DEFINE_integer("process_id", None, "With --distributed: this process's index (else auto-detected).")


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` with the flags of `define_distributed_flags` when ``--distributed``."""
    if flags.FLAGS.distributed:
        import jax
        jax.distributed.initialize(flags.FLAGS.coordinator_address, flags.FLAGS.num_processes,
                                   flags.FLAGS.process_id)
