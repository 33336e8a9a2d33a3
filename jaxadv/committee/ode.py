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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from ..ode.rk4 import RK4, integrate
from .fields import attack_coefficients, forces, geometry
from .lipschitz import project_state
from .params import (
    CommitteeParams,
    CommitteeSpec,
    Mixture,
    check_second_layer,
    default_second_layer,
    validate_mixture,
    validate_params,
    validate_spec,
)
from .quadrature import DEFAULT_RULE, GaussRule, default_rule, gaussian_mean

__all__ = [
    "CommitteeState",
    "CommitteeODEResult",
    "Averages",
    "cluster_averages",
    "averages",
    "committee_drift",
    "make_committee_field",
    "solve_committee_ode",
    "check_overlaps",
]


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


def cluster_averages(
    state: CommitteeState,
    centre: jax.Array,
    variance: float | jax.Array,
    label: float | jax.Array,
    eps: float | jax.Array,
    spec: CommitteeSpec,
    rule: GaussRule = DEFAULT_RULE,
) -> Averages:
    r"""The averages of :class:`Averages` in one cluster (centre :math:`a_c` of shape ``(D,)``).

    Whitened nodes :math:`t`: :math:`x=m_c+\sqrt{v_c}Lt`, :math:`m_c=Ra_c-b`, and
    :math:`E[B\cdot\xi\mid t]=a_c+\sqrt{v_c}\,(P^\top R)^\top t` (``P`` of the geometry: no
    :math:`Q^{-1}`; rows of clipped eigen-directions vanish)."""
    Q, R, b, v = state
    geom = geometry(Q)
    M = geom.P.T @ R
    m = R @ centre - b
    s = jnp.sqrt(variance)

    def node(t):
        x = m + s * (geom.L @ t)
        gamma = attack_coefficients(x, geom, v, label, eps, spec)
        xt = x + Q @ gamma
        Delta, Fv = forces(xt, v, label, spec.loss)
        y = centre + s * (M.T @ t) + R.T @ gamma
        h = xt + b
        return Averages(Delta, jnp.outer(Delta, y), jnp.outer(Delta, h), jnp.outer(Delta, Delta), Fv)

    return gaussian_mean(node, Q.shape[0], rule, Q.dtype)


def averages(
    state: CommitteeState, mixture: Mixture, eps: float | jax.Array, spec: CommitteeSpec, rule: GaussRule = DEFAULT_RULE
) -> Averages:
    r"""Mixture averages :math:`\sum_cp_c\langle\cdot\rangle_c` (``DD`` weighted by :math:`p_cv_c`)."""
    per = jax.vmap(lambda a, var, lab: cluster_averages(state, a, var, lab, eps, spec, rule))(
        mixture.centres, mixture.variances, mixture.labels
    )
    p = mixture.priors
    mix = lambda z, wts: jnp.tensordot(wts, z, axes=1)
    return Averages(mix(per.D1, p), mix(per.Dy, p), mix(per.Dh, p), mix(per.DD, p * mixture.variances), mix(per.Fv, p))


def committee_drift(
    state: CommitteeState,
    mixture: Mixture,
    params: CommitteeParams,
    spec: CommitteeSpec,
    rule: GaussRule = DEFAULT_RULE,
) -> CommitteeState:
    """The right-hand side :math:`d(Q, R, b, v)/d\\alpha` (module docstring)."""
    Q, R, b, v = state
    A = averages(state, mixture, params.eps, spec, rule)
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


def make_committee_field(
    spec: CommitteeSpec, rule: GaussRule = DEFAULT_RULE
) -> Callable[[Any, CommitteeState, tuple[Mixture, CommitteeParams]], CommitteeState]:
    """``f(alpha, y, (mixture, params))`` for :func:`jaxadv.ode.rk4.integrate`, ``y`` a :class:`CommitteeState`."""
    return lambda alpha, y, args: committee_drift(y, args[0], args[1], spec, rule)


class CommitteeODEResult(NamedTuple):
    """ODE trajectory at the save points: ``alpha`` ``(P,)``, ``Q`` ``(..., P, K, K)``, ``R`` ``(..., P, K, D)``,
    ``b`` and ``v`` ``(..., P, K)`` (leading ``...``: a parameter grid)."""

    alpha: jax.Array
    Q: jax.Array
    R: jax.Array
    b: jax.Array
    v: jax.Array


