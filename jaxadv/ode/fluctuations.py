r"""Finite-N fluctuations of :math:`y=(R, b)` around the large-N ODE (linear-noise expansion).

One on-line step changes :math:`y` by :math:`\Delta y = X/N`, where the per-step drift
:math:`X` has, given :math:`y`, mean :math:`F(y) + G(y)/N + O(N^{-2})` (:math:`F` the ODE drift
of :func:`jaxadv.ode.vector_field.drift`) and covariance :math:`\Sigma(y) + O(1/N)`. Over :math:`d\alpha`
there are :math:`N d\alpha` independent steps, hence (van Kampen / linear noise):

.. math::
    \frac{dC}{d\alpha} = J C + C J^\top + \frac{\Sigma}{N},\qquad
    \frac{d\mu}{d\alpha} = J\mu + \tfrac12\sum_{jk} H_{ijk} C_{jk} + \frac{G}{N},

with :math:`J = \partial F/\partial y` (``jax.jacfwd``), :math:`H_{ijk} = \partial^2F_i/\partial
y_j\partial y_k` (``jax.hessian``), :math:`C` the covariance of :math:`y` across replicas and
:math:`\mu = \langle y\rangle - y_\mathrm{ODE}` the O(1/N) shift of the mean. :math:`\Sigma` is
:math:`D = N^2\,\mathrm{Cov}(\Delta y)` per step. For the learning rule (``docs/theory.md (section 9)``),
with :math:`\delta` the force at the attacked field :math:`\tilde x\mid\tau\sim\mathcal N(m_\tau, v_\tau)`,
:math:`a_\tau = \tau\frac\rho2(1-R^2)` and :math:`g_2\sim\mathcal N(0,1)` independent of :math:`\tilde x`:

.. math::
    X_R = \eta_w\delta\,\big(a_\tau + \sqrt{v_\tau(1-R^2)}\,g_2\big) - \tfrac{\eta_w^2}{2} R v_\tau\delta^2,
    \qquad X_b = -\eta_b\,\delta .

:math:`G_b = 0` (the bias update is linear in :math:`\delta`); :math:`G_R` comes from the second
order of the normalisation of :math:`w` (formula in :func:`step_moments`). Initial
conditions: a uniform :math:`w` has :math:`\langle R_0\rangle = 0`, :math:`\mathrm{Var}\,R_0 = 1/N`
exactly; :math:`b_0` is deterministic.

The mean, covariance and shift are integrated together with :func:`jaxadv.ode.rk4.integrate`.
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

from ..defaults import DT, N_SAVE
from ..model.data import cluster_table, field_mean
from ..model.losses import Loss, force, get_loss
from ..model.params import ModelParams, validate_params
from ..model.perturbations import l2_attack_field
from ..model.rule import DEFAULT_RULE
from ..quadrature import gauss_legendre_mean
from ..schedule import at, cast
from .rk4 import RK4, integrate, integrate_at
from .solve import _steps
from .vector_field import vector_field

__all__ = ["FluctuationResult", "FluctuationState", "step_moments", "fluctuation_field", "solve_fluctuations"]


class FluctuationState(NamedTuple):
    """State of the joint system.

    Attributes:
        y: ODE solution :math:`(R, b)`, shape ``(2,)``.
        C: covariance of :math:`(R, b)` across replicas, shape ``(2, 2)``.
        mu: O(1/N) shift of the mean, :math:`\\langle y\\rangle - y`, shape ``(2,)``.
    """

    y: jax.Array
    C: jax.Array
    mu: jax.Array


class FluctuationResult(NamedTuple):
    """Predictions at the save points (``P`` of them).

    Attributes:
        alpha: shape ``(P,)``.
        mean: ODE solution :math:`(R, b)`, shape ``(P, 2)``.
        cov: covariance :math:`C`, shape ``(P, 2, 2)``.
        shift: O(1/N) shift of the mean, shape ``(P, 2)``; the finite-N mean is ``mean + shift``.
        std: :math:`\\sqrt{C_{ii}}`, shape ``(P, 2)`` (std of R, std of b).
    """

    alpha: jax.Array
    mean: jax.Array
    cov: jax.Array
    shift: jax.Array
    std: jax.Array


def step_moments(
    y: jax.Array, params: ModelParams, loss: str | Loss = "quadratic"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Per-step drift statistics at :math:`y=(R,b)`: ``(F, Sigma, G)`` of shapes ``(2,)``, ``(2, 2)``, ``(2,)``.

    :math:`\Sigma = \langle XX^\top\rangle - FF^\top` from the moments
    :math:`\langle\delta^k\rangle_\tau`, :math:`k\le4`. With :math:`x = \tilde x + \tau\epsilon` the
    clean field, :math:`y_c = \tilde x - m_\tau` its centred value, :math:`Q = \tilde x + b`
    (:math:`=w\cdot\tilde\xi`) and :math:`U = 2\eta_w\delta Q + \eta_w^2\delta^2 v_\tau`:

    .. math::
        G_R = \sum_\tau p_\tau\Big\langle -\tfrac{\eta_w^2 R}{2}\delta^2\big[\tfrac{\rho^2}{4}
            + \tau\rho R y_c + y_c^2 - v_\tau - 2\tau\epsilon(x+b) + \epsilon^2\big]
            + \tfrac{3R}{8}U^2 - \tfrac{\eta_w}{2}\delta(a_\tau + RQ)U\Big\rangle_\tau ,\qquad G_b = 0 .

    All averages over :math:`\tilde x\sim\mathcal N(m_\tau, v_\tau)` are composite Gauss--Legendre
    (:func:`jaxadv.quadrature.gauss_legendre_mean`) of the force :func:`jaxadv.model.losses.force`.
    """
    loss = get_loss(loss)
    R, b = y[0], y[1]
    tau, weight, var = cluster_table(params)
    m = l2_attack_field(field_mean(R, b, tau, params), tau, params.eps)
    eta, eta_b, eps, rho = params.eta_w, params.eta_b, params.eps, params.rho
    a = tau * rho / 2 * (1 - R * R)
    k2 = eta * eta / 2
    t_, v_, m_, a_ = (z[..., None] for z in (tau, var, m, a))

    def moment(fn):
        return gauss_legendre_mean(lambda xt: fn(xt, force(loss, xt, jnp.broadcast_to(t_, xt.shape))), m, var)

    d1, d2, d3, d4 = (moment(lambda xt, d, k=k: d**k) for k in (1, 2, 3, 4))
    XR = eta * a * d1 - k2 * var * R * d2
    XRR = eta * eta * (a * a + var * (1 - R * R)) * d2 - 2 * eta * k2 * var * R * a * d3 + k2 * k2 * var**2 * R * R * d4
    XRb = -eta_b * (eta * a * d2 - k2 * var * R * d3)
    Xbb = eta_b * eta_b * d2
    F = jnp.stack([jnp.sum(weight * XR), -eta_b * jnp.sum(weight * d1)])
    second = jnp.array([[jnp.sum(weight * XRR), jnp.sum(weight * XRb)], [jnp.sum(weight * XRb), jnp.sum(weight * Xbb)]])
    Sigma = second - jnp.outer(F, F)

    def g_integrand(xt, d):
        x = xt + t_ * eps
        yc = xt - m_
        Q = xt + b
        U = 2 * eta * d * Q + eta * eta * d * d * v_
        W = rho * rho / 4 + t_ * rho * R * yc + yc * yc - v_ - 2 * t_ * eps * (x + b) + eps * eps
        return -(eta * eta * R / 2) * d * d * W + (3 * R / 8) * U * U - (eta / 2) * d * (a_ + R * Q) * U

    G = jnp.stack([jnp.sum(weight * moment(g_integrand)), jnp.zeros_like(R)])
    return F, Sigma, G


