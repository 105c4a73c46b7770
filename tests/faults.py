"""Fault injection for the end-to-end tests: run a command in a subprocess, SIGKILL it at a named kill point
(``desra_jax.files``), run it again, and require the result of an uninterrupted run.

    straight = run_to_end(command(out_a))
    run_killed(command(out_b), "save_model:model")        # dies there, as under kill -9
    run_to_end(command(out_b))                            # the rerun (a resume) finishes the job
    assert_same_results(out_a, out_b)                     # same files, same bytes, no leftovers

Results are compared as a user would compare them: the same relative files; images and other files byte for
byte; JSON and JSONL records equal except timing fields (``is_timing_key``) and the two roots' own paths; model
directories (those holding ``model.json``) by their module config and every variable exactly, since orbax names
its files at random. Leftovers are the hidden temporaries of an interrupted write: ``.<name>.<...>.tmp`` of
``write_bytes_atomic`` and ``.<name>.partial-*`` of ``save_model``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from desra_jax.files import KILL_AT, parse_kill_at
from desra_jax.models.directory import CONFIG_FILE, load_model, module_config

REPO = Path(__file__).resolve().parent.parent
KILLED_AT = "desra_jax: killed at "
#: Relative paths (fnmatch) that differ between two runs of the same job by design: TensorBoard event files
#: carry the host name and the wall-clock time in their names and records.
IGNORED = ("tensorboard/*", "*/tensorboard/*")


def python_module(module: str, *args) -> list[str]:
    """``[python, -m, module, *args]`` with this interpreter, e.g. ``python_module("experiments.convert", ...)``."""
    return [sys.executable, "-m", module, *map(str, args)]


def _environment(env: dict[str, str] | None, kill_at: str | None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != KILL_AT}
    environment.update(env or {})
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if kill_at is not None:
        environment[KILL_AT] = kill_at
    return environment


def _run(cmd, env, cwd, timeout) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(map(str, cmd)), cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def compilation_cache(folder) -> dict[str, str]:
    """Environment for JAX's persistent compilation cache in ``folder``, for the runs of one job: each run after the
    first loads the compiled steps instead of compiling them again (the same executables, so the same numbers)."""
    return {"JAX_COMPILATION_CACHE_DIR": str(folder), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_to_end(cmd, env: dict[str, str] | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``cmd`` with no kill point set and requires exit status 0; returns the finished process."""
    result = _run(cmd, _environment(env, None), cwd, timeout)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def run_killed(
    cmd, kill_at: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Runs ``cmd`` with ``DESRA_JAX_KILL_AT=kill_at`` and requires that it died of SIGKILL at a point matching
    ``kill_at``; returns the process, whose stderr ends with ``desra_jax: killed at <point>``."""
    result = _run(cmd, _environment(env, kill_at), cwd, timeout)
    assert result.returncode == -signal.SIGKILL, (
        f"{cmd} with {KILL_AT}={kill_at} exited {result.returncode} instead of dying at the kill point "
        f"(never reached?):\n{result.stderr[-4000:]}"
    )
    reached = [line.split(KILLED_AT, 1)[1] for line in result.stderr.splitlines() if KILLED_AT in line]
    pattern, _ = parse_kill_at(kill_at)
    assert len(reached) == 1 and fnmatch.fnmatchcase(reached[0], pattern), (reached, kill_at)
    return result


def leftovers(root) -> list[str]:
    """Relative paths under ``root`` of the hidden temporaries an interrupted atomic write leaves."""
    found = []
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            if name.startswith(".") and (name.endswith(".tmp") or ".partial-" in name):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def is_timing_key(key: str) -> bool:
    """A JSON field that measures time and so differs between runs: ``steps_per_s``, ``*_seconds``, ``*_time``."""
    return key in ("seconds", "time", "timestamp") or key.endswith(("_per_s", "_seconds", "_time", "_timestamp"))


def _comparable(value, root: str):
    """A JSON value with timing fields dropped and the result tree's own path ``root`` written as ``<root>``."""
    if isinstance(value, dict):
        return {k: _comparable(v, root) for k, v in value.items() if not is_timing_key(k)}
    if isinstance(value, list):
        return [_comparable(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<root>")
    return value


def _records(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(text)]


def _result_files(root: Path, ignored) -> tuple[set[str], set[str]]:
    """(model directories, other files) under ``root``, relative, hidden temporaries and ``ignored`` left out."""
    models, files = set(), set()
    for folder, folders, names in os.walk(root):
        relative = os.path.relpath(folder, root)
        if CONFIG_FILE in names:
            models.add(relative)
            folders[:] = []
            continue
        folders[:] = [f for f in folders if ".partial-" not in f]
        for name in names:
            path = os.path.normpath(os.path.join(relative, name))
            if not (name.startswith(".") and name.endswith(".tmp")) and not any(
                fnmatch.fnmatch(path, pattern) for pattern in ignored
            ):
                files.add(path)
    return models, files


def assert_same_results(expected, actual, ignored=IGNORED) -> None:
    """Requires the result tree ``actual`` to equal ``expected`` (see the module docstring) and to hold no
    leftovers; ``ignored`` are fnmatch patterns of relative paths not compared."""
    expected, actual = Path(expected), Path(actual)
    assert leftovers(actual) == [], f"{actual}: leftovers of an interrupted write: {leftovers(actual)}"
    expected_models, expected_files = _result_files(expected, ignored)
    actual_models, actual_files = _result_files(actual, ignored)
    assert actual_models == expected_models, f"model directories differ: {actual_models} vs {expected_models}"
    assert actual_files == expected_files, (
        f"files differ: only in {actual}: {sorted(actual_files - expected_files)}, "
        f"only in {expected}: {sorted(expected_files - actual_files)}"
    )
    for model in sorted(expected_models):
        assert_same_model(expected / model, actual / model)
    for relative in sorted(expected_files):
        a, b = expected / relative, actual / relative
        if a.suffix in (".json", ".jsonl"):
            want = _comparable(_records(a), str(expected))
            assert _comparable(_records(b), str(actual)) == want, f"{b} differs from {a}"
        else:
            assert a.read_bytes() == b.read_bytes(), f"{b} differs from {a}"


def assert_same_model(expected, actual) -> None:
    """Requires two model directories (``save_model``) to hold the same module config and the same variables:
    the same tree, dtypes and shapes, and every value exactly equal."""
    expected_module, expected_variables = load_model(expected)
    actual_module, actual_variables = load_model(actual)
    assert module_config(actual_module) == module_config(expected_module), f"{actual}: another module config"
    expected_leaves = jax.tree.flatten_with_path(expected_variables)[0]
    actual_leaves = jax.tree.flatten_with_path(actual_variables)[0]
    assert [jax.tree_util.keystr(p) for p, _ in actual_leaves] == [
        jax.tree_util.keystr(p) for p, _ in expected_leaves
    ], f"{actual}: another variable tree than {expected}"
    for (path, want), (_, got) in zip(expected_leaves, actual_leaves):
        want, got = np.asarray(want), np.asarray(got)
        assert got.dtype == want.dtype and got.shape == want.shape, (jax.tree_util.keystr(path), got.shape)
        assert np.array_equal(got, want), f"{actual}: {jax.tree_util.keystr(path)} differs from {expected}"
