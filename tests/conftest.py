"""Test configuration: float64 available (as in diffrax's test suite); the Monte Carlo still
runs in float32 unless a test asks for float64 explicitly; silent rank promotion is an error.

Compiled programs are kept in JAX's persistent compilation cache under the pytest cache
(``.pytest_cache/d/jax-compilation-cache``), shared with the ``jaxadv`` processes the tests start
(``JAXADV_CACHE_DIR``), so a second run of the suite skips most of XLA's work. Set
``JAXADV_CACHE_DIR=off`` to run without it (or another folder to use that one)."""

import os
import sys

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py


def pytest_configure(config):
    from jaxadv.app import compile_cache

    if "JAXADV_CACHE_DIR" not in os.environ:
        cache = getattr(config, "cache", None)
        path = (
            str(cache.mkdir("jax-compilation-cache"))
            if cache is not None
            else os.path.join(str(config.rootpath), ".pytest_cache", "jax-compilation-cache")
        )
        os.environ["JAXADV_CACHE_DIR"] = path  # the console scripts the tests start use it too
    compile_cache.enable()


_LEAKED = ("XLA_FLAGS", "JAX_ENABLE_X64")


@pytest.fixture(autouse=True)
def _restore_the_environment_main_sets():
    """An in-process ``jaxadv.app.cli.main`` sets ``XLA_FLAGS`` (one host device per core) and ``JAX_ENABLE_X64``
    for JAX in this process, which has started already and keeps its one device. Left set, they reach every
    console script a later test starts: it would run on two devices whatever ``JAXADV_HOST_DEVICES`` says,
    compile its own programs and read none of this process's back. Each test ends with them as they were."""
    saved = {k: os.environ.get(k) for k in _LEAKED}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