def fluctuation_field(
    loss: str | Loss = "quadratic", method: str = "auto"
) -> Callable[[Any, FluctuationState, tuple[ModelParams, float | jax.Array]], FluctuationState]:
    """Vector field ``f(alpha, state, (params, N))`` of the joint system on :class:`FluctuationState`."""
    loss = get_loss(loss)

    field = vector_field(DEFAULT_RULE._replace(loss=loss), method)

    def F(y: jax.Array, params: ModelParams) -> jax.Array:
        return field(0.0, y, (params, {}))

    def f(alpha: Any, st: FluctuationState, args: tuple[ModelParams, float | jax.Array]) -> FluctuationState:
        params, N = at(args, alpha)  # schedules (jaxadv.schedule): the parameters at this time
        J = jax.jacfwd(F)(st.y, params)
        H = jax.hessian(F)(st.y, params)
        _, Sigma, G = step_moments(st.y, params, loss)
        dC = J @ st.C + st.C @ J.T + Sigma / N
        dmu = J @ st.mu + 0.5 * jnp.einsum("ijk,jk->i", H, st.C) + G / N
        return FluctuationState(y=F(st.y, params), C=dC, mu=dmu)

    return f


@functools.partial(jax.jit, static_argnames=("steps_per_save", "n_save", "loss", "method"))
def _solve(params, N, st0, h, steps_per_save, n_save, loss, method):
    return integrate(fluctuation_field(loss, method), st0, 0.0, h, steps_per_save, n_save, (params, N), RK4)


