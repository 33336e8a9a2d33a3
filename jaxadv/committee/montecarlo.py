r"""N-dimensional Monte Carlo of the committee under adversarial on-line training.

One replica is a committee :math:`(W, b, v)`, ``W`` of shape ``(K, N)``. A step draws a cluster
:math:`c\sim p`, :math:`\xi=\sum_j a_{cj}B_j+\sqrt{v_c}z`, attacks it in N dimensions and takes
the gradient step at the fixed perturbed input:

.. math::
    w_k\leftarrow w_k+\tfrac{\eta_w}{N}\Delta_k\tilde\xi,\quad
    b_k\leftarrow b_k-\tfrac{\eta_b}{N}\Delta_k,\quad
    v_k\leftarrow v_k-\tfrac{\eta_v}{N}\partial L/\partial v_k\ (\text{if trained}),

then :math:`w_k\leftarrow w_k/\|w_k\|` (if normalised) or, with ``spec.lipschitz``, the Lipschitz
projection :math:`W\leftarrow\min(1,L_\max/L)\,W` (:mod:`jaxadv.committee.lipschitz`). FGM and PGD use
``jax.grad`` of the committee loss with respect to :math:`\xi`; the worst case finds :math:`\gamma` in field space
(:func:`jaxadv.committee.fields.worst_case`) and perturbs by :math:`\delta=W^\top\gamma` (each the Monte Carlo
face of its record, :mod:`jaxadv.committee.attacks`). The weight update is ``jax.grad`` of the loss (a
:class:`jaxadv.model.losses.Loss` record of the output :math:`\sigma`, with the rule's parameters
:func:`~jaxadv.committee.params.rule_params`) with respect to ``(W, b, v)`` at fixed :math:`\tilde\xi`.

Kernels for one replica (:func:`init`, :func:`step`, :func:`observe`), run by the Monte Carlo driver of
the single-layer model as :func:`committee_sampler` (:mod:`jaxadv.mc.driver`: replicas ``vmap``-ped and
split over the devices; :func:`jaxadv.app.checkpoint.run_resumable`: checkpoints, progress, resumption);
step :math:`\mu` of a replica uses ``fold_in(run_key, mu)``. The
directions are :math:`B_j=e_j` (rotation invariance makes the choice immaterial).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import DTypeLike

from ..mc.driver import Plan, run_plan, save_schedule
from ..mc.full import Sampler, SamplerParams
from ..model.losses import get_loss
from ..schedule import cast as cast_param
from ..schedule import describe, in_steps, is_schedule
from ..sharding import one_at_a_time, shard_batch
from .attacks import committee_attack
from .fields import committee_output, loss_value
from .lipschitz import project_weights
from .ode import check_overlaps
from .params import (
    CommitteeParams,
    CommitteeSpec,
    Mixture,
    check_second_layer,
    default_second_layer,
    rule_params,
    validate_mixture,
    validate_params,
    validate_spec,
)

__all__ = [
    "CommitteeMC",
    "CommitteeObs",
    "CommitteeMCResult",
    "directions",
    "init",
    "sample_example",
    "update",
    "step",
    "observe",
    "input_attack",
    "CommitteeModel",
    "committee_sampler",
    "plan_committee",
    "committee_result",
    "simulate_committee",
]


class CommitteeMC(NamedTuple):
    """State of one replica.

    Attributes:
        W: first layer, shape ``(K, N)``.
        b: biases, shape ``(K,)``.
        v: second layer, shape ``(K,)``.
    """

    W: jax.Array
    b: jax.Array
    v: jax.Array


class CommitteeObs(NamedTuple):
    """Order parameters of one replica: ``Q`` ``(K, K)``, ``R`` ``(K, D)``, ``b``, ``v`` ``(K,)``."""

    Q: jax.Array
    R: jax.Array
    b: jax.Array
    v: jax.Array


def directions(D: int, N: int, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """The data directions :math:`B_j = e_j`, shape ``(D, N)``."""
    return jnp.eye(D, N, dtype=dtype)


# LAPACK one matrix at a time under the driver's vmap: batched, it deadlocks a run split over host
# devices (jaxadv.sharding.one_at_a_time)
_orthonormal_rows = one_at_a_time(lambda G: jnp.linalg.qr(G.T)[0].T)
_eigh = one_at_a_time(lambda S: tuple(jnp.linalg.eigh(S)))


def init(
    key: jax.Array,
    B: jax.Array,
    K: int,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    b0: npt.ArrayLike | None = None,
    v0: npt.ArrayLike | None = None,
) -> CommitteeMC:
    r"""Initial committee: rows of ``W`` uniform on the sphere (``Q0 is None``), or with exactly the
    overlaps :math:`WW^\top=Q_0`, :math:`WB^\top=R_0`: :math:`W=R_0B+CP` with ``P`` ``K`` orthonormal rows
    orthogonal to the :math:`B_j` (random) and :math:`CC^\top=Q_0-R_0R_0^\top`."""
    D, N = B.shape
    dtype = B.dtype
    G = jax.random.normal(key, (K, N), dtype)
    b0 = jnp.zeros((K,), dtype) if b0 is None else jnp.asarray(b0, dtype)
    v0 = default_second_layer(K, dtype) if v0 is None else jnp.asarray(v0, dtype)
    if Q0 is None:
        return CommitteeMC(G / jnp.linalg.norm(G, axis=1, keepdims=True), b0, v0)
    Q0, R0 = jnp.asarray(Q0, dtype), jnp.asarray(R0, dtype)
    G = G - (G @ B.T) @ B
    P = _orthonormal_rows(G)
    lam, U = _eigh(Q0 - R0 @ R0.T)
    C = U * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]
    return CommitteeMC(R0 @ B + C @ P, b0, v0)


def _loss(state: CommitteeMC, xi, tau, loss: str, rp=None):
    return loss_value(loss, committee_output(state.W @ xi - state.b, state.v), tau, rp)


def input_attack(
    key: jax.Array,
    state: CommitteeMC,
    xi: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    spec: CommitteeSpec,
    rp: dict | None = None,
) -> jax.Array:
    r"""The perturbation :math:`\delta` (shape ``(N,)``) of the training attack, in N dimensions: the Monte Carlo
    face of the record of ``spec.attack`` (:mod:`jaxadv.committee.attacks`).

    FGM: :math:`\epsilon\nabla_\xi L/\|\nabla_\xi L\|`. PGD: ``pgd_steps`` times
    :math:`\delta\leftarrow\Pi_\epsilon(\delta+s\nabla_\xi L/\|\nabla_\xi L\|)` from 0 or from a
    uniform point of the ball (``key``). Worst case: :math:`W^\top\gamma` from field space. :math:`L` is what
    the attacks ascend (:func:`jaxadv.model.losses.ascent_value`); ``rp`` the rule's parameters
    (:func:`jaxadv.committee.params.rule_params`)."""
    return committee_attack(spec).perturb(key, state, xi, tau, eps, spec, get_loss(spec.loss), rp)


def update(
    key: jax.Array,
    state: CommitteeMC,
    xi: jax.Array,
    tau: float | jax.Array,
    params: CommitteeParams,
    spec: CommitteeSpec,
) -> CommitteeMC:
    """The learning rule on one example ``(xi, tau)``: attack (``key`` for a PGD random start), then the
    gradient step at the fixed perturbed input and the normalisation (module docstring)."""
    N = xi.shape[0]
    rp = rule_params(params)
    xi_adv = jax.lax.stop_gradient(xi + input_attack(key, state, xi, tau, params.eps, spec, rp))
    g = jax.grad(_loss)(state, xi_adv, tau, spec.loss, rp)
    W = state.W - (params.eta_w / N) * g.W
    if spec.normalise:
        W = W / jnp.linalg.norm(W, axis=1, keepdims=True)
    b = state.b - (params.eta_b / N) * g.b
    v = state.v - (params.eta_v / N) * g.v if spec.train_v else state.v
    if spec.lipschitz is not None:  # Lipschitz normalisation, with the updated v
        W = project_weights(W, v, spec.lipschitz)
    return CommitteeMC(W, b, v)


def sample_example(key: jax.Array, mixture: Mixture, B: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""One labelled example: cluster :math:`c\sim p`, :math:`\xi=\sum_ja_{cj}B_j+\sqrt{v_c}z`;
    returns ``(xi, tau)``."""
    k_c, k_z = jax.random.split(key)
    c = jax.random.categorical(k_c, jnp.log(mixture.priors))
    z = jax.random.normal(k_z, (B.shape[1],), B.dtype)
    return mixture.centres[c] @ B + jnp.sqrt(mixture.variances[c]) * z, mixture.labels[c]