@functools.partial(jax.jit, static_argnames=("spec", "rule", "steps_per_save", "n_save"))
def _solve(y0, mixture, params, h, spec, rule, steps_per_save, n_save):
    """RK4 of one point; with Lipschitz normalisation the start and every step are projected."""
    project = None if spec.lipschitz is None else (lambda y: project_state(y, spec.lipschitz))
    return integrate(
        make_committee_field(spec, rule),
        y0 if project is None else project(y0),
        0.0,
        h,
        steps_per_save,
        n_save,
        (mixture, params),
        RK4,
        project=project,
    )


def check_overlaps(
    K: int,
    D: int,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    normalise: bool = True,
    atol: float = 1e-8,
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
    dt: float = 0.05,
    Q0: npt.ArrayLike | None = None,
    R0: npt.ArrayLike | None = None,
    b0: npt.ArrayLike | None = None,
    v0: npt.ArrayLike | None = None,
    rule: GaussRule | None = None,
) -> CommitteeODEResult:
    r"""Integrate the committee ODEs with RK4 (:func:`jaxadv.ode.rk4.integrate`) from :math:`(Q_0,R_0,b_0,v_0)`.

    Symmetric starts (e.g. :math:`Q_0=I`, :math:`R_0=0`, equal :math:`v_k`) sit on the unstable
    plateau of permutation-symmetric solutions, which the ODE never leaves; start from
    non-symmetric overlaps (or from a Monte Carlo's measured initial overlaps).

    Args:
        mixture: the data (:class:`Mixture`).
        params: :class:`CommitteeParams`; fields may be arrays of one common shape ``G``: the grid is
            ``vmap``-ped (one compilation).
        spec: :class:`CommitteeSpec` (static).
        alpha_max: final time.
        n_save: save intervals; ``alpha`` has ``n_save + 1`` points.
        dt: largest RK4 step (the step divides the save interval).
        Q0, R0: initial overlaps ``(K, K)``, ``(K, D)`` (default :math:`I` and 0).
        b0, v0: initial biases and second layer ``(K,)`` (default 0 and :math:`1/K`).
        rule: quadrature rule (static); ``None``: :func:`jaxadv.committee.quadrature.default_rule` of K.

    Example:
        >>> from jaxadv.committee import CommitteeParams, CommitteeSpec, xor, solve_committee_ode
        >>> sol = solve_committee_ode(xor(), CommitteeParams(), CommitteeSpec(K=2), 1.0, 2,
        ...                           R0=[[0.3, 0.1], [0.0, 0.2]], Q0=[[1, 0.1], [0.1, 1]])
        >>> sol.R.shape
        (3, 2, 2)
    """
    spec = validate_spec(spec)
    mixture = validate_mixture(mixture)
    validate_params(params)
    K, D = spec.K, mixture.n_directions
    rule = default_rule(K) if rule is None else rule
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (math.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be finite and > 0")
    Q0, R0 = check_overlaps(K, D, Q0, R0, spec.normalise)
    b0 = np.zeros(K) if b0 is None else check_second_layer(b0, K, "b0")
    v0 = default_second_layer(K) if v0 is None else check_second_layer(v0, K, "v0")
    dtype = jnp.result_type(float)
    y0 = CommitteeState(*(jnp.asarray(z, dtype) for z in (Q0, R0, b0, v0)))
    mixture = Mixture(*(jnp.asarray(z, dtype) for z in mixture))
    p = CommitteeParams(*(jnp.asarray(z, dtype) for z in params))
    shape = jnp.broadcast_shapes(*(jnp.shape(z) for z in p))
    interval = alpha_max / n_save
    sub = max(1, math.ceil(interval / dt - 1e-9))
    h = jnp.asarray(interval / sub, dtype)
    solve = functools.partial(_solve, spec=spec, rule=rule, steps_per_save=sub, n_save=int(n_save))
    if shape:
        flat = CommitteeParams(*(jnp.broadcast_to(z, shape).reshape(-1) for z in p))
        ts, ys = jax.vmap(lambda pp: solve(y0, mixture, pp, h))(flat)
        ts = ts[0]
        ys = jax.tree.map(lambda z: z.reshape(shape + z.shape[1:]), ys)
    else:
        ts, ys = solve(y0, mixture, p, h)
    return CommitteeODEResult(ts, ys.Q, ys.R, ys.b, ys.v)
