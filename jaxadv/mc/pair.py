r"""The N-dimensional Monte Carlo of a surrogate--target pair, and transfer measured on fresh examples.

:func:`pair_sampler` is a :class:`jaxadv.mc.full.Sampler` (``init``, ``step``, ``observe``) for one
replica holding both students (:mod:`jaxadv.model.pair`); :func:`plan_pair` makes it a
:class:`jaxadv.mc.driver.Plan` of the one Monte Carlo driver (many replicas in one ``vmap``, split over the
devices, step :math:`\mu` of a replica with ``fold_in(replica_key, mu)``), with the transfer measurement
at the save points as its :class:`jaxadv.mc.driver.SaveMeasure`; the driver runs it
(:func:`simulate_pair`), or :func:`jaxadv.app.checkpoint.run_resumable` with checkpoints and resumption. Observables
(:class:`PairObservables`): :math:`R_s, R_t, Q, b_s, b_t`, the L-infinity shift overlap
:math:`M=w_t\cdot\operatorname{sign}(w_s)` and the dual norms :math:`\|w_s\|_1, \|w_t\|_1`.

:func:`measure_transfer` attacks fresh test examples through the surrogate in N dimensions
(:math:`\tilde\xi=\xi-l\epsilon w_s` or :math:`\xi-l\epsilon\operatorname{sign}(w_s)`, :math:`l=\tau` or
:math:`\operatorname{sign}(x_s)`) and counts the target's errors: the empirical counterpart of
:func:`jaxadv.analysis.transfer.transfer_error` at the replica's own weights.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import DTypeLike

from .. import threefry
from ..model.data import sample_example, unit_direction
from ..model.pair import (
    DEFAULT_PAIR_SPEC,
    PairParams,
    PairSpec,
    PairState,
    check_pair_start,
    pair_as_arrays,
    pair_step,
)
from ..model.params import ModelParams
from ..model.student import Student
from ..sharding import shard_batch
from ..validation import check_value
from .driver import Plan, SaveMeasure, run_plan, save_schedule
from .full import Sampler, SamplerParams

__all__ = [
    "PairObservables",
    "PairMC",
    "TRANSFER_KINDS",
    "pair_sampler",
    "init_pair",
    "observe_pair",
    "measure_transfer",
    "plan_pair",
    "pair_result",
    "simulate_pair",
]

TRANSFER_KINDS = ("l2_true", "l2_surrogate", "linf_true", "linf_surrogate")
"""The measured transfer errors: attack norm and attack label."""


class PairObservables(NamedTuple):
    """Order parameters of one pair (scalars): ``R_s``, ``R_t``, ``Q`` (:math:`w_s\\cdot w_t`), ``b_s``, ``b_t``,
    ``M`` (:math:`w_t\\cdot\\operatorname{sign}(w_s)`), ``norm1_s``, ``norm1_t`` (:math:`\\|w\\|_1`)."""

    R_s: jax.Array | np.ndarray
    R_t: jax.Array | np.ndarray
    Q: jax.Array | np.ndarray
    b_s: jax.Array | np.ndarray
    b_t: jax.Array | np.ndarray
    M: jax.Array | np.ndarray
    norm1_s: jax.Array | np.ndarray
    norm1_t: jax.Array | np.ndarray


def observe_pair(state: PairState, B: jax.Array) -> PairObservables:
    """The order parameters of one pair (:class:`PairObservables`) against the cluster axis ``B``."""
    ws, wt = state.s.w, state.t.w
    return PairObservables(
        jnp.dot(ws, B),
        jnp.dot(wt, B),
        jnp.dot(ws, wt),
        state.s.b,
        state.t.b,
        jnp.dot(wt, jnp.sign(ws)),
        jnp.sum(jnp.abs(ws)),
        jnp.sum(jnp.abs(wt)),
    )


def init_pair(key: jax.Array, B: jax.Array, R0: jax.Array, b0: jax.Array) -> PairState:
    r"""Two unit students with the given overlaps :math:`R0 = (R_s, R_t, Q)` and biases :math:`b0=(b_s, b_t)`:
    :math:`w_s = R_sB + a\,e_1`, :math:`w_t = R_tB + c_1e_1 + c_2e_2` with :math:`e_1, e_2` a random orthonormal
    pair orthogonal to B, :math:`a=\sqrt{1-R_s^2}`, :math:`c_1=(Q-R_sR_t)/a`, :math:`c_2=\sqrt{1-R_t^2-c_1^2}`."""
    k1, k2 = threefry.split(key)
    g1, g2 = threefry.normal(k1, B.shape, B.dtype), threefry.normal(k2, B.shape, B.dtype)
    e1 = g1 - jnp.dot(g1, B) * B
    e1 = e1 / jnp.linalg.norm(e1)
    e2 = g2 - jnp.dot(g2, B) * B - jnp.dot(g2, e1) * e1
    e2 = e2 / jnp.linalg.norm(e2)
    R_s, R_t, Q = R0[0], R0[1], R0[2]
    a = jnp.sqrt(jnp.maximum(1 - R_s * R_s, 0.0))
    c1 = jnp.where(a > 0, (Q - R_s * R_t) / jnp.where(a > 0, a, 1.0), 0.0)
    c2 = jnp.sqrt(jnp.maximum(1 - R_t * R_t - c1 * c1, 0.0))
    ws = R_s * B + a * e1
    wt = R_t * B + c1 * e1 + c2 * e2
    return PairState(Student(ws / jnp.linalg.norm(ws), b0[0]), Student(wt / jnp.linalg.norm(wt), b0[1]))


@functools.cache
def pair_sampler(spec: PairSpec = DEFAULT_PAIR_SPEC) -> Sampler[PairSpec]:
    """The pair's :class:`jaxadv.mc.full.Sampler`: ``sp.model`` is a :class:`jaxadv.model.pair.PairParams`,
    ``sp.const`` the cluster axis B; ``init(key, sp, R0, b0)`` takes ``R0 = (R_s, R_t, Q)`` and
    ``b0 = (b_s, b_t)`` (:func:`init_pair`). Cached per ``spec``, so ``jit`` compiles each spec once."""

    def init(key, sp, R0=None, b0=None):
        dtype = sp.const.dtype
        R0 = jnp.zeros(3, dtype) if R0 is None else jnp.asarray(R0, dtype)
        b0 = jnp.zeros(2, dtype) if b0 is None else jnp.asarray(b0, dtype)
        return init_pair(key, sp.const, R0, b0)

    def step(key, state, sp):
        new = pair_step(key, state, sp.const, sp.model, spec)
        return new, observe_pair(new, sp.const)

    return Sampler(f"pair_{spec.stream}", init, step, lambda state, sp: observe_pair(state, sp.const), spec)


def _one_replica_transfer(key, state: PairState, B, data, eps_grid, n_test, linf_scale):
    """Counts of one replica: ``wrong`` of shape ``(4, E)`` (target wrong after the transferred attack,
    :data:`TRANSFER_KINDS`), ``flipped`` ``(4, E)`` (right before and wrong after) and ``right`` ``()``."""
    keys = jax.random.split(key, n_test)
    ws, wt, bt = state.s.w, state.t.w, state.t.b
    sg = linf_scale * jnp.sign(ws)
    directions = jnp.stack([ws, ws, sg, sg])  # (4, N)
    use_sur = jnp.asarray([0.0, 1.0, 0.0, 1.0], B.dtype)  # (4,)

    def example(k):
        xi, tau = sample_example(k, data, B)
        l_sur = jnp.where(jnp.dot(ws, xi) - state.s.b > 0, 1.0, -1.0).astype(B.dtype)
        label = use_sur * l_sur + (1 - use_sur) * tau  # (4,)
        right = tau * (jnp.dot(wt, xi) - bt) > 0

        def at(eps):
            adv = xi[None, :] - (label * eps)[:, None] * directions  # (4, N): the attacked examples
            wrong = tau * (adv @ wt - bt) <= 0  # (4,)
            return wrong, wrong & right

        wrong, flipped = jax.vmap(at)(eps_grid)  # (E, 4)
        return wrong.T, flipped.T, right

    wrong, flipped, right = jax.lax.map(example, keys)
    f = B.dtype
    return jnp.mean(wrong.astype(f), 0), jnp.mean(flipped.astype(f), 0), jnp.mean(right.astype(f))


@functools.partial(jax.jit, static_argnames=("n_test",))
def _transfer_batch(keys, states, B, data, eps_grid, n_test, linf_scale):
    return jax.vmap(lambda k, s: _one_replica_transfer(k, s, B, data, eps_grid, n_test, linf_scale))(keys, states)


def _check_measurement(eps_grid: npt.ArrayLike, n_test: int, linf_scale: float) -> np.ndarray:
    """The radii as a float64 array ``(E,)``; ``ValueError`` naming ``eps``, ``n_test`` or ``linf_scale``."""
    eps_grid = np.atleast_1d(np.asarray(eps_grid, np.float64))
    for e in eps_grid:
        check_value("eps", e, lambda v: v >= 0, "must be >= 0")
    if isinstance(n_test, bool) or int(n_test) != n_test or n_test < 1:
        raise ValueError(f"n_test={n_test!r} must be an integer >= 1")
    check_value("linf_scale", linf_scale, lambda v: v > 0, "must be > 0")
    return eps_grid


def measure_transfer(
    key: jax.Array,
    states: PairState,
    B: jax.Array,
    data: ModelParams,
    eps_grid: npt.ArrayLike,
    n_test: int = 1000,
    linf_scale: float = 1.0,
) -> tuple[np.ndarray, ...]:
    r"""Empirical transfer on ``n_test`` fresh examples per replica, attacked in N dimensions.

    For each replica, example :math:`(\xi,\tau)`, radius :math:`\epsilon` and kind
    (:data:`TRANSFER_KINDS`): :math:`\tilde\xi = \xi - l\epsilon d` with :math:`d=w_s` (L2) or
    :math:`\operatorname{sign}(w_s)` (L-inf) and :math:`l=\tau` or :math:`\operatorname{sign}(w_s\cdot\xi-b_s)`;
    the target is wrong when :math:`\tau(w_t\cdot\tilde\xi-b_t)\le0`. The L-infinity radius is
    ``linf_scale * eps`` (e.g. :math:`1/\sqrt N`, which makes :math:`\epsilon\|w\|_1` of order :math:`\epsilon`).

    Args:
        key: PRNG key (replica ``r`` uses ``split(key, replicas)[r]``).
        states: :class:`jaxadv.model.pair.PairState` of a batch of replicas (leading axis).
        B: cluster axis ``(N,)``.
        data: :class:`jaxadv.ModelParams` (the data fields are used).
        eps_grid: radii, shape ``(E,)``, each >= 0.
        n_test: test examples per replica.

    Returns:
        ``(wrong, flipped, right)``: per replica the fraction of examples the target gets wrong after the
        attack, shape ``(replicas, 4, E)``; the fraction right before and wrong after, same shape; the
        fraction right before, shape ``(replicas,)``. NumPy float64.
    """
    eps_grid = _check_measurement(eps_grid, n_test, linf_scale)
    replicas = jax.tree.leaves(states)[0].shape[0]
    out = _transfer_batch(
        jax.random.split(key, replicas),
        states,
        B,
        data,
        jnp.asarray(eps_grid, B.dtype),
        int(n_test),
        jnp.asarray(linf_scale, B.dtype),
    )
    return tuple(np.asarray(x, np.float64) for x in out)


class PairMC(NamedTuple):
    """A pair Monte Carlo run.

    Attributes:
        alpha: save times ``(P,)``.
        obs: :class:`PairObservables` of NumPy arrays of shape ``(replicas, P)``.
        eps_grid: radii of the transfer measurement ``(E,)``.
        wrong, flipped: measured fractions ``(replicas, P, 4, E)`` (:func:`measure_transfer`; NaN when not measured).
        right: fraction right before ``(replicas, P)``.
        states: the final :class:`jaxadv.model.pair.PairState` of every replica.
    """

    alpha: np.ndarray
    obs: PairObservables
    eps_grid: np.ndarray
    wrong: np.ndarray
    flipped: np.ndarray
    right: np.ndarray
    states: object


_DEFAULT_SPEC = PairSpec()


def _rule_identity(rule, rp) -> list:
    """A JSON-able description of a training rule and its parameters (checkpoint fingerprints)."""
    return [
        rule.loss.name,
        rule.attack.name,
        rule.eps_law.name,
        rule.gate.name,
        rule.n_eps_nodes,
        {k: np.asarray(v).tolist() for k, v in sorted(rp.items())},
    ]


def plan_pair(
    key: jax.Array | int,
    pp: PairParams,
    spec: PairSpec = _DEFAULT_SPEC,
    *,
    N: int,
    alpha_max: float,
    n_save: int = 10,
    replicas: int = 32,
    R0: Sequence[float] = (0.0, 0.0, 0.0),
    b0: Sequence[float] = (0.0, 0.0),
    eps_grid: npt.ArrayLike = (),
    n_test: int = 1000,
    dtype: DTypeLike = jnp.float32,
    measure_every: bool = True,
    linf_scale: float = 1.0,
) -> Plan:
    r"""Validate the arguments of :func:`simulate_pair` and prepare the driver's :class:`jaxadv.mc.driver.Plan`.

    The plan's sampler is :func:`pair_sampler` (``sp.model`` the :class:`jaxadv.model.pair.PairParams`,
    ``sp.const`` the cluster axis); per-replica keys ``split(key, replicas)``, each split into init and run
    keys, split over the devices; its :class:`jaxadv.mc.driver.SaveMeasure` (with a non-empty ``eps_grid``)
    is :func:`measure_transfer` at the save points (all, or the last without ``measure_every``), replica
    ``r`` of save point ``k`` with ``split(fold_in(fold_in(key, 0x7E57), k), replicas)[r]``. Its arrays follow
    the 8 leaves of :class:`PairObservables`: ``wrong`` ``(4, E)``, ``flipped`` ``(4, E)``, ``right`` ``()``
    per replica. :func:`jaxadv.mc.driver.run_plan` runs it (:func:`simulate_pair`),
    :func:`jaxadv.app.checkpoint.run_resumable` with checkpoints, progress and resumption (the same bits);
    :func:`pair_result` reads the observables. Arguments as :func:`simulate_pair`.
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    if int(N) != N or N < 2:
        raise ValueError(f"N={N!r} must be an integer >= 2")
    if int(replicas) != replicas or replicas < 2:
        raise ValueError(f"replicas={replicas!r} must be an integer >= 2")
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (np.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    R0, b0 = check_pair_start(R0, b0)
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    eps_grid = np.atleast_1d(np.asarray(eps_grid, np.float64))
    if eps_grid.size:
        eps_grid = _check_measurement(eps_grid, n_test, linf_scale)
    N, replicas, n_save = int(N), int(replicas), int(n_save)
    B = unit_direction(N, dtype)
    sp = SamplerParams(pair_as_arrays(pp, dtype), {}, B)
    steps, alpha = save_schedule(N, alpha_max, n_save)
    pair = jax.vmap(jax.random.split)(jax.random.split(key, replicas))
    # replicas split over all devices (padded to a multiple of the count; no-op on one device)
    init_keys, run_keys = shard_batch((pair[:, 0], pair[:, 1]))
    measure = None
    if eps_grid.size:
        test_key = jax.random.fold_in(key, 0x7E57)
        radii, scale, n_test = jnp.asarray(eps_grid, dtype), jnp.asarray(linf_scale, dtype), int(n_test)

        def transfer(k, states):
            keys = shard_batch(jax.random.split(jax.random.fold_in(test_key, k), replicas))  # padded like the states
            return _transfer_batch(keys, states, B, sp.model.s, radii, n_test, scale)

        points = tuple(range(n_save + 1)) if measure_every else (n_save,)
        E = eps_grid.size
        measure = SaveMeasure(transfer, points, ((4, E), (4, E), ()))
    identity = [
        "pair",
        np.asarray(jax.random.key_data(key)).tolist(),
        str(jax.random.key_impl(key)),
        spec.stream,
        _rule_identity(spec.rule_s, pp.rp_s),
        _rule_identity(spec.rule_t, pp.rp_t),
        [float(x) for x in pp.s],
        [float(x) for x in pp.t],
        N,
        float(alpha_max),
        n_save,
        replicas,
        list(R0),
        list(b0),
        str(dtype),
        {  # the transfer measurement (last: pair_result reads the radii here)
            "eps_grid": eps_grid.tolist(),
            "n_test": int(n_test) if eps_grid.size else None,
            "measure_every": bool(measure_every) if eps_grid.size else None,
            "linf_scale": float(linf_scale) if eps_grid.size else None,
        },
    ]
    return Plan(
        pair_sampler(spec),
        sp,
        init_keys,
        run_keys,
        np.asarray(R0),
        np.asarray(b0),
        replicas,
        N,
        n_save,
        steps,
        alpha,
        dtype,
        identity,
        measure=measure,
    )


def pair_result(plan: Plan, obs: list, states: PairState | None = None) -> PairMC:
    """The :class:`PairMC` of the driver's observables ``obs`` of a :func:`plan_pair` plan (the 8 leaves of
    :class:`PairObservables`, then the transfer measurement's ``wrong``, ``flipped``, ``right`` when the plan
    measures), as float64; ``states``: the final states, when the caller has them."""

    def f64(x):
        return np.asarray(x, np.float64)

    n = len(PairObservables._fields)
    o = PairObservables(*(f64(x) for x in obs[:n]))
    P = plan.n_save + 1
    if plan.measure is not None:
        eps_grid = np.asarray(plan.identity[-1]["eps_grid"], np.float64)
        wrong, flipped, right = (f64(x) for x in obs[n : n + 3])
    else:
        eps_grid = np.zeros(0)
        wrong = np.full((plan.replicas, P, 4, 0), np.nan)
        flipped = np.full_like(wrong, np.nan)
        right = np.full((plan.replicas, P), np.nan)
    return PairMC(plan.alpha, o, eps_grid, wrong, flipped, right, states)


def simulate_pair(
    key: jax.Array | int,
    pp: PairParams,
    spec: PairSpec = DEFAULT_PAIR_SPEC,
    *,
    N: int,
    alpha_max: float,
    n_save: int = 10,
    replicas: int = 32,
    R0: Sequence[float] = (0.0, 0.0, 0.0),
    b0: Sequence[float] = (0.0, 0.0),
    eps_grid: npt.ArrayLike = (),
    n_test: int = 1000,
    dtype: DTypeLike = jnp.float32,
    measure_every: bool = True,
    linf_scale: float = 1.0,
) -> PairMC:
    r"""Run ``replicas`` pairs in N dimensions (:func:`pair_sampler`) and measure transfer on fresh examples.

    The run is :func:`plan_pair` on the Monte Carlo driver (:func:`jaxadv.mc.driver.run_plan`: one ``vmap``
    over the replicas, split over all devices, one jitted call per save interval);
    :func:`jaxadv.app.checkpoint.simulate_pair_resumable` is the same run with a checkpoint file and a
    progress bar (the same bits).

    Args:
        key: PRNG key; replica ``r`` is initialised and run with the keys of ``split(key, replicas)[r]``
            as in :func:`jaxadv.simulate`; the test examples of save point ``k`` use ``fold_in(test_key, k)``.
        pp: :class:`jaxadv.model.pair.PairParams` (:func:`jaxadv.model.pair.pair_params`).
        spec: :class:`jaxadv.model.pair.PairSpec`.
        N, alpha_max, n_save, replicas: sizes (:func:`jaxadv.mc.driver.save_schedule`).
        R0: initial ``(R_s, R_t, Q)``; b0: initial ``(b_s, b_t)``.
        eps_grid: radii of the transfer measurement (empty: none).
        n_test: test examples per replica and save point.
        dtype: ``jnp.float32`` or ``jnp.float64`` (needs ``jax_enable_x64``).
        measure_every: measure at every save point (else only at the last).
        linf_scale: the L-infinity radius is ``linf_scale * eps`` (:func:`measure_transfer`).

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams
        >>> from jaxadv.model.pair import pair_params
        >>> from jaxadv.mc.pair import simulate_pair
        >>> mc = simulate_pair(jax.random.key(0), pair_params(ModelParams()), N=50, alpha_max=1.0, n_save=2,
        ...                    replicas=3)
        >>> mc.obs.Q.shape
        (3, 3)
    """
    plan = plan_pair(
        key,
        pp,
        spec,
        N=N,
        alpha_max=alpha_max,
        n_save=n_save,
        replicas=replicas,
        R0=R0,
        b0=b0,
        eps_grid=eps_grid,
        n_test=n_test,
        dtype=dtype,
        measure_every=measure_every,
        linf_scale=linf_scale,
    )
    states, obs = run_plan(plan, with_states=True)
    return pair_result(plan, obs, states)
