"""Memory estimates made before a run, so that a run that cannot fit is refused with the
estimate in the message instead of failing after minutes (``RESOURCE_EXHAUSTED``, ``MemoryError``).

The estimates are deliberately rough upper bounds of the large arrays:

* full Monte Carlo: ``replicas x N x itemsize x`` :data:`FULL_ARRAYS_PER_REPLICA` (the weights,
  the example, its perturbation, the gradient and XLA's temporaries of one step);
* the saved observables: ``5 x replicas x (n_save + 1) x itemsize``;
* a sweep: :data:`SWEEP_BYTES_PER_SAVE` bytes per grid point and save point (the grid's columns,
  the trajectories and the tables) plus the per-point Monte Carlo when it runs;
* a table (the ODE's save points, the fields of a sampled attack): rows x columns x itemsize.
"""

from __future__ import annotations

import math
import os

__all__ = [
    "available_memory",
    "run_memory_bytes",
    "sweep_memory_bytes",
    "table_memory_bytes",
    "check_fits",
    "FULL_ARRAYS_PER_REPLICA",
]

FULL_ARRAYS_PER_REPLICA = 8
SWEEP_BYTES_PER_SAVE = 2 * 8 * 8


def available_memory() -> float:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``, else physical memory;
    ``JAXADV_MEMORY_BYTES`` overrides it)."""
    env = os.environ.get("JAXADV_MEMORY_BYTES")
    if env:
        return float(env)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def _gib(x: float) -> str:
    return f"{x / 2**30:.3g} GiB"


def run_memory_bytes(N: int, replicas: int, n_save: int, itemsize: int, sampler: str = "full") -> tuple:
    """``(bytes, how)`` of one Monte Carlo run; ``how`` spells the estimate out."""
    obs = 5.0 * replicas * (n_save + 1) * itemsize
    if sampler == "reduced":
        return obs, f"5 observables x replicas={replicas} x (n_save+1)={n_save + 1} x {itemsize} bytes"
    state = float(replicas) * N * itemsize * FULL_ARRAYS_PER_REPLICA
    return state + obs, (
        f"N={N} x replicas={replicas} x {itemsize} bytes x {FULL_ARRAYS_PER_REPLICA} arrays + the saved observables"
    )


def sweep_memory_bytes(n_points: int, n_save: int, mc_point_bytes: float = 0.0) -> tuple:
    """``(bytes, how)`` of a sweep over ``n_points`` grid points."""
    b = float(n_points) * (n_save + 1) * SWEEP_BYTES_PER_SAVE + mc_point_bytes
    return b, f"{n_points} grid points x (n_save+1)={n_save + 1} x {SWEEP_BYTES_PER_SAVE} bytes"


def table_memory_bytes(rows: int, columns: int, rows_name: str, itemsize: int = 8) -> tuple:
    """``(bytes, how)`` of a table of ``rows`` (named ``rows_name`` in ``how``) by ``columns`` numbers: the
    ODE's saved points, the fields an attack is tested on."""
    return float(rows) * columns * itemsize, f"{rows_name}={rows} x {columns} numbers x {itemsize} bytes"


def check_fits(estimate: tuple, what: str) -> None:
    """``ValueError`` when the estimate exceeds the memory available, with the estimate in it."""
    need, how = estimate
    have = available_memory()
    if need > have:
        raise ValueError(
            f"{what} needs about {_gib(need)} ({how}), more than the {_gib(have)} of memory available; reduce it"
        )
