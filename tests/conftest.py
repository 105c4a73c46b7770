"""Shared fixtures: the bundled photographs as small NHWC crops, and torch set to be deterministic."""

import os
import tempfile

import jax
import numpy as np
import pytest

from desra_jax.data.bundled import bundled_photograph

# One persistent XLA compilation cache for the whole run: the tiny models are compiled by many tests, in the
# pytest-xdist workers and in the subprocesses of the end-to-end tests (which inherit the variable). Entries are
# keyed by the program, the compiler flags and the jax version, so a stale one is never used.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "desra_jax_tests_xla_cache"))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
# XLA:CPU without its backend optimisations: the same functions, compiled in about half the time, which is most of
# the tests' time (the whole tiny ragp_fft job: 125 s -> 113 s, same validation PSNR to 0.02 dB). Benchmarks and
# users compile optimised code. Subprocess tests that set XLA_FLAGS append to this value (`xla_flags`).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def pytest_collection_modifyitems(items):
    """Runs the slow end-to-end tests first: under pytest-xdist (handing out tests one at a time, see
    pyproject.toml) they then run beside the short ones instead of alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def xla_flags(*flags: str) -> str:
    """XLA_FLAGS for a subprocess: the tests' flags plus ``flags``."""
    return " ".join((os.environ["XLA_FLAGS"], *flags))


def photo_crop(name: str, size: tuple[int, int], top: int = 0, left: int = 0) -> np.ndarray:
    """A (1, h, w, 3) float32 crop in [0, 1] of a bundled photograph."""
    image = bundled_photograph(name)
    h, w = size
    crop = image[top : top + h, left : left + w]
    assert crop.shape == (h, w, 3), f"{name} is too small for a {size} crop at ({top}, {left})"
    return crop[None]


def write_derained_pairs(root, size: int) -> None:
    """``root/gt/norain-00k.png`` and ``root/pred/rain-00k.png`` for k = 1, 2: two photograph crops (size, size),
    the predictions with Gaussian noise of sigma 0.05 (seed 0)."""
    from desra_jax.data.image_io import write_image

    rng = np.random.default_rng(0)
    for name, photo in (("rain-001", "astronaut"), ("rain-002", "coffee")):
        clean = photo_crop(photo, (size, size), 60, 120)[0]
        write_image(root / "gt" / f"no{name}.png", clean)
        write_image(root / "pred" / f"{name}.png", np.clip(clean + 0.05 * rng.normal(size=clean.shape), 0, 1))


@pytest.fixture
def photo_batch():
    """Two crops of different photographs, (2, h, w, 3) float32 in [0, 1]: ``photo_batch(h, w)``."""

    def make(h: int, w: int) -> np.ndarray:
        return np.concatenate([photo_crop("astronaut", (h, w), 100, 150), photo_crop("coffee", (h, w), 50, 200)])

    return make


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keeps torch (when a test imports it) from oversubscribing the CPU that JAX also uses."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(2)
    yield
