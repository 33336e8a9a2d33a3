r"""Large-N ODEs of a surrogate--target pair: :math:`y=(R_s, R_t, b_s, b_t, Q)`.

For student :math:`a` with force :math:`\delta_a` (a function of its attacked field and its training
label), learning rates :math:`\eta_a, \eta_{b,a}` and any direction :math:`D` (``docs/theory.md``, section 13):

.. math::
    \langle\delta_a\,D\cdot\xi\rangle_\tau = \tau\tfrac\rho2(D\cdot B)\langle\delta_a\rangle_\tau
    + \sqrt{v_\tau}\,\big\langle\delta_a\,E[D\cdot z\mid u_s,u_t]\big\rangle_\tau,\qquad
    E[D\cdot z\mid u] = (D\cdot w_s, D\cdot w_t)\,C^{-1}u,\quad C=\begin{pmatrix}1&Q\\Q&1\end{pmatrix},

.. math::
    \dot R_a = \eta_a\big\langle\delta_a(B-R_aw_a)\cdot\xi\big\rangle
    - \tfrac{\eta_a^2}{2}R_a\sum_\tau p_\tau v_\tau\langle\delta_a^2\rangle_\tau,
    \qquad \dot b_a = -\eta_{b,a}\sum_\tau p_\tau\langle\delta_a\rangle_\tau,

.. math::
    \dot Q = \sum_a\eta_a\big\langle\delta_a(w_{\bar a}-Qw_a)\cdot\xi\big\rangle
    - \tfrac Q2\sum_a\eta_a^2\sum_\tau p_\tau v_\tau\langle\delta_a^2\rangle_\tau
    + [\text{one stream}]\ \eta_s\eta_t\sum_\tau p_\tau v_\tau\langle\delta_s\delta_t\rangle_\tau .

With :math:`\zeta=(u_t-Qu_s)/\sqrt{1-Q^2}`, independent of :math:`u_s`, the conditional terms are
:math:`\frac{R_t-R_sQ}{\sqrt{1-Q^2}}\langle\delta_s\zeta\rangle` in :math:`\dot R_s` and
:math:`\sqrt{1-Q^2}\langle\delta_s\zeta\rangle` in :math:`\dot Q`; they vanish unless the surrogate's
force depends on :math:`u_t` (the black-box stream). The two-dimensional averages run over
:math:`u_t` (composite Gauss--Legendre on both sides of the target's decision boundary) and
:math:`\eta` in :math:`u_s = Qu_t+\sqrt{1-Q^2}\,\eta` (:func:`pair_averages`); single-student moments come
from :func:`jaxadv.ode.vector_field.field_moments`, so :math:`R_a, b_a` of the independent and
same streams follow :func:`jaxadv.solve_ode` exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..model.data import cluster_table
from ..model.losses import force
from ..model.pair import DEFAULT_PAIR_SPEC, PairParams, PairSpec, check_pair_start, pair_as_arrays
from ..model.rule import TrainingRule
from ..quadrature import nodes
from ..typing import Real
from .rk4 import integrate
from .solve import _steps
from .vector_field import field_moments

__all__ = ["PairODE", "check_pair_ode_supported", "pair_averages", "pair_drift", "pair_vector_field", "solve_pair_ode"]


class PairODE(NamedTuple):
    """ODE trajectory of a pair: ``alpha`` ``(P,)`` and ``R_s``, ``R_t``, ``b_s``, ``b_t``, ``Q``, each ``(P,)``."""

    alpha: np.ndarray
    R_s: np.ndarray
    R_t: np.ndarray
    b_s: np.ndarray
    b_t: np.ndarray
    Q: np.ndarray


def check_pair_ode_supported(spec: PairSpec) -> None:
    """``ValueError`` unless both rules act along ``w`` (an ``along_w`` face: the L2 attack), with a fixed
    radius and no gate: the pair ODE is derived for those."""
    for who, rule in (("rule_s", spec.rule_s), ("rule_t", spec.rule_t)):
        if rule.attack.along_w is None:
            raise ValueError(
                f"{who}: attack={rule.attack.name!r} has no pair ODE (it does not act along w); use the Monte Carlo"
            )
        if rule.eps_law.random:
            raise ValueError(f"{who}: eps_dist={rule.eps_law.name!r} has no pair ODE (fixed eps only)")
        if rule.gate.open is not None:
            raise ValueError(f"{who}: gate={rule.gate.name!r} has no pair ODE")


def _shifted_force(
    rule: TrainingRule, x: jax.Array, label: jax.Array, eps: Real, rp: dict[str, jax.Array]
) -> jax.Array:
    along_w = rule.attack.along_w
    assert along_w is not None  # check_pair_ode_supported: both rules act along w
    return force(rule.loss, x + along_w(label, eps, rp), label, rp)


def pair_averages(
    R_s: float | jax.Array,
    R_t: float | jax.Array,
    b_s: float | jax.Array,
    b_t: float | jax.Array,
    Q: float | jax.Array,
    pp: PairParams,
    spec: PairSpec,
    surrogate_labels: str = "auto",
    panels: int = 16,
    order: int = 8,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""Per-cluster two-dimensional averages ``(S1, S2, Z, X)``, each of shape ``(2,)`` (cluster +1, -1):
    :math:`\langle\delta_s\rangle`, :math:`\langle\delta_s^2\rangle`, :math:`\langle\delta_s\zeta\rangle`,
    :math:`\langle\delta_s\delta_t\rangle`.

    .. math::
        \langle f\rangle_\tau = \int Du_t\int D\eta\ f\big(u_s = Qu_t + \sqrt{1-Q^2}\,\eta,\ u_t\big),

    the :math:`u_t` integral split at the target's boundary :math:`u^* = -(\tau\frac\rho2R_t-b_t)/\sqrt{v_\tau}`,
    each side on ``panels`` x ``order`` Gauss--Legendre nodes of :math:`[-9, u^*]`, :math:`[u^*, 9]`; the
    :math:`\eta` integral on the same number of nodes of :math:`[-9, 9]`.

    ``surrogate_labels``: ``"auto"`` (the target's prediction :math:`\operatorname{sign}(x_t)` in the
    black-box stream, else :math:`\tau`), ``"true"`` or ``"target"``.
    """
    if surrogate_labels == "auto":
        surrogate_labels = "target" if spec.stream == "blackbox" else "true"
    if surrogate_labels not in ("true", "target"):
        raise ValueError(f"surrogate_labels={surrogate_labels!r} must be 'auto', 'true' or 'target'")
    s, t = pp.s, pp.t
    tau, weight, var = cluster_table(s)  # (2,)
    dtype = jnp.result_type(R_s, float)
    sd = jnp.sqrt(var)
    half = s.rho / 2
    ms, mt = tau * half * R_s - b_s, tau * half * R_t - b_t  # clean field means (2,)
    u, wu = (jnp.asarray(a, dtype) for a in nodes("unit", panels, order))  # (n,)
    eta, weta = (jnp.asarray(a, dtype) for a in nodes("panels", panels, order, 9.0))  # (m,)
    T = 9.0
    cut = jnp.clip(-mt / sd, -T, T)[:, None]  # (2, 1)
    lo = jnp.concatenate([jnp.full_like(cut, -T), cut], axis=1)[:, :, None]  # (2, 2, 1): below, above
    hi = jnp.concatenate([cut, jnp.full_like(cut, T)], axis=1)[:, :, None]
    ut = lo + (hi - lo) * u[None, None, :]  # (2, 2, n)
    wt = (hi - lo) * wu[None, None, :] * jnp.exp(-ut * ut / 2) / math.sqrt(2 * math.pi)
    side = jnp.asarray([-1.0, 1.0], dtype)[None, :, None] * jnp.ones_like(ut)  # sign(x_t) on each side
    ut, wt, side = (a.reshape(2, -1)[:, :, None] for a in (ut, wt, side))  # (2, 2n, 1)
    sc = jnp.sqrt(jnp.maximum(1 - Q * Q, 0.0))
    e3 = eta[None, None, :]
    us = Q * ut + sc * e3  # (2, 2n, m)
    zeta = sc * ut - Q * e3
    W = wt * weta[None, None, :]
    tau3 = tau[:, None, None] * jnp.ones_like(us)
    label = side * jnp.ones_like(us) if surrogate_labels == "target" else tau3
    x_s = ms[:, None, None] + sd[:, None, None] * us
    x_t = (mt[:, None, None] + sd[:, None, None] * ut) * jnp.ones_like(us)
    d_s = _shifted_force(spec.rule_s, x_s, label, s.eps, pp.rp_s)
    d_t = _shifted_force(spec.rule_t, x_t, tau3, t.eps, pp.rp_t)
    tot = lambda f: jnp.sum(W * f, axis=(1, 2))
    return tot(d_s), tot(d_s * d_s), tot(d_s * zeta), tot(d_s * d_t)


