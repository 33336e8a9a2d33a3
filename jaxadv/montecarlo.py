r"""Monte Carlo simulation of adversarial on-line learning in N dimensions.

Each replica is a student :math:`(w, b)` trained on its own stream of fresh examples.
A step :math:`\mu\to\mu+1` draws :math:`(\xi,\tau)` from the prototype model, attacks it
(:func:`jaxadv.attack.l2_attack`) and applies the learning rule
(:func:`jaxadv.learning.sgd_step`). Time is :math:`\alpha=\mu/N`.

The kernel is written for one replica (:func:`init_replica`, :func:`step_replica`) and
``vmap``-ped over replicas; steps are a ``lax.fori_loop``. The key of step :math:`\mu` of a replica
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
from .sharding import shard_batch, to_host
from .reduced import check_reduced_supported, init_reduced, observe_reduced, step_reduced
from . import threefry

__all__ = ["MCResult", "Sampler", "SAMPLERS", "init_replica", "step_replica", "observe", "observe_norms",
           "simulate", "save_schedule"]


class MCResult(NamedTuple):
    """Order parameters of all replicas at the save points.

    Attributes:
        alpha: save times, shape ``(P,)``, starting at 0.
        R: overlaps :math:`w\\cdot B`, shape ``(replicas, P)``.
        b: biases, shape ``(replicas, P)``.
        norm: :math:`\\|w\\|` (1 up to round-off), shape ``(replicas, P)``.
        finite: ``True`` where R and b are finite, shape ``(replicas, P)``.
        norm1: :math:`\\|w\\|_1`, shape ``(replicas, P)`` (dual norm of the L-infinity threat).
        norm_inf: :math:`\\|w\\|_\\infty`, shape ``(replicas, P)`` (dual norm of the L1 threat).
    """

    alpha: np.ndarray
    R: np.ndarray
    b: np.ndarray
    norm: np.ndarray
    finite: np.ndarray
    norm1: Optional[np.ndarray] = None
    norm_inf: Optional[np.ndarray] = None


def init_replica(key, B, R0=None, b0=0.0) -> Student:
    r"""Initial student: :math:`w` uniform on the unit sphere, or with overlap :math:`R_0`
    (:math:`w = R_0 B + \sqrt{1-R_0^2}\,u_\perp`, :math:`u_\perp` uniform on the sphere orthogonal to B)."""
    u = threefry.normal(key, B.shape, B.dtype)
    if R0 is None:
        w = u / jnp.linalg.norm(u)
    else:
        perp = u - jnp.dot(u, B) * B
        perp = perp / jnp.linalg.norm(perp)
        w = R0 * B + jnp.sqrt(1 - R0 * R0) * perp
    return Student(w=w, b=jnp.asarray(b0, B.dtype))


def step_replica(key, student: Student, params: ModelParams, B, loss, options=None) -> Student:
    """One on-line step: draw an example, attack it, update the student.

    ``options``: a :class:`jaxadv.variants.TrainingOptions` (``None``: L2 adversarial training);
    its random numbers use ``fold_in(key, 2)``. (The example draws from ``split(key)``, whose
    second key equals ``fold_in(key, 1)``; counter 2 is used by neither.)"""
    xi, tau = sample_example(key, params, B)
    if options is None:
        return sgd_step(student, xi, tau, params, loss)
    return sgd_step(student, xi, tau, params, loss, options, threefry.fold_in(key, 2))


def observe_norms(student: Student):
    """``(|w|_1, |w|_inf)`` of one student: the dual norms of the L-infinity and L1 threats."""
    return jnp.sum(jnp.abs(student.w)), jnp.max(jnp.abs(student.w))


def observe(student: Student, B):
    """``(R, b, |w|)`` of one student."""
    return jnp.dot(student.w, B), student.b, jnp.linalg.norm(student.w)


class Sampler(NamedTuple):
    """How a simulation represents one replica (static; selected by ``simulate(sampler=...)``).

    Attributes:
        name: ``"full"`` or ``"reduced"``.
        init: ``init(key, consts, R0, b0, R0_given) -> state`` of one replica.
        step: ``step(key, state, params, consts, loss, options) -> state``.
        observe: ``observe(state, consts) -> (R, b, |w|, |w|_1, |w|_inf)`` (NaN where not represented).

    Step keys are :func:`jaxadv.threefry.fold_in` ``(replica_key, step)`` for both samplers.
    """

    name: str
    init: object
    step: object
    observe: object


def _full_init(key, B, R0, b0, R0_given):
    return init_replica(key, B, R0 if R0_given else None, b0)


def _full_observe(student, B):
    return observe(student, B) + observe_norms(student)


def _reduced_init(key, N, R0, b0, R0_given):
    return init_reduced(key, N, R0 if R0_given else None, b0, N.dtype)


def _reduced_step(key, state, params, N, loss, options):
    # options is None here: simulate refuses every variant the reduced description lacks
    return step_reduced(key, state, params, N, loss)


def _reduced_observe(state, N):
    nan = jnp.full_like(state.R, jnp.nan)
    return observe_reduced(state) + (nan, nan)


SAMPLERS = {
    "full": Sampler("full", _full_init, step_replica, _full_observe),
    "reduced": Sampler("reduced", _reduced_init, _reduced_step, _reduced_observe),
}


@functools.partial(jax.jit, static_argnames=("loss", "sampler", "spec"), donate_argnums=(1,))
def _advance(run_keys, states, params, consts, start, n_steps, loss, sampler, spec=None, vparams=None):
    """Advance every replica by ``n_steps`` steps, starting at step index ``start``.

    ``n_steps`` is traced (a ``fori_loop`` with a dynamic trip count), so runs with another N or
    save interval reuse the compilation. ``spec``/``vparams``: static and traced parts of the
    training options (``None``: L2 adversarial training).
    """
    options = None
    if spec is not None:
        from .variants import join_options

        options = join_options(spec, vparams)

    def body(i, st):
        keys = jax.vmap(threefry.fold_in, (0, None))(run_keys, start + i)
        step = lambda k, s_: sampler.step(k, s_, params, consts, loss, options)
        return jax.vmap(step)(keys, st)

    states = jax.lax.fori_loop(jnp.uint32(0), n_steps, body, states)
    return states, jax.vmap(sampler.observe, (0, None))(states, consts)


@functools.partial(jax.jit, static_argnames=("R0_given", "sampler"))
def _init(init_keys, consts, R0, b0, R0_given, sampler):
    states = jax.vmap(lambda k: sampler.init(k, consts, R0, b0, R0_given))(init_keys)
    return states, jax.vmap(sampler.observe, (0, None))(states, consts)


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
             checkpoint_every: float = 60.0, options=None, sampler: str = "full") -> MCResult:
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
        B: cluster axis: a unit vector of shape ``(N,)``, ``"first"`` (the first coordinate
            vector, the default) or ``"dense"`` (:math:`(1,\\dots,1)/\\sqrt N`); see
            :func:`jaxadv.data.cluster_axis`. Only the L-infinity and L1 attacks depend on it.
        progress: print a progress bar to stderr.
        checkpoint: path of a checkpoint file; the run saves its state there every
            ``checkpoint_every`` seconds and resumes from it when it exists and matches
            all arguments. It is removed at the end.
        options: training variant, :class:`jaxadv.variants.TrainingOptions` (``None``: L2
            adversarial training at ``params.eps``, identical to ``TrainingOptions()``).
        sampler: ``"full"`` (N-dimensional vectors, cost O(N) per step) or ``"reduced"``
            (the exact O(1) description of :mod:`jaxadv.reduced`: same distribution of
            ``(R, b)``; ``B`` is irrelevant there by rotation invariance, ``norm`` is 1 and
            ``norm1``/``norm_inf`` are ``None``).

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
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not one of {sorted(SAMPLERS)}")
    N, replicas, n_save = int(N), int(replicas), int(n_save)
    loss = get_loss(loss)
    spec = vparams = None
    if options is not None:
        from .variants import split_options, validate_options

        spec, vparams = split_options(validate_options(options), dtype)
    if sampler == "reduced":
        from .variants import reduced_check_arguments

        check_reduced_supported(**reduced_check_arguments(options))
        spec = vparams = None
    kernel = SAMPLERS[sampler]
    B_given = B
    if isinstance(B, str):
        from .data import cluster_axis

        B = cluster_axis(N, B, dtype)
    B = unit_direction(N, dtype) if B is None else jnp.asarray(B, dtype)
    consts = B if sampler == "full" else jnp.asarray(N, dtype)
    steps, alpha = save_schedule(N, alpha_max, n_save)
    p = as_array_params(params, dtype)

    keys = jax.random.split(key, replicas)
    pair = jax.vmap(jax.random.split)(keys)
    init_keys, run_keys = pair[:, 0], pair[:, 1]
    # replicas split over all devices (padded to a multiple of the count; no-op on one device)
    init_keys, run_keys = shard_batch((init_keys, run_keys))

    P = n_save + 1
    obs = np.full((5, replicas, P), np.nan, dtype=np.dtype(dtype))
    start_k = 0
    fp = _fingerprint(np.asarray(jax.random.key_data(key)).tolist(), [float(x) for x in params], N,
                      float(alpha_max), n_save, replicas, loss.name, str(dtype), R0, float(b0),
                      None if B_given is None else hashlib.sha256(np.asarray(B).tobytes()).hexdigest(),
                      None if options is None else [str(x) for x in options], sampler)
    states, o = _init(init_keys, consts, jnp.asarray(0.0 if R0 is None else R0, dtype),
                      jnp.asarray(b0, dtype), R0 is not None, kernel)
    obs[:, :, 0] = np.stack([to_host(x)[:replicas] for x in o])
    if checkpoint and os.path.exists(checkpoint):
        with np.load(checkpoint) as ck:
            if str(ck["fingerprint"]) == fp:
                treedef = jax.tree.structure(states)
                leaves = [jnp.asarray(ck[f"state_{i}"]) for i in range(treedef.num_leaves)]
                states = shard_batch(jax.tree.unflatten(treedef, leaves))
                obs = ck["obs"].copy()
                start_k = int(ck["k"])

    bar = Progress(n_save, "monte carlo", enabled=progress, initial=start_k)
    last_ck = time.monotonic()
    for k in range(start_k, n_save):
        states, o = _advance(run_keys, states, p, consts, jnp.uint32(k * steps), jnp.uint32(steps), loss, kernel,
                             spec, vparams)
        obs[:, :, k + 1] = np.stack([to_host(x)[:replicas] for x in o])
        bar.update(k + 1)
        if checkpoint and time.monotonic() - last_ck > checkpoint_every and k + 1 < n_save:
            _save_checkpoint(checkpoint, fp, states, obs, k + 1)
            last_ck = time.monotonic()
    bar.close()
    if checkpoint and os.path.exists(checkpoint):
        os.remove(checkpoint)
    R, b, norm, norm1, norm_inf = obs
    full = sampler == "full"
    return MCResult(alpha=alpha, R=R, b=b, norm=norm, finite=np.isfinite(R) & np.isfinite(b),
                    norm1=norm1 if full else None, norm_inf=norm_inf if full else None)


def _save_checkpoint(path, fp, states, obs, k):
    """Write the state without the padding rows of :func:`shard_batch`, so a run can resume on any
    device count (loading pads again)."""
    tmp = f"{path}.tmp.npz"
    replicas = obs.shape[1]
    leaves = {f"state_{i}": to_host(x)[:replicas] for i, x in enumerate(jax.tree.leaves(states))}
    np.savez(tmp, fingerprint=fp, obs=obs, k=k, **leaves)
    os.replace(tmp, path)
