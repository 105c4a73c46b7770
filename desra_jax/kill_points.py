"""Deterministic kill points: named moments at which a test can SIGKILL the running process.

A fault-injection test sets ``DESRA_JAX_KILL_AT`` in a subprocess's environment, and the process kills itself
with SIGKILL (as ``kill -9`` would: no handler, no flush, no cleanup) the moment it reaches the named point::

    DESRA_JAX_KILL_AT='save_model:discriminator'      the first time that point is reached
    DESRA_JAX_KILL_AT='write:eval_*.json@2'           the second time any matching point is reached

The name is matched against each point with ``fnmatch`` (``*``, ``?``, ``[...]``); ``@N`` (N >= 1) counts the
matching points this process has reached and kills at the N-th. A named moment, unlike a timed ``kill -9``,
repeats exactly from run to run. Just before the kill, one line ``desra_jax: killed at <point>`` goes straight
to the stderr file descriptor, so a test can tell where the process died. With the variable unset (normal use),
a kill point costs one lookup in ``os.environ``.

The points, each named after what it guards (``<name>`` is a file's or a directory's base name):

==================================  =========================================================================
``write:<name>``                    ``image_io.write_bytes_atomic``: the temporary file is complete and synced,
                                    not yet renamed to ``<name>`` (every image, JSON and CSV output, and
                                    ``metrics.jsonl`` when a resumed run rewrites it)
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

import fnmatch
import os
import signal

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