def pair_drift(y: jax.Array, pp: PairParams, spec: PairSpec) -> jax.Array:
    r"""The right-hand side :math:`\dot y` at ``y = [R_s, R_t, b_s, b_t, Q]`` (module docstring)."""
    R_s, R_t, b_s, b_t, Q = y[0], y[1], y[2], y[3], y[4]
    s, t = pp.s, pp.t
    tau, weight, var = cluster_table(s)
    sd = jnp.sqrt(var)
    half = s.rho / 2
    d1t, d2t, _ = field_moments(R_t, b_t, t, spec.rule_t, pp.rp_t)
    zero = jnp.zeros_like(d1t)
    if spec.stream == "independent":
        d1s, d2s, _ = field_moments(R_s, b_s, s, spec.rule_s, pp.rp_s)
        zs, X = zero, zero
    elif spec.stream == "same":
        d1s, d2s, _ = field_moments(R_s, b_s, s, spec.rule_s, pp.rp_s)
        zs = zero
        X = pair_averages(R_s, R_t, b_s, b_t, Q, pp, spec)[3]
    else:
        d1s, d2s, zs, X = pair_averages(R_s, R_t, b_s, b_t, Q, pp, spec)
    sc = jnp.sqrt(jnp.maximum(1 - Q * Q, 0.0))
    E = lambda f: jnp.sum(weight * f, axis=0)
    cond_R = jnp.where(sc > 1e-12, (R_t - R_s * Q) / jnp.where(sc > 1e-12, sc, 1.0), 0.0)
    noise_s, noise_t = E(var * d2s), E(var * d2t)
    dR_s = s.eta_w * ((1 - R_s * R_s) * half * E(tau * d1s) + cond_R * E(sd * zs)) - s.eta_w**2 / 2 * R_s * noise_s
    dR_t = t.eta_w * (1 - R_t * R_t) * half * E(tau * d1t) - t.eta_w**2 / 2 * R_t * noise_t
    db_s = -s.eta_b * E(d1s)
    db_t = -t.eta_b * E(d1t)
    dQ = (
        s.eta_w * ((R_t - Q * R_s) * half * E(tau * d1s) + sc * E(sd * zs))
        + t.eta_w * (R_s - Q * R_t) * half * E(tau * d1t)
        - Q / 2 * (s.eta_w**2 * noise_s + t.eta_w**2 * noise_t)
        + s.eta_w * t.eta_w * E(var * X)
    )
    return jnp.stack([dR_s, dR_t, db_s, db_t, dQ])


