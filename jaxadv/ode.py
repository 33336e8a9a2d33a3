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
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from .attack import l2_attack_field
from .data import cluster_table, field_mean
from .losses import force_moments, get_loss
from .params import ModelParams
from .rk4 import RK4, integrate, integrate_adaptive

__all__ = ["ODEResult", "drift", "drift_vector", "make_vector_field", "solve_ode"]


class ODEResult(NamedTuple):
    """ODE trajectory: ``alpha`` of shape ``(P,)``, ``R`` and ``b`` of shape ``(..., P)``.

    ``n_evals``: right-hand-side evaluations per grid point, shape ``(...)`` (``4 x`` steps for the
    fixed step; counted by the controller for the adaptive one)."""

    alpha: jax.Array
    R: jax.Array
    b: jax.Array
    n_evals: Optional[jax.Array] = None


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


def _field(loss, method, spec, vparams):
    """The vector field of a variant given as its static ``spec`` and traced ``vparams``."""
    options = None
    if spec is not None:
        from .variants import join_options

        options = join_options(spec, vparams)
    return make_vector_field(loss, method, options)


@functools.partial(jax.jit, static_argnames=("steps_per_save", "n_save", "loss", "method", "spec"))
def _solve(params, y0, h, steps_per_save, n_save, loss, method, spec=None, vparams=None):
    f = _field(loss, method, spec, vparams)
    return integrate(f, y0, 0.0, h, steps_per_save, n_save, params, RK4)


@functools.partial(jax.jit, static_argnames=("n_save", "loss", "method", "spec", "max_steps"))
def _solve_adaptive(params, y0, alpha_max, h0, rtol, atol, n_save, loss, method, spec=None, vparams=None,
                    max_steps=100_000):
    f = _field(loss, method, spec, vparams)
    t_save = alpha_max * jnp.arange(1, n_save + 1, dtype=y0.dtype) / n_save
    return integrate_adaptive(f, y0, 0.0, t_save, h0, params, rtol=rtol, atol=atol, max_steps=max_steps,
                              tableau=RK4)


def solve_ode(params: ModelParams, alpha_max: float, n_save: int = 100, *, dt: float = 0.05,
              R0=0.0, b0=0.0, loss="quadratic", method: str = "auto", options=None,
              rtol: Optional[float] = None, atol: Optional[float] = None, max_steps: int = 100_000,
              devices=None) -> ODEResult:
    r"""Integrate the order-parameter ODEs from :math:`(R_0, b_0)` with RK4.

    With ``rtol`` (or ``atol``) given the step is adaptive: RK4 with step doubling
    (:func:`jaxadv.rk4.integrate_adaptive`; per grid point, local error per step
    :math:`\le \mathrm{atol} + \mathrm{rtol}\,|y|`), starting from ``dt``. Otherwise the step is
    fixed, at most ``dt``. Far from the initial transient the adaptive step grows to tens of
    units of :math:`\alpha`, so long horizons cost a few hundred evaluations.

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
        rtol, atol: tolerances of the adaptive step (``None``: fixed step; one given, the other
            defaults to ``rtol = 1e-8`` or ``atol = 1e-3 * rtol``).
        max_steps: most step attempts per grid point of the adaptive step; a point that runs out
            gets NaN from there on and a ``RuntimeWarning``.
        devices: devices to split a grid over (:func:`jaxadv.sharding.shard_batch`; default all,
            :func:`jax.devices`); the values do not depend on it.

    Returns:
        :class:`ODEResult` with ``R`` and ``b`` of shape ``G + (n_save + 1,)`` and ``n_evals`` of
        shape ``G``.

    Example:
        >>> from jaxadv import ModelParams, solve_ode
        >>> sol = solve_ode(ModelParams(prior=0.5, eps=1.0), alpha_max=10.0, n_save=10)
        >>> sol.R.shape
        (11,)
    """
    sub, h = _steps(float(alpha_max), int(n_save), float(dt))
    adaptive = rtol is not None or atol is not None
    if adaptive:
        rtol = 1e-8 if rtol is None else rtol
        atol = 1e-3 * rtol if atol is None else atol
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        if rtol == 0 and atol == 0:
            raise ValueError("rtol=0 and atol=0: at least one tolerance must be > 0")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"max_steps={max_steps!r} must be an integer >= 1")
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
    variant = {} if spec is None else {"spec": spec, "vparams": vparams}
    if adaptive:
        solve = functools.partial(_solve_adaptive, n_save=int(n_save), loss=get_loss(loss), method=method,
                                  max_steps=int(max_steps), **variant)
        fn = lambda pp, yy: solve(pp, yy, jnp.asarray(alpha_max, dtype), jnp.asarray(min(float(dt), alpha_max / n_save), dtype),
                                  jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype))
    else:
        solve = functools.partial(_solve, steps_per_save=sub, n_save=int(n_save), loss=get_loss(loss), method=method,
                                  **variant)
        fn = lambda pp, yy: solve(pp, yy, jnp.asarray(h, dtype))
    # one vmap over the flattened grid, split over all devices (no-op on one device)
    size = math.prod(shape)
    flat = lambda x: x.reshape((size,) + x.shape[len(shape):])
    p_flat, y_flat = jax.tree.map(flat, (p, y0))
    if shape and len(jax.devices() if devices is None else devices) > 1:
        from .sharding import shard_batch

        p_flat, y_flat = shard_batch((p_flat, y_flat), devices)
    out = jax.vmap(fn)(p_flat, y_flat) if shape else fn(p, y0)
    if shape:
        out = jax.tree.map(lambda x: x[:size].reshape(shape + x.shape[1:]), out)
    ts, ys = out[0], out[1]
    alpha = ts.reshape(-1, ts.shape[-1])[0] if ts.ndim > 1 else ts
    if adaptive:
        stats = out[2]
        n_evals = stats.n_evals
        if bool(jnp.any(stats.failed)):
            import warnings

            warnings.warn(f"max_steps={max_steps} ran out before alpha_max={alpha_max} at "
                          f"{int(jnp.sum(stats.failed))} grid point(s); their states after that are NaN "
                          "(raise max_steps or loosen rtol/atol)", RuntimeWarning, stacklevel=2)
    else:
        n_evals = jnp.full(shape, 4 * sub * int(n_save), jnp.int32)
    return ODEResult(alpha=alpha, R=ys[..., 0], b=ys[..., 1], n_evals=n_evals)
