r"""Large-N ordinary differential equations of the order parameters :math:`(R, b)`.

With :math:`\alpha=\mu/N`, :math:`\delta(\tilde x,\tau) = -\partial L/\partial\tilde x` the force
of the loss, the attacked pre-activation :math:`\tilde x\mid\tau\sim\mathcal N(m_\tau, v_\tau)`,
:math:`m_\tau = \tau\rho R/2 - b - \tau\epsilon`, and weights :math:`p_{+1}=p`, :math:`p_{-1}=1-p`
(derivation in ``docs/theory.md``):

.. math::
    \frac{dR}{d\alpha} = \eta_w\,(1-R^2)\,\frac{\rho}{2}\sum_\tau p_\tau\,\tau\,\langle\delta\rangle_\tau
        \;-\;\frac{\eta_w^2}{2}\,R\sum_\tau p_\tau\, v_\tau\,\langle\delta^2\rangle_\tau ,

.. math::
    \frac{db}{d\alpha} = -\eta_b\sum_\tau p_\tau\,\langle\delta\rangle_\tau .

The Gaussian averages come from :func:`jaxadv.losses.force_moments` (closed form for the
quadratic loss, quadrature otherwise), so a new loss needs no change here.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .attack import l2_attack_field
from .data import cluster_table, field_mean
from .losses import force_moments, get_loss
from .params import ModelParams
from .rk4 import RK4, integrate

__all__ = ["ODEResult", "drift", "drift_vector", "make_vector_field", "solve_ode"]


class ODEResult(NamedTuple):
    """ODE trajectory: ``alpha`` of shape ``(P,)``, ``R`` and ``b`` of shape ``(..., P)``."""

    alpha: jax.Array
    R: jax.Array
    b: jax.Array


def drift(R, b, params: ModelParams, loss="quadratic", method: str = "auto", options=None):
    r"""The right-hand side :math:`(dR/d\alpha, db/d\alpha)` at one point (scalars).

    ``options``: a :class:`jaxadv.variants.TrainingOptions` (``None``: L2 adversarial training);
    the moments and the effective variance then come from :func:`jaxadv.variants.field_moments`.
    Raises ``ValueError`` for variants without an ODE in (R, b) (L-infinity, L1)."""
    loss = get_loss(loss)
    tau, weight, var = cluster_table(params)
    if options is None:
        m = l2_attack_field(field_mean(R, b, tau, params), tau, params.eps)
        d1, d2 = force_moments(loss, m, var, tau, method)
    else:
        from .variants import field_moments

        d1, d2, var = field_moments(loss, R, b, params, options, method)
    dR = params.eta_w * (1 - R * R) * (params.rho / 2) * jnp.sum(weight * tau * d1, axis=0) - (
        params.eta_w**2 / 2
    ) * R * jnp.sum(weight * var * d2, axis=0)
    db = -params.eta_b * jnp.sum(weight * d1, axis=0)
    return dR, db


def drift_vector(y, params: ModelParams, loss="quadratic", method: str = "auto", options=None):
    """:func:`drift` on ``y = jnp.array([R, b])``, returned stacked (for ``jax.jacfwd``, Newton, RK4)."""
    return jnp.stack(drift(y[0], y[1], params, loss, method, options))


def make_vector_field(loss="quadratic", method: str = "auto", options=None):
    """``f(alpha, y, params)`` for :mod:`jaxadv.rk4`, with ``y = jnp.array([R, b])``."""
    loss = get_loss(loss)
    return lambda alpha, y, params: drift_vector(y, params, loss, method, options)


def _steps(alpha_max: float, n_save: int, dt: float):
    if n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be >= 1")
    if not (alpha_max > 0 and math.isfinite(alpha_max)):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt={dt!r} must be finite and > 0")
    interval = alpha_max / n_save
    sub = max(1, math.ceil(interval / dt - 1e-9))
    return sub, interval / sub


@functools.partial(jax.jit, static_argnames=("steps_per_save", "n_save", "loss", "method", "spec"))
def _solve(params, y0, h, steps_per_save, n_save, loss, method, spec=None, vparams=None):
    options = None
    if spec is not None:
        from .variants import join_options

        options = join_options(spec, vparams)
    f = make_vector_field(loss, method, options)
    return integrate(f, y0, 0.0, h, steps_per_save, n_save, params, RK4)


def solve_ode(params: ModelParams, alpha_max: float, n_save: int = 100, *, dt: float = 0.05,
              R0=0.0, b0=0.0, loss="quadratic", method: str = "auto", options=None) -> ODEResult:
    r"""Integrate the order-parameter ODEs from :math:`(R_0, b_0)` with RK4.

    Args:
        params: model parameters; scalars, or arrays of one common shape ``G`` for a grid
            (the grid is ``vmap``-ped, one compilation for all values).
        alpha_max: final time :math:`\alpha_\max`.
        n_save: number of equal save intervals; ``alpha`` has ``n_save + 1`` points.
        dt: largest RK4 step; the step used divides the save interval exactly.
        R0, b0: initial overlap and bias (a random initial ``w`` has :math:`R_0 = 0` as N grows).
        loss: loss name or :class:`jaxadv.losses.Loss`.
        method: Gaussian averages, see :func:`jaxadv.losses.force_moments`.
        options: training variant (:class:`jaxadv.variants.TrainingOptions`; ``None``: L2
            adversarial training). Its traced fields are shared by all grid points.

    Returns:
        :class:`ODEResult` with ``R`` and ``b`` of shape ``G + (n_save + 1,)``.

    Example:
        >>> from jaxadv import ModelParams, solve_ode
        >>> sol = solve_ode(ModelParams(prior=0.5, eps=1.0), alpha_max=10.0, n_save=10)
        >>> sol.R.shape
        (11,)
    """
    sub, h = _steps(float(alpha_max), int(n_save), float(dt))
    spec = vparams = None
    if options is not None:
        from .variants import check_ode_supported, split_options, validate_options

        check_ode_supported(validate_options(options))
        spec, vparams = split_options(options)
    dtype = jnp.result_type(float)
    p = ModelParams(*(jnp.asarray(x, dtype) for x in params))
    shape = jnp.broadcast_shapes(*(x.shape for x in p), jnp.shape(R0), jnp.shape(b0))
    p = ModelParams(*(jnp.broadcast_to(x, shape) for x in p))
    y0 = jnp.stack(jnp.broadcast_arrays(jnp.asarray(R0, dtype) + jnp.zeros(shape, dtype),
                                        jnp.asarray(b0, dtype) + jnp.zeros(shape, dtype)), axis=-1)
    solve = functools.partial(_solve, steps_per_save=sub, n_save=int(n_save), loss=get_loss(loss), method=method,
                              **({} if spec is None else {"spec": spec, "vparams": vparams}))
    fn = lambda pp, yy: solve(pp, yy, jnp.asarray(h, dtype))
    for _ in range(len(shape)):
        fn = jax.vmap(fn)
    ts, ys = fn(p, y0)
    alpha = ts.reshape(-1, ts.shape[-1])[0] if ts.ndim > 1 else ts
    return ODEResult(alpha=alpha, R=ys[..., 0], b=ys[..., 1])