def step(
    key: jax.Array, state: CommitteeMC, mixture: Mixture, params: CommitteeParams, spec: CommitteeSpec, B: jax.Array
) -> tuple[CommitteeMC, CommitteeObs]:
    """One on-line step of one replica (:func:`sample_example`, :func:`update`); returns ``(state, observation)``."""
    k_x, k_a = jax.random.split(key)
    xi, tau = sample_example(k_x, mixture, B)
    new = update(k_a, state, xi, tau, params, spec)
    return new, observe(new, B)


def observe(state: CommitteeMC, B: jax.Array) -> CommitteeObs:
    """:math:`Q=WW^\\top`, :math:`R=WB^\\top`, ``b``, ``v``."""
    return CommitteeObs(state.W @ state.W.T, state.W @ B.T, state.b, state.v)


class CommitteeMCResult(NamedTuple):
    """Order parameters of all replicas at the save points (NumPy).

    Attributes:
        alpha: save times ``(P,)`` (first 0).
        Q: ``(replicas, P, K, K)``; R: ``(replicas, P, K, D)``; b, v: ``(replicas, P, K)``.
        finite: ``(replicas, P)``, ``True`` where every order parameter is finite.
    """

    alpha: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    b: np.ndarray
    v: np.ndarray
    finite: np.ndarray


