"""The persistent compilation cache: where it lives, how it is turned off, and that a second process loads what
the first compiled."""

import json
import os
import subprocess
import sys

from desra_jax import compilation

COMPILE_TWICE = """
import json, sys
import jax, jax.numpy as jnp
from jax import monitoring
from desra_jax.compilation import enable_compilation_cache
hits = []
monitoring.register_event_listener(lambda event, **kwargs: hits.append(event) if "cache_hits" in event else None)
folder = enable_compilation_cache()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # the tiny program below compiles fast
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"folder": str(folder), "hits": len(hits)}))
"""


def run_process(environment: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", COMPILE_TWICE], check=True, capture_output=True, text=True,
                            env={**os.environ, **environment})
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_first_ones_program(tmp_path):
    environment = {compilation.ENVIRONMENT_VARIABLE: str(tmp_path / "cache")}
    first, second = run_process(environment), run_process(environment)
    assert first == {"folder": str(tmp_path / "cache"), "hits": 0}
    assert second["hits"] >= 1
    assert any((tmp_path / "cache").iterdir())


def test_the_cache_folder_follows_the_variable_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(compilation.ENVIRONMENT_VARIABLE, raising=False)
    assert compilation.cache_dir_setting() == tmp_path / "desra-jax" / "jax"
    monkeypatch.setenv(compilation.ENVIRONMENT_VARIABLE, str(tmp_path / "elsewhere"))
    assert compilation.cache_dir_setting() == tmp_path / "elsewhere"
    for off in ("off", "0", "", "None"):
        monkeypatch.setenv(compilation.ENVIRONMENT_VARIABLE, off)
        assert compilation.cache_dir_setting() is None and compilation.enable_compilation_cache() is None
