r"""Monte Carlo simulation of adversarial on-line learning in N dimensions.

Each replica is a student :math:`(w, b)` trained on its own stream of fresh examples.
A step :math:`\mu\to\mu+1` draws :math:`(\xi,\tau)` from the prototype model, attacks it
(:func:`jaxadv.attack.l2_attack`) and applies the learning rule
(:func:`jaxadv.learning.sgd_step`). Time is :math:`\alpha=\mu/N`.

The kernel is written for one replica (:func:`init_replica`, :func:`step_replica`) and
``vmap``-ped over replicas; steps are a ``lax.scan``. The key of step :math:`\mu` of a replica
is ``fold_in(replica_key, mu)``, so results do not depend on how the run is chunked
(save interval, progress updates, resumption). Only the order parameters
:math:`R = w\cdot B`, :math:`b` and :math:`\|w\|` are recorded, at save points.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .data import sample_example, unit_direction
from .learning import Student, sgd_step
from .losses import get_loss
from .params import ModelParams, as_array_params, validate_params
from .progress import Progress

__all__ = ["MCResult", "init_replica", "step_replica", "observe", "simulate", "save_schedule", "shard_replicas"]


class MCResult(NamedTuple):
    """Order parameters of all replicas at the save points.

    Attributes:
        alpha: save times, shape ``(P,)``, starting at 0.
        R: overlaps :math:`w\\cdot B`, shape ``(replicas, P)``.
        b: biases, shape ``(replicas, P)``.
        norm: :math:`\\|w\\|` (1 up to round-off), shape ``(replicas, P)``.
        finite: ``True`` where R and b are finite, shape ``(replicas, P)``.
    """

    alpha: np.ndarray
    R: np.ndarray
    b: np.ndarray
    norm: np.ndarray
    finite: np.ndarray


def init_replica(key, B, R0=None, b0=0.0) -> Student:
    r"""Initial student: :math:`w` uniform on the unit sphere, or with overlap :math:`R_0`
    (:math:`w = R_0 B + \sqrt{1-R_0^2}\,u_\perp`, :math:`u_\perp` uniform on the sphere orthogonal to B)."""
    u = jax.random.normal(key, B.shape, B.dtype)
    if R0 is None:
        w = u / jnp.linalg.norm(u)
    else:
        perp = u - jnp.dot(u, B) * B
        perp = perp / jnp.linalg.norm(perp)
        w = R0 * B + jnp.sqrt(1 - R0 * R0) * perp
    return Student(w=w, b=jnp.asarray(b0, B.dtype))


def step_replica(key, student: Student, params: ModelParams, B, loss) -> Student:
    """One on-line step: draw an example, attack it, update the student."""
    xi, tau = sample_example(key, params, B)
    return sgd_step(student, xi, tau, params, loss)


def observe(student: Student, B):
    """``(R, b, |w|)`` of one student."""
    return jnp.dot(student.w, B), student.b, jnp.linalg.norm(student.w)


@functools.partial(jax.jit, static_argnames=("n_steps", "loss"), donate_argnums=(1,))
def _advance(run_keys, students, params, B, start, n_steps, loss):
    """Advance every replica by ``n_steps`` steps, starting at step index ``start``."""

    def body(st, i):
        keys = jax.vmap(jax.random.fold_in, (0, None))(run_keys, start + i)
        st = jax.vmap(step_replica, (0, 0, None, None, None))(keys, st, params, B, loss)
        return st, None

    students, _ = jax.lax.scan(body, students, jnp.arange(n_steps, dtype=jnp.uint32))
    return students, jax.vmap(observe, (0, None))(students, B)


@functools.partial(jax.jit, static_argnames=("R0_given",))
def _init(init_keys, B, R0, b0, R0_given):
    return jax.vmap(lambda k: init_replica(k, B, R0 if R0_given else None, b0))(init_keys)


def shard_replicas(tree, replicas: int):
    """Spread the leading (replica) axis of ``tree`` over all local devices, when there are several.

    Replicas are independent, so the jitted kernel then runs one slice per device with no
    communication; the random bits and the results are those of one device. With a single
    device, or ``replicas`` not divisible by the device count, ``tree`` is returned unchanged.
    On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (set before JAX
    starts) makes one device per core, so the Monte Carlo uses all cores.
    """
    devices = jax.local_devices()
    if len(devices) < 2 or replicas % len(devices):
        return tree
    mesh = jax.sharding.Mesh(np.array(devices), ("replicas",))
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("replicas")))


def save_schedule(N: int, alpha_max: float, n_save: int):
    """Steps between saves and the save times: ``(steps_per_save, alpha)``, alpha of shape ``(n_save+1,)``.

    ``steps_per_save = round(alpha_max * N / n_save)`` (at least 1); the last save is at
    ``n_save * steps_per_save / N``, which equals ``alpha_max`` when ``alpha_max * N / n_save``
    is an integer.
    """
    steps = max(1, int(round(alpha_max * N / n_save)))
    return steps, np.arange(n_save + 1) * steps / N


def _fingerprint(*items) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def simulate(key, params: ModelParams, *, N: int, alpha_max: float, n_save: int = 50,
             replicas: int = 100, loss="quadratic", dtype=jnp.float32, R0: Optional[float] = None,
             b0: float = 0.0, B=None, progress: bool = False, checkpoint: Optional[str] = None,
             checkpoint_every: float = 60.0) -> MCResult:
    r"""Run ``replicas`` independent N-dimensional simulations of adversarial on-line learning.

    Args:
        key: PRNG key (``jax.random.key(seed)``); replica ``r`` uses ``split(key, replicas)[r]``.
        params: scalar model parameters.
        N: input dimension (static).
        alpha_max: final time; the run makes ``n_save * steps_per_save`` steps
            (see :func:`save_schedule`).
        n_save: number of save intervals.
        replicas: number of independent students.
        loss: loss name or :class:`jaxadv.losses.Loss`.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs ``jax_enable_x64``).
        R0: initial overlap; ``None`` draws ``w`` uniformly on the sphere.
        b0: initial bias.
        B: cluster axis, unit vector of shape ``(N,)``; default the first coordinate vector.
        progress: print a progress bar to stderr.
        checkpoint: path of a checkpoint file; the run saves its state there every
            ``checkpoint_every`` seconds and resumes from it when it exists and matches
            all arguments. It is removed at the end.

    Returns:
        :class:`MCResult` (NumPy arrays). Replicas that diverge keep ``finite=False``.

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams, simulate
        >>> mc = simulate(jax.random.key(0), ModelParams(), N=100, alpha_max=1.0, n_save=2, replicas=4)
        >>> mc.R.shape
        (4, 3)
    """
    validate_params(params)
    if int(N) != N or N < 2:
        raise ValueError(f"N={N!r} must be an integer >= 2")
    if int(replicas) != replicas or replicas < 1:
        raise ValueError(f"replicas={replicas!r} must be an integer >= 1")
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (np.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if R0 is not None and not (-1.0 <= R0 <= 1.0):
        raise ValueError(f"R0={R0!r} must lie in [-1, 1]")
    if not np.isfinite(b0):
        raise ValueError(f"b0={b0!r} must be finite")
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    N, replicas, n_save = int(N), int(replicas), int(n_save)
    loss = get_loss(loss)
    B = unit_direction(N, dtype) if B is None else jnp.asarray(B, dtype)
    steps, alpha = save_schedule(N, alpha_max, n_save)
    p = as_array_params(params, dtype)

    keys = jax.random.split(key, replicas)
    pair = jax.vmap(jax.random.split)(keys)
    init_keys, run_keys = shard_replicas((pair[:, 0], pair[:, 1]), replicas)

    P = n_save + 1
    obs = np.full((3, replicas, P), np.nan, dtype=np.dtype(dtype))
    start_k = 0
    fp = _fingerprint(np.asarray(jax.random.key_data(key)).tolist(), [float(x) for x in params], N,
                      float(alpha_max), n_save, replicas, loss.name, str(dtype), R0, float(b0),
                      None if B is None else hashlib.sha256(np.asarray(B).tobytes()).hexdigest())
    students = None
    if checkpoint and os.path.exists(checkpoint):
        with np.load(checkpoint) as ck:
            if str(ck["fingerprint"]) == fp:
                students = shard_replicas(Student(w=jnp.asarray(ck["w"]), b=jnp.asarray(ck["b"])), replicas)
                obs = ck["obs"].copy()
                start_k = int(ck["k"])
    if students is None:
        students = _init(init_keys, B, jnp.asarray(0.0 if R0 is None else R0, dtype),
                         jnp.asarray(b0, dtype), R0 is not None)
        o = jax.vmap(observe, (0, None))(students, B)
        obs[:, :, 0] = np.stack([np.asarray(x) for x in o])

    bar = Progress(n_save, "monte carlo", enabled=progress, initial=start_k)
    last_ck = time.monotonic()
    for k in range(start_k, n_save):
        students, o = _advance(run_keys, students, p, B, jnp.uint32(k * steps), steps, loss)
        obs[:, :, k + 1] = np.stack([np.asarray(x) for x in o])
        bar.update(k + 1)
        if checkpoint and time.monotonic() - last_ck > checkpoint_every and k + 1 < n_save:
            _save_checkpoint(checkpoint, fp, students, obs, k + 1)
            last_ck = time.monotonic()
    bar.close()
    if checkpoint and os.path.exists(checkpoint):
        os.remove(checkpoint)
    R, b, norm = obs
    return MCResult(alpha=alpha, R=R, b=b, norm=norm, finite=np.isfinite(R) & np.isfinite(b))


def _save_checkpoint(path, fp, students, obs, k):
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, fingerprint=fp, w=np.asarray(students.w), b=np.asarray(students.b), obs=obs, k=k)
    os.replace(tmp, path)
