r"""Data parallelism over all visible devices: the replica axis of the Monte Carlo and the
grid axis of sweeps are split across a one-dimensional device mesh.

Every replica (every grid point) is an independent computation written for one element
and ``vmap``-ped outward, so sharding the leading (batch) axis of the inputs of a ``jit``-ted
function is all it takes: XLA's partitioner propagates the :class:`jax.sharding.NamedSharding`
of the inputs through the ``vmap`` and every device advances its own slice, with no
communication. The batch is padded to a multiple of the device count by repeating its
last element; callers drop the padded rows.

On one device every function here returns its input unchanged (no padding, no copy), so
user code is the same on a laptop, on a multi-GPU node and (after
:func:`jaxadv.distributed.initialize`) on several processes; see ``docs/multi_device.md``.
With several processes every process holds the whole (small) input batch, builds the global
array from it with :func:`jax.make_array_from_callback` (each process supplies the rows of its
own devices) and :func:`to_host` / :func:`gather` bring results back to every process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.sharding import Mesh, NamedSharding, PartitionSpec

T = TypeVar("T")

__all__ = [
    "BATCH_AXIS",
    "batch_mesh",
    "padded_size",
    "pad_batch",
    "shard_batch",
    "to_host",
    "gather",
    "one_at_a_time",
]

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-dimensional :class:`jax.sharding.Mesh` named ``"batch"`` over ``devices``
    (default: all devices, :func:`jax.devices`)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def padded_size(n: int, n_devices: int | None = None) -> int:
    """Smallest multiple of ``n_devices`` (default :func:`jax.device_count`) that is ``>= n``."""
    if int(n) != n or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1")
    k = jax.device_count() if n_devices is None else int(n_devices)
    return -(-int(n) // k) * k


def pad_batch(tree: T, size: int) -> T:
    """Pad the leading axis of every leaf of ``tree`` to ``size`` by repeating its last element.

    Works for typed PRNG key arrays as well. Leaves already of length ``size`` are returned as is.
    """

    def pad(x: jax.Array) -> jax.Array:
        n = x.shape[0]
        if n == size:
            return x
        if n > size:
            raise ValueError(f"size={size!r} is smaller than the batch length {n}")
        idx = jnp.minimum(jnp.arange(size), n - 1)
        return x[idx]

    return jax.tree.map(pad, tree)


def shard_batch(tree: T, devices: Sequence[jax.Device] | None = None) -> T:
    """Pad the leading axis of every leaf to a multiple of the device count and place it
    with ``NamedSharding(mesh, PartitionSpec("batch"))``.

    Returns ``tree`` unchanged when only one device is visible. Leaves must share their
    leading length ``n``; the result has length :func:`padded_size` ``(n)``.
    """
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return tree
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    n = leaves[0].shape[0]
    size = padded_size(n, len(devices))
    tree = pad_batch(tree, size)
    sharding = NamedSharding(batch_mesh(devices), PartitionSpec(BATCH_AXIS))
    if all(d.process_index == jax.process_index() for d in devices):
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def _global_array(x: Any, sharding: NamedSharding) -> jax.Array:
    """A global array of ``x`` (the same on every process) laid out by ``sharding``, built from the rows
    of this process's devices; typed PRNG keys travel as their key data."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        data = _global_array(jax.random.key_data(x), sharding)
        return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array on this host. With several processes
    (``jax.distributed.initialize``) a globally sharded array is first gathered from all hosts
    (``multihost_utils.process_allgather``); otherwise this is ``np.asarray(x)``."""
    if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def gather(tree: T) -> T:
    """Every leaf of ``tree`` that spans several processes replaced by the whole array on this process
    (:func:`to_host`, then a local array); other leaves, and everything on one process, unchanged."""
    if jax.process_count() == 1:
        return tree

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jnp.asarray(to_host(x))
        return x

    return jax.tree.map(one, tree)


def one_at_a_time(f: Callable[..., Any]) -> Callable[..., Any]:
    r"""``f`` that, under ``vmap``, loops over the batch (:func:`jax.lax.map`, one element per call) instead
    of making one batched call; the same bits as the batched call. Not differentiable (a
    :func:`jax.custom_batching.custom_vmap`).

    For the LAPACK calls of a sharded program on host devices (``jnp.linalg.qr``, ``eigh``, ``cholesky``
    on CPU). jaxlib 0.10's batched LAPACK kernels split their batch into pieces on XLA's intra-op thread
    pool and block their own pool thread until the pieces are done. With one host device per core (the
    command line's split) the pool has as many threads as there are devices, each device runs its
    kernel on one of them, all of them block at once, and no thread is left to run the pieces: the
    process waits for ever, every thread idle in a futex (measured: a ``vmap``-ped QR of 1000
    ``(500, 2)`` matrices split over 2 host devices on a 2-core machine never returns; the same with
    this wrapper takes 3 s, bit-identical to one device). One matrix per call has nothing to split.

    Args:
        f: a function of arrays (pytrees of arrays) returning arrays (a pytree).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> qr = one_at_a_time(lambda a: jnp.linalg.qr(a)[0])
        >>> a = jax.random.normal(jax.random.key(0), (3, 5, 2))
        >>> bool(jnp.all(jax.vmap(qr)(a) == jax.vmap(lambda x: jnp.linalg.qr(x)[0])(a)))
        True
    """
    g = custom_vmap(f)

    @g.def_vmap
    def _loop(axis_size: int, in_batched: Any, *args: Any) -> tuple[Any, Any]:
        if not any(jax.tree.leaves(in_batched)):
            out = g(*args)
            return out, jax.tree.map(lambda _: False, out)
        args = jax.tree.map(
            lambda b, x: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), list(in_batched), list(args)
        )
        out = jax.lax.map(lambda a: g(*a), args)
        return out, jax.tree.map(lambda _: True, out)

    return g
