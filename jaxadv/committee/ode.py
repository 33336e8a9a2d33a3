r"""Large-N ODEs of the committee's order parameters :math:`(Q, R, b, v)`.

With :math:`\Delta_k=-\ell'(\tilde\sigma)v_kg'(\tilde x_k)` at the attacked fields
:math:`\tilde x = x+Q\gamma`, :math:`h_l=w_l\cdot\tilde\xi=\tilde x_l+b_l`,
:math:`y_j=B_j\cdot\tilde\xi=B_j\cdot\xi+(R^\top\gamma)_j` and
:math:`\langle\cdot\rangle=\sum_c p_c\langle\cdot\rangle_c` (derivation: ``docs/theory.md``,
section 12), without normalisation

.. math::
    \dot R_{kj}=\eta_w\langle\Delta_k y_j\rangle,\quad
    \dot Q_{kl}=\eta_w\langle\Delta_k h_l+\Delta_l h_k\rangle+\eta_w^2\sum_c p_cv_c\langle\Delta_k\Delta_l\rangle_c,

and with per-unit normalisation (:math:`Q_{kk}=1` kept)

.. math::
    \dot R_{kj}=\eta_w\langle\Delta_k(y_j-R_{kj}h_k)\rangle
      -\tfrac{\eta_w^2}{2}R_{kj}\sum_cp_cv_c\langle\Delta_k^2\rangle_c,

.. math::
    \dot Q_{kl}=\eta_w\langle\Delta_k(h_l-Q_{kl}h_k)+\Delta_l(h_k-Q_{kl}h_l)\rangle
      +\eta_w^2\sum_cp_cv_c\langle\Delta_k\Delta_l-\tfrac12Q_{kl}(\Delta_k^2+\Delta_l^2)\rangle_c;

always :math:`\dot b_k=-\eta_b\langle\Delta_k\rangle` and, when trained,
:math:`\dot v_k=-\eta_v\langle\ell'(\tilde\sigma)g(\tilde x_k)\rangle`. The cluster averages are
K-dimensional Gaussian integrals over the clean fields (:mod:`jaxadv.committee.quadrature`), with
:math:`E[B_j\cdot\xi\mid x, c]` from the joint Gaussian of :math:`(x, B\cdot\xi)`. With
``spec.lipschitz`` the state is projected, :math:`(Q,R)\to(s^2Q,sR)`, at the start and after every RK4
step (:mod:`jaxadv.committee.lipschitz`).

:func:`solve_committee_ode` integrates them with the students' one solve
(:func:`jaxadv.ode.solve.plan_steps`, :func:`jaxadv.ode.solve.solve_grid`): by default RK4 with the
embedded error estimate and a quadrature rule climbed up :func:`jaxadv.committee.quadrature.rule_ladder`
until it meets a tolerance (default :math:`10^{-6}`), checked at the start and at the end.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from ..model.losses import CROSS_ENTROPY, HINGE, LOGISTIC, QUADRATIC, get_loss
from ..ode.rk4 import DOPRI5, RK4, ButcherTableau, integrate
from ..ode.solve import STATUS_LEFT_DOMAIN, STATUS_OK, STATUS_STEP_FAILURE, StepPlan, plan_steps, solve_grid
from ..schedule import at, broadcast_to, cast, grid_shape
from .attacks import FGM, attack_coefficients, committee_attack
from .fields import forces, geometry, gprime
from .lipschitz import constrained_drift, project_state
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
from .quadrature import (
    DEFAULT_RULE,
    DEFAULT_TOL,
    WHITENINGS,
    GaussRule,
    choose_rule,
    chunked_nodes,
    default_rule,
    rule_ladder,
    tensor_nodes,
    weighted_sums,
)

__all__ = [
    "CommitteeState",
    "CommitteeODEResult",
    "Averages",
    "cluster_averages",
    "averages",
    "committee_drift",
    "make_committee_field",
    "drift_from_averages",
    "solve_committee_ode",
    "committee_trajectory",
    "check_overlaps",
    "committee_status",
    "QuadratureReport",
]

#: nodes per chunk of the Gaussian averages (a ``lax.scan`` over chunks above it)
BATCH = 2048


class CommitteeState(NamedTuple):
    """Order parameters (the ODE's pytree ``y``).

    Attributes:
        Q: :math:`Q_{kl}=w_k\\cdot w_l`, shape ``(K, K)``.
        R: :math:`R_{kj}=w_k\\cdot B_j`, shape ``(K, D)``.
        b: biases, shape ``(K,)``.
        v: second layer, shape ``(K,)``.
    """

    Q: jax.Array
    R: jax.Array
    b: jax.Array
    v: jax.Array


class Averages(NamedTuple):
    """Gaussian averages of one cluster (or mixed over clusters) that the ODE is made of.

    Attributes:
        D1: :math:`\\langle\\Delta_k\\rangle`, shape ``(K,)``.
        Dy: :math:`\\langle\\Delta_k y_j\\rangle`, shape ``(K, D)``.
        Dh: :math:`\\langle\\Delta_k h_l\\rangle`, shape ``(K, K)``.
        DD: :math:`\\langle\\Delta_k\\Delta_l\\rangle` (mixed: weighted by :math:`v_c`), shape ``(K, K)``.
        Fv: :math:`\\langle -\\ell' g(\\tilde x_k)\\rangle`, shape ``(K,)``.
    """

    D1: jax.Array
    Dy: jax.Array
    Dh: jax.Array
    DD: jax.Array
    Fv: jax.Array


def _whiten(geom, whitening: str):
    """``(L, P)`` of the whitening (:class:`jaxadv.committee.quadrature.GaussRule`): ``L L^T = Q``, ``P = L^{+T}``."""
    return (geom.L, geom.P) if whitening == WHITENINGS[0] else (geom.L_sym, geom.P_sym)


def _mm(A, X):
    """``A @ X`` for a small ``A`` ``(p, q)`` and rows ``X`` ``(q, n)``, written as sums of scaled rows so that
    XLA fuses it with the elementwise work around it (a ``dot`` is a kernel of its own)."""
    return jnp.stack([sum(A[i, j] * X[j] for j in range(A.shape[1])) for i in range(A.shape[0])])


def _fgm_fixed_sign(x, Q, v, tau, eps):
    r"""FGM's coefficients :math:`\gamma` (:func:`jaxadv.committee.fields.fgm`) when the slope it ascends has the sign
    :math:`-\operatorname{sgn}\tau` at every field, for fields ``x`` ``(K, b)``, units first.

    With :math:`\kappa=\ell'(\sigma)u`, :math:`u_k=v_kg'(x_k)`, the normalisation cancels the slope's size:
    :math:`\gamma=\epsilon\kappa/\sqrt{\kappa^\top Q\kappa}=\epsilon\operatorname{sgn}(\ell')\,u/\sqrt{u^\top Qu}`.
    When :math:`\sum_k|v_k|\le|\tau|` the output :math:`\sigma=\sum_kv_k\operatorname{erf}x_k` has
    :math:`|\sigma|<|\tau|`, so :math:`\operatorname{sgn}\ell'=-\operatorname{sgn}\tau` for the quadratic
    (:math:`\sigma-\tau`), logistic and cross-entropy losses and the hinge's margin alike (:func:`_sign_known`),
    and no erf is needed. In floating point the quadratic's :math:`\sigma=\tau` where every unit's erf rounds to
    :math:`\pm1` (:math:`|x_k|>5.9`): ``fgm`` gives 0 there and this the direction of :math:`u`, where the force is
    negligible either way (measured: the drifts of the two agree to 5.6e-17 at the XOR preset's start and end,
    K = 2 and 3, quadratic and logistic loss; ``docs/theory.md``, section 12.7)."""
    u = v[:, None] * gprime(x)
    K = u.shape[0]
    n2 = sum(Q[i, j] * u[i] * u[j] for i in range(K) for j in range(K))[None]
    ok = n2 > 0
    return jnp.where(ok, (-jnp.sign(tau) * eps) * u / jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


#: the losses whose ascended slope has the sign :math:`-\operatorname{sgn}\tau` wherever :math:`|\sigma|<|\tau|`
_SIGN_KNOWN_LOSSES = (QUADRATIC, LOGISTIC, CROSS_ENTROPY, HINGE)


def _sign_known(spec: CommitteeSpec, v0: Any, labels: Any) -> bool:
    r"""FGM's ascended slope has the sign :math:`-\operatorname{sgn}\tau` all along (:func:`_fgm_fixed_sign`): the
    FGM record, a loss of :data:`_SIGN_KNOWN_LOSSES`, the second layer fixed (``not spec.train_v``) with
    :math:`\sum_k|v_k|\le\min_c|\tau_c|`. Decided outside ``jit``."""
    if committee_attack(spec) is not FGM or spec.train_v or get_loss(spec.loss) not in _SIGN_KNOWN_LOSSES:
        return False
    return bool(np.sum(np.abs(np.asarray(v0, np.float64))) <= np.min(np.abs(np.asarray(labels, np.float64))))


def _node_sums(
    state: CommitteeState,
    centre,
    variance,
    label,
    eps,
    spec: CommitteeSpec,
    whitening: str,
    rp=None,
    sign_known: bool = False,
):
    r"""``f(t, w)``: the weighted sums :math:`\sum_nw_n(\cdot)` of :class:`Averages` over a chunk of whitened
    nodes ``t`` ``(K, b)``, units first, of one cluster (:func:`cluster_averages`): every operation runs
    along the nodes (measured 2-3x faster than a ``vmap`` over nodes, whose arrays have the K units as their
    last, short axis). ``sign_known`` (static): FGM by :func:`_fgm_fixed_sign` (:func:`_sign_known` holds)."""
    Q, R, b, v = state
    geom = geometry(Q)
    L, P = _whiten(geom, whitening)
    M = P.T @ R
    m = R @ centre - b
    s = jnp.sqrt(variance)

    def sums(t, w):
        x = m[:, None] + s * _mm(L, t)  # (K, b)
        if sign_known:
            gamma = _fgm_fixed_sign(x, geom.Q, v, label, eps)
        else:
            gamma = attack_coefficients(x, geom, v, label, eps, spec, rp)
        xt = x + _mm(Q, gamma)
        Delta, Fv = forces(xt, v, label, spec.loss, rp)
        y = centre[:, None] + s * _mm(M.T, t) + _mm(R.T, gamma)  # (D, b)
        wD = Delta * w[None, :]
        D1 = wD.sum(axis=1)
        # a product each (a concatenation of the rows before one product was measured 1.2x slower an evaluation),
        # and <Delta h> = <Delta xt> + <Delta> b^T, so that h is not formed
        return Averages(D1, wD @ y.T, wD @ xt.T + D1[:, None] * b[None, :], wD @ Delta.T, Fv @ w)

    return sums


def cluster_averages(
    state: CommitteeState,
    centre: jax.Array,
    variance: float | jax.Array,
    label: float | jax.Array,
    eps: float | jax.Array,
    spec: CommitteeSpec,
    rule: GaussRule = DEFAULT_RULE,
    rp: dict | None = None,
) -> Averages:
    r"""The averages of :class:`Averages` in one cluster (centre :math:`a_c` of shape ``(D,)``; ``rp``: the rule's
    parameters, :func:`jaxadv.committee.params.rule_params`, e.g. the hinge's margin).

    Whitened nodes :math:`t`: :math:`x=m_c+\sqrt{v_c}Lt`, :math:`m_c=Ra_c-b`, and
    :math:`E[B\cdot\xi\mid t]=a_c+\sqrt{v_c}\,(P^\top R)^\top t` (:math:`LL^\top=Q`, :math:`P=L^{+\top}`
    of the geometry, ``rule.whitening``: no :math:`Q^{-1}`; directions of clipped eigenvalues vanish).
    The attacks use the eigenbasis of the geometry whatever the whitening, as the Monte Carlo does."""
    K = state.Q.shape[0]
    t, w = chunked_nodes(K, rule, BATCH)
    dtype = state.Q.dtype
    return _cluster_averages_at(state, centre, variance, label, eps, spec, rule.whitening, t, w, dtype, rp)


def _cluster_averages_at(
    state, centre, variance, label, eps, spec, whitening, t, w, dtype=None, rp=None, sign_known=False
):
    """:func:`cluster_averages` on given chunked nodes (``t`` ``(C, K, b)``, ``w`` ``(C, b)``; may be traced)."""
    dtype = state.Q.dtype if dtype is None else dtype
    sums = _node_sums(state, centre, variance, label, eps, spec, whitening, rp, sign_known)
    return weighted_sums(sums, jnp.asarray(t, dtype), jnp.asarray(w, dtype))


def _mix(per: Averages, mixture: Mixture) -> Averages:
    p = mixture.priors

    def mix(z, wts):
        return jnp.tensordot(wts, z, axes=1)

    return Averages(mix(per.D1, p), mix(per.Dy, p), mix(per.Dh, p), mix(per.DD, p * mixture.variances), mix(per.Fv, p))


def averages(
    state: CommitteeState,
    mixture: Mixture,
    eps: float | jax.Array,
    spec: CommitteeSpec,
    rule: GaussRule = DEFAULT_RULE,
    rp: dict | None = None,
) -> Averages:
    r"""Mixture averages :math:`\sum_cp_c\langle\cdot\rangle_c` (``DD`` weighted by :math:`p_cv_c`)."""
    per = jax.vmap(lambda a, var, lab: cluster_averages(state, a, var, lab, eps, spec, rule, rp))(
        mixture.centres, mixture.variances, mixture.labels
    )
    return _mix(per, mixture)


def _averages_at(state, mixture, eps, spec, whitening, t, w, rp=None, sign_known=False) -> Averages:
    """:func:`averages` on given chunked (possibly traced) node arrays."""
    per = jax.vmap(
        lambda a, var, lab: _cluster_averages_at(state, a, var, lab, eps, spec, whitening, t, w, None, rp, sign_known)
    )(mixture.centres, mixture.variances, mixture.labels)
    return _mix(per, mixture)


def drift_from_averages(state: CommitteeState, A: Averages, params: CommitteeParams, spec: CommitteeSpec) -> Any:
    """The right-hand side :math:`d(Q, R, b, v)/d\\alpha` (module docstring) from the mixture averages ``A``."""
    Q, R, b, v = state
    ew = params.eta_w
    if spec.normalise:
        hk = jnp.diagonal(A.Dh)  # <Delta_k h_k>
        dk = jnp.diagonal(A.DD)  # sum_c p_c v_c <Delta_k^2>
        dR = ew * (A.Dy - R * hk[:, None]) - 0.5 * ew**2 * R * dk[:, None]
        G = A.Dh - Q * hk[:, None]
        dQ = ew * (G + G.T) + ew**2 * (A.DD - 0.5 * Q * (dk[:, None] + dk[None, :]))
    else:
        dR = ew * A.Dy
        dQ = ew * (A.Dh + A.Dh.T) + ew**2 * A.DD
    db = -params.eta_b * A.D1
    dv = params.eta_v * A.Fv if spec.train_v else jnp.zeros_like(v)
    return CommitteeState(dQ, dR, db, dv)


def committee_drift(
    state: CommitteeState,
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    rule: GaussRule = DEFAULT_RULE,
) -> CommitteeState:
    """The right-hand side :math:`d(Q, R, b, v)/d\\alpha` (module docstring)."""
    return drift_from_averages(
        state, averages(state, mixture, params.eps, spec, rule, rule_params(params)), params, spec
    )


def make_committee_field(
    spec: CommitteeSpec, rule: GaussRule = DEFAULT_RULE
) -> Callable[[Any, CommitteeState, tuple[Mixture, CommitteeParams]], CommitteeState]:
    """``f(alpha, y, (mixture, params))`` for :func:`jaxadv.ode.rk4.integrate`, ``y`` a :class:`CommitteeState`."""
    return lambda alpha, y, args: committee_drift(y, args[0], args[1], spec, rule)


@functools.cache
def _grid_field(spec: CommitteeSpec, whitening: str, constrained: bool = False, sign_known: bool = False):
    """The vector field on :func:`jaxadv.ode.solve.solve_grid`'s arguments ``(params, (mixture, t, w))``:
    the nodes are arguments, not constants of the compiled program (cached: one function per spec). With
    ``constrained`` and ``spec.lipschitz``, the flow constrained to the Lipschitz bound
    (:func:`jaxadv.committee.lipschitz.constrained_drift`; the adaptive step's field). ``sign_known``: FGM
    without the first erf (:func:`_sign_known`)."""

    def f(alpha, y, args):
        params, (mixture, t, w) = args
        A = _averages_at(y, mixture, params.eps, spec, whitening, t, w, rule_params(params), sign_known)
        d = drift_from_averages(y, A, params, spec)
        return d if not (constrained and spec.lipschitz is not None) else constrained_drift(y, d, spec.lipschitz)

    return f


@functools.cache
def _projection(lipschitz):
    return None if lipschitz is None else (lambda y: project_state(y, lipschitz))


class QuadratureReport(NamedTuple):
    """The quadrature of a committee ODE solution and its error control.

    Attributes:
        rule: the rule used (:class:`jaxadv.committee.quadrature.GaussRule`).
        tol: the tolerance asked on the order parameters (``None``: a rule given by hand, no control).
        field_tol: what that asks of the vector field, ``tol / max(alpha_max, 1)``: a field error below it
            all along adds at most ``tol`` to the trajectory (without amplification by the dynamics).
        field_error: estimated largest error of the vector field with ``rule`` (difference from the next
            rung of the ladder, largest over every entry and grid point) at the start and at the end;
            NaN without control.
        met: ``field_error <= field_tol`` (``None`` without control).
    """

    rule: GaussRule
    tol: float | None = None
    field_tol: float | None = None
    field_error: float = math.nan
    met: bool | None = None


class CommitteeODEResult(NamedTuple):
    """ODE trajectory at the save points: ``alpha`` ``(P,)``, ``Q`` ``(..., P, K, K)``, ``R`` ``(..., P, K, D)``,
    ``b`` and ``v`` ``(..., P, K)`` (leading ``...``: a parameter grid ``G``).

    ``n_evals``: vector-field evaluations per grid point, shape ``G``. ``status``: per grid point,
    :data:`jaxadv.ode.solve.STATUS_OK` (0), ``STATUS_STEP_FAILURE`` (1: the adaptive step ran out of
    ``max_steps``) or ``STATUS_LEFT_DOMAIN`` (2: a value not finite, or overlaps no weights can have,
    :func:`committee_status`); ``failed`` is ``status != 0``. ``quadrature``: :class:`QuadratureReport`."""

    alpha: jax.Array
    Q: jax.Array
    R: jax.Array
    b: jax.Array
    v: jax.Array
    n_evals: jax.Array | None = None
    failed: jax.Array | None = None
    status: jax.Array | None = None
    quadrature: QuadratureReport | None = None


#: round-off allowed on the Cauchy--Schwarz bounds of :func:`committee_status`
DOMAIN_TOL = 1e-6


def committee_status(Q: Any, R: Any, b: Any, v: Any, step_failed: Any = None) -> Any:
    r"""Per-point status (shape ``G``) of trajectories of shape ``G + (P, ...)``: ``STATUS_LEFT_DOMAIN`` where a
    value is not finite or the overlaps break Cauchy--Schwarz, :math:`|Q_{kl}|>\sqrt{Q_{kk}Q_{ll}}` or
    :math:`|R_{kj}|>\sqrt{Q_{kk}}` (the :math:`B_j` are unit vectors), beyond :data:`DOMAIN_TOL`; else
    ``STATUS_STEP_FAILURE`` where ``step_failed``; else ``STATUS_OK``."""
    Q, R, b, v = (jnp.asarray(z) for z in (Q, R, b, v))
    lead = Q.ndim - 3  # grid dimensions

    def fin(z):
        return jnp.all(jnp.isfinite(z).reshape(z.shape[:lead] + (-1,)), axis=-1)

    finite = fin(Q) & fin(R) & fin(b) & fin(v)
    Qs = jnp.where(jnp.isfinite(Q), Q, 0.0)
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(Qs, axis1=-2, axis2=-1), 0.0))
    slack = DOMAIN_TOL * (1.0 + d[..., :, None] * d[..., None, :])
    q_ok = jnp.abs(Qs) <= d[..., :, None] * d[..., None, :] + slack
    r_ok = jnp.abs(jnp.where(jnp.isfinite(R), R, 0.0)) <= d[..., :, None] * (1 + DOMAIN_TOL) + DOMAIN_TOL
    inside = jnp.all(q_ok.reshape(q_ok.shape[:lead] + (-1,)), -1) & jnp.all(r_ok.reshape(r_ok.shape[:lead] + (-1,)), -1)
    left = ~(finite & inside)
    step = jnp.zeros(left.shape, bool) if step_failed is None else jnp.asarray(step_failed)
    return jnp.where(step, STATUS_STEP_FAILURE, jnp.where(left, STATUS_LEFT_DOMAIN, STATUS_OK)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("spec", "rule", "steps_per_save", "n_save"))
def solve_fixed_step(y0, mixture, params, h, spec, rule, steps_per_save, n_save):
    """Fixed-step RK4 of one point with the nodes of ``rule`` (the committee sweep's compiled chunk); with
    Lipschitz normalisation the start and every step are projected."""
    project = _projection(spec.lipschitz)
    t, w = chunked_nodes(spec.K, rule, BATCH)
    args = (params, (mixture, jnp.asarray(t, y0.Q.dtype), jnp.asarray(w, y0.Q.dtype)))
    y0 = y0 if project is None else project(y0)
    return integrate(_grid_field(spec, rule.whitening), y0, 0.0, h, steps_per_save, n_save, args, RK4, project=project)


# --- the quadrature's error control ----------------------------------------------------------------

#: nodes per call when the ladder's rules are compared (one compiled program for every rule)
LADDER_BATCH = 4096
#: the time step's tolerances for a tolerance ``tol`` on the order parameters (measured, docs/theory.md 12.7)
RTOL_PER_TOL, ATOL_PER_TOL = 1.0, 1.0
#: first trial step of the adaptive step (the controller takes over after it)
DT_FIRST = 0.05


@functools.partial(jax.jit, static_argnames=("spec", "whitening"))
def _chunk_averages(states, params, mixture, t, w, spec, whitening):
    return jax.vmap(lambda y, p: _averages_at(y, mixture, p.eps, spec, whitening, t, w, rule_params(p)))(states, params)


@functools.partial(jax.jit, static_argnames=("spec",))
def _drift_rows(states, A, params, spec):
    d = jax.vmap(lambda y, a, p: drift_from_averages(y, a, p, spec))(states, A, params)
    return jnp.concatenate([z.reshape(z.shape[0], -1) for z in d], axis=1)


def _field_values(states, params, mixture, spec: CommitteeSpec, rule: GaussRule):
    """The vector field with ``rule`` at every state (leading axis: points), as a NumPy ``(points, entries)``
    array; the nodes go through one compiled program in chunks of :data:`LADDER_BATCH`."""
    t_np, w_np = tensor_nodes(spec.K, rule)
    dtype = states.Q.dtype
    pad = -t_np.shape[0] % LADDER_BATCH
    t_np = np.concatenate([t_np, np.zeros((pad, spec.K))]).reshape(-1, LADDER_BATCH, spec.K).transpose(0, 2, 1)
    t = jnp.asarray(np.ascontiguousarray(t_np), dtype)
    w = jnp.asarray(np.concatenate([w_np, np.zeros(pad)]).reshape(-1, LADDER_BATCH), dtype)
    A = None
    for k in range(t.shape[0]):
        part = _chunk_averages(states, params, mixture, t[k : k + 1], w[k : k + 1], spec, rule.whitening)
        A = part if A is None else jax.tree.map(jnp.add, A, part)
    return np.asarray(_drift_rows(states, A, params, spec))


_RULE_CACHE: dict = {}
_RULE_CACHE_SIZE = 128


def _digest(*arrays) -> tuple:
    return tuple((np.asarray(a).dtype.str, np.shape(a), np.asarray(a).tobytes()) for a in arrays)


def _at_save(ys: CommitteeState, shape, index: int) -> CommitteeState:
    """The states at save point ``index`` of every grid point, flattened to ``(points, ...)``."""
    return CommitteeState(*(jnp.take(z, index, axis=len(shape)).reshape((-1,) + z.shape[len(shape) + 1 :]) for z in ys))


def check_overlaps(
    K: int,
    D: int,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    normalise: bool = True,
    atol: float = 1e-08,
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(Q0, R0)`` as float arrays (defaults: :math:`Q_0=I`, :math:`R_0=0`).

    Raises ``ValueError`` naming ``Q0`` or ``R0``: wrong shape, ``Q0`` not symmetric, a unit diagonal
    missing under normalisation, or :math:`Q_0-R_0R_0^\\top` not positive semi-definite (no weights
    in N dimensions have these overlaps with orthonormal directions)."""
    Q0 = np.eye(K) if Q0 is None else np.asarray(Q0, dtype=float)
    R0 = np.zeros((K, D)) if R0 is None else np.asarray(R0, dtype=float)
    if Q0.shape != (K, K) or not np.all(np.isfinite(Q0)):
        raise ValueError(f"Q0={Q0.tolist()!r} must be a finite ({K}, {K}) matrix")
    if R0.shape != (K, D) or not np.all(np.isfinite(R0)):
        raise ValueError(f"R0={R0.tolist()!r} must be a finite ({K}, {D}) matrix")
    if np.max(np.abs(Q0 - Q0.T)) > atol:
        raise ValueError(f"Q0={Q0.tolist()!r} must be symmetric")
    if normalise and np.max(np.abs(np.diag(Q0) - 1.0)) > atol:
        raise ValueError(f"Q0={Q0.tolist()!r} must have unit diagonal (normalise=True keeps |w_k| = 1)")
    if np.min(np.linalg.eigvalsh(Q0 - R0 @ R0.T)) < -atol:
        raise ValueError(f"Q0={Q0.tolist()!r} minus R0 R0^T must be positive semi-definite (R0={R0.tolist()!r})")
    return Q0, R0


def solve_committee_ode(
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    alpha_max: float,
    n_save: int = 50,
    *,
    dt: float | None = None,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    b0: npt.ArrayLike | None = None,
    v0: npt.ArrayLike | None = None,
    rule: GaussRule | None = None,
    tol: float = DEFAULT_TOL,
    rtol: float | None = None,
    atol: float | None = None,
    estimate: str = "embedded",
    tableau: ButcherTableau | None = None,
    max_steps: int = 100000,
    save_alpha: Any = None,
    check_end: bool = True,
    devices: Any = None,
    dtype: Any = None,
) -> CommitteeODEResult:
    r"""Integrate the committee ODEs from :math:`(Q_0,R_0,b_0,v_0)` with the students' one solve
    (:func:`jaxadv.ode.solve.solve_grid`: a fixed or an adaptive Runge--Kutta step, one status per grid point).

    **Defaults: the tolerance ``tol`` (1e-6) on the order parameters, met and reported.** The quadrature
    climbs :func:`jaxadv.committee.quadrature.rule_ladder` (composite Gauss--Legendre, order 8, the
    symmetric whitening) until two successive rungs give vector fields within
    ``tol / max(alpha_max, 1)`` at the start (every grid point), integrates, and checks the same at the
    final states (``check_end``), climbing further and integrating again if they ask for more; the rule
    is chosen outside ``jit`` and cached for the same inputs (``docs/theory.md``, section 12.7). The time
    step is adaptive: Dormand--Prince 5(4) (:data:`jaxadv.ode.rk4.DOPRI5`) with its embedded estimate,
    ``rtol = atol = tol``, its stages in a loop (one compilation of the field).
    Measured against converged references (``docs/theory.md``, section 12.7; XOR preset data, FGM,
    alpha = 10, float64): K = 2 within 2.0e-7 (103 evaluations, 56 nodes an axis) and K = 3 within 2.4e-7
    (67 evaluations, 56 nodes an axis) at the default tolerance; tol 1e-5 gives 2.0e-6 and 1.8e-6, and the
    former default (``default_rule(K)``, fixed step 0.05) 7.1e-8 and 2.6e-4. With ``spec.lipschitz`` the
    adaptive step integrates the constrained flow (:func:`jaxadv.committee.lipschitz.constrained_drift`) and
    projects after every step.

    **The former behaviour**: ``dt`` (and no ``rtol``/``atol``) gives the fixed step of at most ``dt``, and
    ``rule`` a rule by hand (no control); with both, the outputs are those of earlier versions (measured
    in float64 on the ``committee``, ``xor`` (K = 4) and ``certified`` (Lipschitz) presets, PGD, a parameter grid
    and K = 3: within 5.6e-16; with the worst-case attack, whose search turns on round-off, within 2.3e-11).

    Symmetric starts (e.g. :math:`Q_0=I`, :math:`R_0=0`, equal :math:`v_k`) sit on the unstable plateau of
    permutation-symmetric solutions, which the ODE never leaves; start from non-symmetric overlaps (or from a
    Monte Carlo's measured initial overlaps).

    Args:
        mixture: the data (:class:`Mixture`).
        params: :class:`CommitteeParams`; fields may be arrays of one common shape ``G``: the grid is
            ``vmap``-ped (one compilation) and split over ``devices``.
        spec: :class:`CommitteeSpec` (static).
        alpha_max: final time.
        n_save: save intervals; ``alpha`` has ``n_save + 1`` points.
        dt: ``None`` (default): adaptive step; else the largest fixed RK4 step (it divides every save
            interval), or with ``rtol``/``atol`` the adaptive step's first trial.
        Q0, R0: initial overlaps ``(K, K)``, ``(K, D)`` (default :math:`I` and 0).
        b0, v0: initial biases and second layer ``(K,)`` (default 0 and :math:`1/K`).
        rule: quadrature rule (static); ``None``: chosen to meet ``tol``.
        tol: absolute tolerance on the order parameters, > 0 (quadrature and, unless ``dt``, ``rtol`` or
            ``atol`` is given, the time step).
        rtol, atol: tolerances of the adaptive step's local error (default ``tol`` each).
        estimate: the adaptive step's local error estimate, ``"embedded"`` (the tableau's embedded pair) or
            ``"doubling"`` (:mod:`jaxadv.ode.rk4`).
        tableau: the Runge--Kutta method; ``None``: :data:`~jaxadv.ode.rk4.DOPRI5` for the adaptive step,
            :data:`~jaxadv.ode.rk4.RK4` for the fixed one (``tableau=RK4`` with the adaptive step: the unit's
            embedded RK4, 1.25-1.4x more evaluations for the same tolerance, measured).
        max_steps: most step attempts per grid point; a point that runs out gets NaN from there on and
            ``status`` 1 (with a ``RuntimeWarning``).
        save_alpha: save times of any spacing, increasing from 0 (replace ``alpha_max`` and ``n_save``).
        check_end: check the quadrature at the final states too (default ``True``).
        devices: devices to split a grid over (default all; the values do not depend on it).
        dtype: float dtype (default JAX's default float; float64 needs ``jax_enable_x64``).

    Returns:
        :class:`CommitteeODEResult` with ``n_evals``, ``failed``, ``status`` and ``quadrature``
        (:class:`QuadratureReport`; a ``RuntimeWarning`` when the tolerance is not met).

    Example:
        >>> from jaxadv.committee import CommitteeParams, CommitteeSpec, xor, solve_committee_ode
        >>> sol = solve_committee_ode(xor(), CommitteeParams(), CommitteeSpec(K=2), 1.0, 2,
        ...                           R0=[[0.3, 0.1], [0.0, 0.2]], Q0=[[1, 0.1], [0.1, 1]])
        >>> sol.R.shape, bool(sol.quadrature.met)
        ((3, 2, 2), True)
    """
    spec = validate_spec(spec)
    mixture = validate_mixture(mixture)
    validate_params(params)
    K, D = spec.K, mixture.n_directions
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (math.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be finite and > 0")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol={tol!r} must be a finite number > 0")
    if rule is not None and (not isinstance(rule, GaussRule) or rule.whitening not in WHITENINGS):
        raise ValueError(f"rule={rule!r} must be a GaussRule with whitening in {WHITENINGS}")
    if dt is None and rtol is None and atol is None:
        rtol, atol = RTOL_PER_TOL * tol, ATOL_PER_TOL * tol
    if tableau is None:  # the adaptive step's default pair; the fixed step stays the classical RK4
        tableau = DOPRI5 if rtol is not None or atol is not None else RK4
    plan = plan_steps(
        alpha_max,
        n_save,
        DT_FIRST if dt is None else dt,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        estimate=estimate,
        save_alpha=save_alpha,
        tableau=tableau,
        rolled=True,
    )
    Q0, R0 = check_overlaps(K, D, Q0, R0, spec.normalise)
    b0 = np.zeros(K) if b0 is None else check_second_layer(b0, K, "b0")
    v0 = default_second_layer(K) if v0 is None else check_second_layer(v0, K, "v0")
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    sign_known = _sign_known(spec, v0, mixture.labels)
    # cast and broadcast on the host, then one transfer (a dispatch per array was a few ms of every call)
    host_mix = tuple(np.asarray(z, dtype) for z in mixture)
    host_p = tuple(cast(z, dtype, np) for z in params)  # a schedule keeps its knots, its values cast
    shape = tuple(np.broadcast_shapes(*(grid_shape(z) for z in host_p)))
    host_p = tuple(broadcast_to(z, shape) for z in host_p)
    host_y0 = tuple(np.broadcast_to(np.asarray(z, dtype), shape + np.shape(z)) for z in (Q0, R0, b0, v0))
    dev_y0, dev_mix, dev_p = jax.device_put((host_y0, host_mix, host_p))
    y0, mixture, p = CommitteeState(*dev_y0), Mixture(*dev_mix), CommitteeParams(*dev_p)

    def integrate_with(r):
        return _integrate(mixture, p, spec, plan, r, y0, sign_known, shape, devices, dtype)

    if rule is not None:
        report = QuadratureReport(rule)
        sol = integrate_with(rule)
    else:
        digest = _digest(*host_mix, *jax.tree.leaves(host_p), *host_y0) + (repr(jax.tree.structure(host_p)),)
        sol, report = _controlled(integrate_with, y0, p, mixture, spec, plan, tol, shape, check_end, dtype, digest)
    alpha, ys, n_evals, step_failed = sol
    if bool(np.any(np.asarray(step_failed))):
        warnings.warn(
            f"max_steps={max_steps} ran out before alpha_max={plan.alpha_max} at {int(jnp.sum(step_failed))} grid "
            "point(s); their states after that are NaN (raise max_steps or loosen tol/rtol/atol)",
            RuntimeWarning,
            stacklevel=2,
        )
    status, failed = _status_failed(ys.Q, ys.R, ys.b, ys.v, step_failed)
    return CommitteeODEResult(alpha, ys.Q, ys.R, ys.b, ys.v, n_evals, failed, status, report)


def _integrate(mixture, params, spec, plan, rule, y0, sign_known, shape=(), devices=None, dtype=None):
    """The committee ODE on :func:`jaxadv.ode.solve.solve_grid` with the nodes of ``rule`` (no checks)."""
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    field = _grid_field(spec, rule.whitening, plan.adaptive, sign_known)
    nodes = (mixture, *_device_nodes(spec.K, rule, str(dtype)))
    project = _projection(spec.lipschitz)
    return solve_grid(field, plan, y0, params, nodes, shape=shape, project=project, devices=devices, dtype=dtype)


def committee_trajectory(
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    plan: StepPlan,
    rule: GaussRule,
    y0: CommitteeState,
    dtype: Any = None,
) -> tuple[jax.Array, CommitteeState]:
    r"""``(alpha, states)`` of the committee ODE from ``y0`` on ``plan`` (:func:`jaxadv.ode.solve.plan_steps`)
    with the quadrature ``rule``, as a pure function of its inputs: no eager checks, no quadrature control and
    no fallback, so :func:`jax.grad` goes through it, e.g. with respect to a schedule's values
    (:class:`jaxadv.schedule.Schedule`); the committee's :func:`jaxadv.ode.solve.unit_trajectory`.
    :func:`solve_committee_ode` is the checked form: with its ``rule`` (``result.quadrature.rule``), plan and
    start, both give the same numbers (tested). One point, no grid; the RK4 step is under
    :func:`jax.checkpoint` as in every solve.
    """
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    sign_known = _sign_known(spec, np.asarray(y0.v), np.asarray(mixture.labels)) if _concrete(y0.v) else False
    mixture = Mixture(*(jnp.asarray(z, dtype) for z in mixture))
    params = CommitteeParams(*(cast(z, dtype) for z in params))
    y0 = CommitteeState(*(jnp.asarray(z, dtype) for z in y0))
    sol = _integrate(mixture, params, spec, plan, rule, y0, sign_known, dtype=dtype)
    return sol.alpha, sol.ys


def _concrete(x: Any) -> bool:
    """``x`` is a value, not a tracer (its sign pattern can be read on the host)."""
    return not isinstance(x, jax.core.Tracer)


@jax.jit
def _status_failed(Q, R, b, v, step_failed):
    """:func:`committee_status` and ``status != STATUS_OK`` in one compiled call."""
    status = committee_status(Q, R, b, v, step_failed)
    return status, status != STATUS_OK


@functools.cache
def _device_nodes(K: int, rule: GaussRule, dtype: str):
    """:func:`jaxadv.committee.quadrature.chunked_nodes` of ``rule`` as device arrays of ``dtype`` (cached: the
    nodes are sent once, not at every call; made eagerly even when first asked for inside a trace, so the
    cache never holds a tracer)."""
    t, w = chunked_nodes(K, rule, BATCH)
    with jax.ensure_compile_time_eval():
        return jnp.asarray(t, dtype), jnp.asarray(w, dtype)


def _controlled(integrate_with, y0, p, mixture, spec, plan, tol, shape, check_end, dtype, digest):
    """Choose the rule on the ladder at the start, integrate, check at the end (climbing and integrating again
    while the end asks for more); cached for the same inputs. Returns ``(GridSolution, QuadratureReport)``."""
    field_tol = tol / max(plan.alpha_max, 1.0)
    ladder = rule_ladder(spec.K, field_tol)
    if len(ladder) < 2:  # K too large for a tensor ladder under the node budget
        rule = default_rule(spec.K)._replace(whitening=WHITENINGS[1])
        warnings.warn(
            f"K={spec.K}: no two tensor rules of the ladder fit its node budget; the quadrature is "
            f"{rule} without error control",
            RuntimeWarning,
            stacklevel=3,
        )
        return integrate_with(rule), QuadratureReport(rule, tol, field_tol, math.nan, False)
    key = (
        spec,
        float(tol),
        plan._replace(save_alpha=None, n_sub=None),
        None if plan.save_alpha is None else plan.save_alpha.tobytes(),
        bool(check_end),
        str(dtype),
        digest,
    )
    cached = _RULE_CACHE.get(key)
    if cached is not None:
        return integrate_with(cached.rule), cached

    def flat(tree):
        return jax.tree.map(lambda z: z.reshape((-1,) + z.shape[len(shape) :]), tree)

    # schedules (jaxadv.schedule): the parameters at the start, and at the end for the check there
    p_flat, p_end = flat(at(p, 0.0)), flat(at(p, plan.alpha_max))
    start = choose_rule(functools.partial(_field_values, flat(y0), p_flat, mixture, spec), ladder, field_tol)
    rule, error, met = start.rule, start.error, start.met
    sol = integrate_with(rule)
    while check_end and met:
        end_states = _at_save(sol.ys, shape, -1)
        if not all(bool(jnp.all(jnp.isfinite(z))) for z in end_states):
            break  # a failed trajectory: its status says so; nothing to check
        i = ladder.index(rule)
        at_end = functools.partial(_field_values, end_states, p_end, mixture, spec)
        end = choose_rule(at_end, ladder, field_tol, start=i)
        error, met = max(error, end.error), end.met
        if end.rule == rule:
            break
        rule = end.rule
        sol = integrate_with(rule)
    report = QuadratureReport(rule, float(tol), field_tol, float(error), bool(met))
    if not met:
        warnings.warn(
            f"tol={tol}: the quadrature's estimated field error {error:.2g} is above {field_tol:.2g} with {rule}, "
            "the finest the ladder's node budget can check; the trajectory may be off by more than tol",
            RuntimeWarning,
            stacklevel=3,
        )
    if len(_RULE_CACHE) >= _RULE_CACHE_SIZE:
        _RULE_CACHE.pop(next(iter(_RULE_CACHE)))
    _RULE_CACHE[key] = report
    return sol, report
