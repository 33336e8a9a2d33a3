"""JAX's persistent compilation cache for the command line: a second run starts computing at once.

Every ``jaxadv`` command compiles its kernels (the Monte Carlo step, the RK4 integrator, the
error measures) with XLA. Compilation of a configuration costs seconds to tens of seconds on a
2-core CPU and does not depend on the random seed or on the values of swept floats, so the CLI
keeps the compiled programs on disk and a second run of the same configuration reads them back.

Where the cache lives (the first that applies):

* ``JAXADV_CACHE_DIR=PATH``: that folder; ``JAXADV_CACHE_DIR=off`` (or empty) turns the cache off;
* ``$XDG_CACHE_HOME/jaxadv/xla``;
* ``~/.cache/jaxadv/xla``.

Clearing it is deleting the folder (``rm -r ~/.cache/jaxadv/xla``); it is rebuilt as programs are
compiled again; it is not pruned (a small ``jaxadv run scenario1`` adds about 1 MB).
Importing :mod:`jaxadv` changes no JAX setting: only the command line (and :func:`enable` when a
script calls it) turns the cache on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["cache_dir", "enable"]

_OFF = ("", "off", "none", "0", "false", "no")


def cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The cache folder the CLI uses, or ``None`` when ``JAXADV_CACHE_DIR`` turns it off."""
    env = os.environ if environ is None else environ
    given = env.get("JAXADV_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in _OFF else os.path.abspath(os.path.expanduser(given))
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxadv", "xla")


def enable(path: str | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on in ``path`` (default :func:`cache_dir`).

    Every compiled program is kept (no minimum compile time: the CLI's many small programs add
    up). A folder that cannot be created leaves the cache off (the run
    goes on, compiling as usual). Returns the folder used, or ``None``.

    Example:
        >>> import jaxadv.app.compile_cache as cc
        >>> cc.cache_dir({"JAXADV_CACHE_DIR": "off"}) is None
        True
    """
    path = cache_dir() if path is None else path
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