class CommitteeModel(NamedTuple):
    """The traced inputs of the committee's step (``SamplerParams.model`` of :func:`committee_sampler`).

    Attributes:
        mixture: :class:`jaxadv.committee.params.Mixture` (arrays of the state's dtype).
        params: :class:`jaxadv.committee.params.CommitteeParams` (scalars of the state's dtype).
    """

    mixture: Mixture
    params: CommitteeParams


@functools.cache
def committee_sampler(spec: CommitteeSpec) -> Sampler[CommitteeSpec]:
    r"""The committee as a :class:`jaxadv.mc.full.Sampler`, for the Monte Carlo driver
    (:mod:`jaxadv.mc.driver`: replicas ``vmap``-ped and split over the devices, step :math:`\mu` keyed
    ``fold_in(run_key, mu)``; :func:`jaxadv.app.checkpoint.run_resumable`: checkpoints and resumption).

    * ``sp``: ``SamplerParams(CommitteeModel(mixture, params), {}, B)`` with ``B`` the directions
      :func:`directions`, shape ``(D, N)``.
    * ``init(key, sp, R0, b0)``: :func:`init` with ``R0 = (Q0, R0)`` (``None``: rows uniform on the
      sphere) and ``b0 = (b0, v0)``, then the Lipschitz projection when ``spec.lipschitz`` is set.
    * ``step(key, state, sp)``: :func:`step`; ``observe(state, sp)``: :func:`observe` (:class:`CommitteeObs`).

    ``spec`` is static; equal specs give the same (cached) sampler, so ``jit`` compiles once per spec.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxadv.committee import CommitteeParams, CommitteeSpec, xor
        >>> from jaxadv.committee.montecarlo import CommitteeModel, committee_sampler, directions
        >>> from jaxadv.mc.full import SamplerParams
        >>> s = committee_sampler(CommitteeSpec(K=2))
        >>> sp = SamplerParams(CommitteeModel(xor(), CommitteeParams()), {}, directions(2, 20))
        >>> st = s.init(jax.random.key(0), sp, None, (jnp.zeros(2), jnp.full(2, 0.5)))
        >>> st, obs = s.step(jax.random.key(1), st, sp)
        >>> obs.Q.shape, obs.R.shape
        ((2, 2), (2, 2))
    """

    def _init(key, sp, R0=None, b0=None):
        B = sp.const
        b, v = (None, None) if b0 is None else b0
        Q0, R0_ = (None, None) if R0 is None else R0
        s0 = init(key, B, spec.K, Q0, R0_, b, v)
        if spec.lipschitz is not None:
            s0 = s0._replace(W=project_weights(s0.W, s0.v, spec.lipschitz))
        return s0

    def _step(key, state, sp):
        return step(key, state, sp.model.mixture, sp.model.params, spec, sp.const)

    return Sampler("committee", _init, _step, lambda state, sp: observe(state, sp.const), spec)