@functools.partial(jax.jit, static_argnames=("loss", "method"))
def _solve_at(params, N, st0, t_save, n_sub, loss, method):
    return integrate_at(fluctuation_field(loss, method), st0, t_save, n_sub, (params, N), RK4)


def solve_fluctuations(
    params: ModelParams,
    N: float,
    alpha_max: float,
    n_save: int = N_SAVE,
    *,
    dt: float = DT,
    R0: float | None = None,
    b0: float = 0.0,
    loss: str | Loss = "quadratic",
    method: str = "auto",
    save_alpha: npt.ArrayLike | None = None,
) -> FluctuationResult:
    r"""Mean, covariance and O(1/N) mean shift of :math:`(R, b)` at finite N, by RK4.

    Args:
        params: scalar model parameters.
        N: input dimension (traced: another N does not recompile).
        alpha_max, n_save, dt: as in :func:`jaxadv.solve_ode` (same save points).
        R0: initial overlap; ``None`` (uniform :math:`w`) starts from :math:`R=0` with
            :math:`\mathrm{Var}\,R_0 = 1/N`, a given value with zero variance.
        b0: initial bias (deterministic).
        loss: loss name or :class:`jaxadv.model.losses.Loss`.

    Returns:
        :class:`FluctuationResult`; ``std[:, 0]`` is the predicted std of R across replicas.

    Example:
        >>> from jaxadv import ModelParams
        >>> from jaxadv import solve_fluctuations
        >>> fl = solve_fluctuations(ModelParams(), N=1000, alpha_max=10.0, n_save=5)
        >>> fl.std.shape
        (6, 2)
    """
    validate_params(params)
    if not N >= 2:
        raise ValueError(f"N={N!r} must be >= 2")
    if not math.isfinite(N):
        raise ValueError(f"N={N!r} must be finite")
    if R0 is not None and not (math.isfinite(R0) and -1 <= R0 <= 1):
        raise ValueError(f"R0={R0!r} must lie in [-1, 1]")
    if not math.isfinite(b0):
        raise ValueError(f"b0={b0!r} must be finite")
    if save_alpha is not None:  # any save times (e.g. log-spaced): steps of at most dt in each interval
        save_alpha = np.asarray(save_alpha, np.float64)
        if save_alpha.ndim != 1 or save_alpha.size < 2 or save_alpha[0] != 0 or np.any(np.diff(save_alpha) <= 0):
            raise ValueError(f"save_alpha={save_alpha!r} must be increasing times starting at 0, at least two")
        alpha_max, n_save = float(save_alpha[-1]), save_alpha.size - 1
    sub, h = _steps(float(alpha_max), int(n_save), float(dt))
    dtype = jnp.result_type(float)
    p = ModelParams(*(cast(x, dtype) for x in params))
    var0 = 1.0 / N if R0 is None else 0.0
    st0 = FluctuationState(
        y=jnp.array([0.0 if R0 is None else R0, b0], dtype),
        C=jnp.diag(jnp.array([var0, 0.0], dtype)),
        mu=jnp.zeros(2, dtype),
    )
    if save_alpha is None:
        ts, st = _solve(p, jnp.asarray(N, dtype), st0, jnp.asarray(h, dtype), sub, int(n_save), get_loss(loss), method)
    else:
        n_sub = np.maximum(1, np.ceil(np.diff(save_alpha) / float(dt) - 1e-9)).astype(np.int32)
        ts, st = _solve_at(
            p, jnp.asarray(N, dtype), st0, jnp.asarray(save_alpha, dtype), jnp.asarray(n_sub), get_loss(loss), method
        )
    std = jnp.sqrt(jnp.maximum(jnp.diagonal(st.C, axis1=-2, axis2=-1), 0.0))
    return FluctuationResult(alpha=ts, mean=st.y, cov=st.C, shift=st.mu, std=std)