def pair_vector_field(spec: PairSpec) -> Callable[[Any, jax.Array, PairParams], jax.Array]:
    """``f(alpha, y, pp)`` of :func:`pair_drift` for :mod:`jaxadv.ode.rk4`."""
    check_pair_ode_supported(spec)
    return lambda alpha, y, pp: pair_drift(y, pp, spec)


@functools.partial(jax.jit, static_argnames=("spec", "sub", "n_save"))
def _solve(
    y0: jax.Array, pp: PairParams, h: jax.Array, spec: PairSpec, sub: int, n_save: int
) -> tuple[jax.Array, jax.Array]:
    return integrate(pair_vector_field(spec), y0, 0.0, h, sub, n_save, pp)


def solve_pair_ode(
    pp: PairParams,
    spec: PairSpec = DEFAULT_PAIR_SPEC,
    alpha_max: float = 10.0,
    n_save: int = 10,
    *,
    dt: float = 0.05,
    R0: Sequence[float] = (0.0, 0.0, 0.0),
    b0: Sequence[float] = (0.0, 0.0),
) -> PairODE:
    r"""Integrate the pair ODE with RK4 (:func:`jaxadv.ode.rk4.integrate`) from :math:`(R_s, R_t, Q) = R0`,
    :math:`(b_s, b_t) = b0`, with ``n_save`` equal save intervals to ``alpha_max`` and at most ``dt`` a step.

    Example:
        >>> from jaxadv import ModelParams
        >>> from jaxadv.model.pair import pair_params, PairSpec
        >>> from jaxadv.ode.pair import solve_pair_ode
        >>> sol = solve_pair_ode(pair_params(ModelParams()), PairSpec("independent"), alpha_max=1.0, n_save=1, dt=0.25)
        >>> bool(sol.Q[-1] > 0)
        True
    """
    check_pair_ode_supported(spec)
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    R0, b0 = check_pair_start(R0, b0)
    sub, h = _steps(float(alpha_max), int(n_save), float(dt))
    dtype = jnp.result_type(float)
    y0 = jnp.asarray([R0[0], R0[1], b0[0], b0[1], R0[2]], dtype)
    ts, ys = _solve(y0, pair_as_arrays(pp, dtype), jnp.asarray(h, dtype), spec, sub, int(n_save))
    ys = np.asarray(ys, np.float64)
    return PairODE(np.asarray(ts, np.float64), ys[:, 0], ys[:, 1], ys[:, 2], ys[:, 3], ys[:, 4])