def plan_committee(
    key: jax.Array | int,
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    *,
    N: int,
    alpha_max: float,
    n_save: int = 10,
    replicas: int = 100,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    b0: npt.ArrayLike | None = None,
    v0: npt.ArrayLike | None = None,
    dtype: DTypeLike = jnp.float32,
) -> Plan:
    """Validate the arguments of :func:`simulate_committee` and prepare the driver's
    :class:`jaxadv.mc.driver.Plan`: :func:`committee_sampler`, per-replica keys (``split(key, replicas)``,
    each split into init and run keys) split over the devices, and the identity of the run (its
    checkpoint fingerprint)."""
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    spec = validate_spec(spec)
    mixture = validate_mixture(mixture)
    validate_params(params)
    K, D = spec.K, mixture.n_directions
    if int(N) != N or N < D + K:
        raise ValueError(f"N={N!r} must be an integer >= D + K = {D + K}")
    if int(replicas) != replicas or replicas < 1:
        raise ValueError(f"replicas={replicas!r} must be an integer >= 1")
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (math.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if (Q0 is None) != (R0 is None):
        raise ValueError(f"Q0={Q0!r}, R0={R0!r}: give both initial overlaps or neither")
    given = Q0 is not None
    Q0, R0 = check_overlaps(K, D, Q0, R0, spec.normalise)
    b0 = np.zeros(K) if b0 is None else check_second_layer(b0, K, "b0")
    v0 = np.full(K, 1.0 / K) if v0 is None else check_second_layer(v0, K, "v0")
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    N, replicas, n_save = int(N), int(replicas), int(n_save)
    steps, alpha = save_schedule(N, alpha_max, n_save)
    to = lambda z: cast_param(z, dtype)  # a schedule keeps its knots (jaxadv.schedule)
    sp = SamplerParams(
        CommitteeModel(Mixture(*map(to, mixture)), CommitteeParams(*map(to, params))), {}, directions(D, N, dtype)
    )
    sp = in_steps(sp, N)  # schedules read at the step's midpoint (jaxadv.mc.driver)
    pair = jax.vmap(jax.random.split)(jax.random.split(key, replicas))
    # replicas split over all devices (padded to a multiple of the count; no-op on one device)
    init_keys, run_keys = shard_batch((pair[:, 0], pair[:, 1]))
    lst = lambda z: np.asarray(z, np.float64).tolist()
    hinge = params.hinge_margin
    identity = [
        "committee",
        np.asarray(jax.random.key_data(key)).tolist(),
        str(jax.random.key_impl(key)),
        {k: lst(v) for k, v in mixture._asdict().items()},
        # the hinge's margin only where it is set: runs without it keep the fingerprints they had before the field
        [describe(x) for x in params[:4]] + ([describe(hinge)] if is_schedule(hinge) or float(hinge) != 0 else []),
        repr(spec),
        N,
        float(alpha_max),
        n_save,
        replicas,
        lst(Q0) if given else None,
        lst(R0) if given else None,
        lst(b0),
        lst(v0),
        str(dtype),
    ]
    return Plan(
        committee_sampler(spec),
        sp,
        init_keys,
        run_keys,
        (Q0, R0) if given else None,
        (b0, v0),
        replicas,
        N,
        n_save,
        steps,
        alpha,
        dtype,
        identity,
    )


def committee_result(plan: Plan, obs: Sequence[np.ndarray]) -> CommitteeMCResult:
    """The :class:`CommitteeMCResult` of the driver's observables ``obs`` (leaves of :class:`CommitteeObs`,
    each of shape ``(replicas, n_save + 1, ...)``; :func:`jaxadv.mc.driver.run_plan`)."""
    Q, R, b, v = obs
    flat = lambda x: x.reshape(x.shape[:2] + (-1,))
    finite = np.all(np.isfinite(flat(Q)), -1) & np.all(np.isfinite(flat(R)), -1)
    finite &= np.all(np.isfinite(b), -1) & np.all(np.isfinite(v), -1)
    return CommitteeMCResult(plan.alpha, Q, R, b, v, finite)


def simulate_committee(
    key: jax.Array | int,
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    *,
    N: int,
    alpha_max: float,
    n_save: int = 10,
    replicas: int = 100,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    b0: npt.ArrayLike | None = None,
    v0: npt.ArrayLike | None = None,
    dtype: DTypeLike = jnp.float32,
) -> CommitteeMCResult:
    r"""Run ``replicas`` independent N-dimensional committees on the Monte Carlo driver
    (:func:`committee_sampler`, :func:`plan_committee`, :func:`jaxadv.mc.driver.run_plan`): one ``vmap``
    over the replicas, split over all devices, one jitted call per save interval.
    :func:`jaxadv.app.checkpoint.simulate_committee_resumable` is the same run with a checkpoint file and
    a progress bar (same bits).

    Args:
        key: PRNG key (or an int seed); replica ``r`` uses ``split(key, replicas)[r]`` (split again into
            init and run keys); step :math:`\mu` of a replica uses ``fold_in(run_key, mu)``.
        mixture, params, spec: data, swept floats, static choices.
        N: input dimension.
        alpha_max: final time; ``steps_per_save = round(alpha_max N / n_save)``.
        n_save: save intervals.
        replicas: number of independent committees.
        Q0, R0: exact initial overlaps (both or neither; ``None``: random on the sphere).
        b0, v0: initial biases and second layer (default 0 and :math:`1/K`).
        dtype: ``jnp.float32`` or ``jnp.float64``.

    Example:
        >>> import jax
        >>> from jaxadv.committee import CommitteeParams, CommitteeSpec, xor
        >>> from jaxadv.committee.montecarlo import simulate_committee
        >>> mc = simulate_committee(jax.random.key(0), xor(), CommitteeParams(), CommitteeSpec(K=2),
        ...                         N=50, alpha_max=0.2, n_save=2, replicas=3)
        >>> mc.Q.shape
        (3, 3, 2, 2)
    """
    plan = plan_committee(
        key,
        mixture,
        params,
        spec,
        N=N,
        alpha_max=alpha_max,
        n_save=n_save,
        replicas=replicas,
        Q0=Q0,
        R0=R0,
        b0=b0,
        v0=v0,
        dtype=dtype,
    )
    return committee_result(plan, run_plan(plan))
