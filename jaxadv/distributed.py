r"""Several processes (hosts) in one run: joining it, who writes, and agreeing on decisions.

JAX runs one program per process (multi-controller). After :func:`initialize`,
:func:`jax.devices` lists the devices of every process, :mod:`jaxadv.sharding` builds global
arrays from them and every process computes its own slice of the replicas (or grid points).
What each process must do the same way:

* run the same program with the same arguments (same key, same sizes);
* take the same decisions where they start a collective (when to checkpoint, whether to resume):
  :func:`agree` and :func:`broadcast` send process 0's value to all;
* write files only on process 0 (:func:`is_primary`; :mod:`jaxadv.app.io` checks it), and show
  progress there only.

On one process every function here is a no-op returning its input, so single-process behaviour is
unchanged. See ``docs/multi_device.md`` for the commands (one machine, several machines, SLURM).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["initialize", "is_multiprocess", "is_primary", "agree", "broadcast", "add_arguments", "initialize_from_args"]


def _needs_gloo(version: str) -> bool:
    """jax < 0.5.1 has no CPU collectives unless ``jax_cpu_collectives_implementation="gloo"``."""
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts))) < (0, 5, 1)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
) -> None:
    """Join a multi-process run: :func:`jax.distributed.initialize`, called before any computation.

    Args:
        coordinator: ``"HOST:PORT"`` of process 0 (it listens there). ``None`` with the other two
            ``None`` as well: the cluster is auto-detected (SLURM, Open MPI, Cloud TPU; see
            :func:`jax.distributed.initialize`).
        num_processes: how many processes take part.
        process_id: this process's rank, ``0 <= process_id < num_processes``.
        local_device_ids: restrict this process to these local devices (e.g. one GPU each).

    On CPU with jax < 0.5.1 the Gloo collectives are switched on first (newer versions use them
    by default).

    Raises:
        ValueError: an inconsistent or out-of-range argument.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(
            "coordinator, num_processes and process_id go together: give all three "
            f"(got coordinator={coordinator!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}) or none for auto-detection"
        )
    # the three are given together (checked above); the test names all three for the type checker
    if coordinator is not None and num_processes is not None and process_id is not None:
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator={coordinator!r} must be HOST:PORT")
        if int(num_processes) != num_processes or num_processes < 1:
            raise ValueError(f"num_processes={num_processes!r} must be an integer >= 1")
        if int(process_id) != process_id or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id!r} must be an integer in [0, {num_processes})")
    import jax

    if _needs_gloo(jax.__version__):
        with contextlib.suppress(AttributeError, KeyError, ValueError):  # pragma: no cover - very old jax
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {} if local_device_ids is None else {"local_device_ids": local_device_ids}
    if coordinator is None or num_processes is None or process_id is None:
        jax.distributed.initialize(**kwargs)
    else:
        jax.distributed.initialize(
            coordinator_address=str(coordinator), num_processes=int(num_processes), process_id=int(process_id), **kwargs
        )


def is_multiprocess() -> bool:
    """Whether more than one process takes part (``False`` when JAX is not even imported)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes files and shows progress: process 0, or the only one."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def _bits(x: Any) -> Any:
    """``x`` as a flat array of bytes (a bit-exact view for the broadcast's sum, whatever the dtype
    and whether or not ``jax_enable_x64`` is on)."""
    import numpy as np

    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def broadcast(tree: T) -> T:
    """Process 0's value of ``tree`` (NumPy arrays or scalars of one shape and dtype on every process),
    bit for bit, on every process. On one process: ``tree`` itself."""
    if not is_multiprocess():
        return tree
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    arrays = [np.asarray(x) for x in leaves]
    sent = multihost_utils.broadcast_one_to_all([_bits(a) for a in arrays])
    out = []
    for a, s in zip(arrays, sent, strict=True):
        s = np.asarray(s)
        out.append(np.ascontiguousarray(s.astype(np.uint8)).view(a.dtype).reshape(a.shape))
    out = [
        o if isinstance(x, np.ndarray) else o.item() if o.ndim == 0 and not isinstance(x, np.generic) else o
        for x, o in zip(leaves, out, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a decision that starts a collective must be common)."""
    import numpy as np

    return bool(broadcast(np.asarray(bool(flag))))


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options to join a multi-process run (``jaxadv --coordinator HOST:PORT --num-processes P
    --process-id I COMMAND ...``, or ``--distributed`` on a cluster JAX recognises)."""
    g = parser.add_argument_group("several processes (docs/multi_device.md)")
    g.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0; with --num-processes and --process-id",
    )
    g.add_argument("--num-processes", type=int, default=None, metavar="P", help="processes in the run")
    g.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's rank, 0..P-1")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run found from the cluster's environment (SLURM, MPI, TPU)",
    )


def initialize_from_args(args: argparse.Namespace) -> bool:
    """Call :func:`initialize` when the command line asks for it; returns whether it did."""
    explicit = any(getattr(args, k, None) is not None for k in ("coordinator", "num_processes", "process_id"))
    if getattr(args, "distributed", False) and explicit:
        raise ValueError(
            "--distributed (auto-detection) and --coordinator/--num-processes/--process-id exclude each other"
        )
    if explicit:
        initialize(args.coordinator, args.num_processes, args.process_id)
        return True
    if getattr(args, "distributed", False):
        initialize()
        return True
    return False
