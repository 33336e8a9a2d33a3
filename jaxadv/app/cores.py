"""Use every CPU core from Python, as the command line does.

XLA reads ``XLA_FLAGS`` once, when its CPU backend starts (at the first computation, not at
``import jax``). :func:`use_all_cores` must therefore run before the first JAX computation of
the process; the command line calls it first thing. From Python::

    import jaxadv
    jaxadv.use_all_cores()        # before any computation: one XLA CPU device per core, float64
    mc = jaxadv.simulate(...)     # now sharded over every core, like ``jaxadv run``

or set the environment before starting Python:
``XLA_FLAGS=--xla_force_host_platform_device_count=$(nproc) python3 script.py``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["use_all_cores", "host_device_count"]


def host_device_count() -> int:
    """Cores this process may use (``JAXADV_HOST_DEVICES`` overrides; 1 turns sharding off)."""
    n = os.environ.get("JAXADV_HOST_DEVICES")
    if n is not None:
        if not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"JAXADV_HOST_DEVICES={n!r} must be a positive integer")
        return int(n)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_all_cores(x64: bool = True, strict: bool = True) -> int:
    """One XLA CPU device per core (and, with ``x64``, float64 enabled as in the CLI).

    Results are bit-identical to one device. An existing
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` is left alone. Returns the
    device count requested. With ``strict``, raises ``RuntimeError`` when JAX's CPU backend has
    already started with fewer devices (call it first); otherwise that case is a no-op.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    n = host_device_count()
    if "xla_force_host_platform_device_count" not in flags and n > 1:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()
    if "jax" in sys.modules:
        import jax

        if x64:
            jax.config.update("jax_enable_x64", True)
        from jax._src import xla_bridge

        if (
            strict
            and xla_bridge.backends_are_initialized()
            and jax.default_backend() == "cpu"
            and jax.device_count() < n
            and "xla_force_host_platform_device_count" not in flags
        ):
            raise RuntimeError(
                f"use_all_cores: JAX already started with {jax.device_count()} device(s); "
                "call jaxadv.use_all_cores() before the first JAX computation"
            )
    elif x64:
        os.environ["JAX_ENABLE_X64"] = "1"
    return n
