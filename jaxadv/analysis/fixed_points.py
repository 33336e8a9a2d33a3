r"""Asymptotic states of the order-parameter ODEs and the best achievable errors.

**Fixed points.** :math:`(R^*, b^*)` solves :math:`F(R,b) = (dR/d\alpha, db/d\alpha) = 0`
(:func:`jaxadv.drift`). :func:`fixed_point` integrates the ODE for a short time
(``alpha_warm``) to land in the basin of the attractor reached from :math:`(R_0, b_0)`, then
runs damped Newton iterations

.. math::
    y_{k+1} = y_k - \lambda_k\, J(y_k)^{-1} F(y_k),\qquad J = \partial F/\partial(R,b)
    \text{ (``jax.jacfwd``)},

with the step first shortened to :math:`|\Delta R|\le0.05`, :math:`|\Delta b|\le0.25` (a trust
region) and :math:`\lambda_k` the largest of :math:`1, 1/2, \dots, 2^{-7}` that lowers
:math:`\|F\|` (and keeps :math:`|R|<1`). Stability: the eigenvalues of the :math:`2\times2`
Jacobian, :math:`\lambda_\pm = \tfrac12\operatorname{tr}J \pm \sqrt{\tfrac14(\operatorname{tr}J)^2 - \det J}`;
the fixed point is linearly stable when both have negative real part
(:math:`\operatorname{tr}J<0<\det J`).

**Best achievable errors.** For unit :math:`w` the clean field is
:math:`x\mid\tau\sim\mathcal N(\tau\rho R/2 - b, v_\tau)`: the variance does not depend on
:math:`w`, and for every :math:`b` both terms of :math:`\mathcal E` and :math:`S` decrease with
:math:`R` (when :math:`\rho\ge0`). So :math:`R=1` (:math:`w=B`) is optimal and only a
one-dimensional minimisation over :math:`b` remains. With equal variances :math:`v`
(derivation in ``docs/theory.md (section 10)``), with :math:`c = \rho/2 - \epsilon`,

.. math::
    b^* = -\frac{v}{2c}\,\log\frac{p}{1-p},\qquad
    S^* = p\,\Phi\Big(\frac{b^*-c}{\sqrt v}\Big) + (1-p)\,\Phi\Big(\frac{-b^*-c}{\sqrt v}\Big)
    \quad (c>0),

(:math:`\epsilon=0` gives the test error), and for :math:`c\le 0` the infimum
:math:`\min(p,1-p)` is only approached as :math:`b\to\pm\infty` (the constant classifier).
For unequal variances :func:`best_robust_error` searches a fixed grid of thresholds and
refines the best one by Newton steps on :math:`dS/db` (all in JAX, ``vmap``-able).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..model.losses import Loss, get_loss
from ..model.params import ModelParams, validate_params
from ..model.rule import DEFAULT_RULE
from ..ode.solve import broadcast_grid, solve_ode
from ..ode.vector_field import vector_field
from .measures import robust_error

__all__ = [
    "FixedPoint",
    "BestError",
    "fixed_point",
    "newton_fixed_point",
    "jacobian",
    "best_test_error",
    "best_robust_error",
    "best_robust_error_closed",
]


class FixedPoint(NamedTuple):
    """Fixed point of the ODEs; every field has the batch shape ``G`` of the parameters
    (``eigenvalues`` ``G + (2,)``, complex).

    Attributes:
        R, b: :math:`(R^*, b^*)`.
        residual: :math:`\\|F(R^*, b^*)\\|_2` after the last iteration.
        converged: ``residual < tol`` and not degenerate.
        eigenvalues: eigenvalues of the Jacobian at the fixed point.
        stable: both eigenvalues have negative real part and the point is not degenerate.
        degenerate: :math:`|\\det J| < 10^{-12}\\,\\eta_w\\eta_b`: the forces vanish because the
            attacked fields sit far in the tails (:math:`|b|\\gg1`); there is no finite fixed
            point there, the bias runs away and Newton stopped on a numerical plateau.
    """

    R: jax.Array
    b: jax.Array
    residual: jax.Array
    converged: jax.Array
    eigenvalues: jax.Array
    stable: jax.Array
    degenerate: jax.Array


class BestError(NamedTuple):
    """Smallest error over :math:`(R, b)` and where it is reached (``b = ±inf``: infimum
    of the constant classifier). Fields have the batch shape of the parameters."""

    error: jax.Array
    R: jax.Array
    b: jax.Array


def jacobian(
    R: float | jax.Array, b: float | jax.Array, params: ModelParams, loss: str | Loss = "quadratic"
) -> jax.Array:
    """:math:`J = \\partial(dR/d\\alpha, db/d\\alpha)/\\partial(R, b)` at one point, shape ``(2, 2)``."""
    return _jacobian(jnp.stack([jnp.asarray(R, float), jnp.asarray(b, float)]), params, get_loss(loss))


@functools.partial(jax.jit, static_argnames=("loss",))
def _F(y, params, loss):
    """The ODE's vector field at ``y = (R, b)`` for the default rule with ``loss``."""
    return vector_field(DEFAULT_RULE._replace(loss=loss))(0.0, y, (params, {}))


def _jacobian(y, params, loss):
    return jax.jacfwd(_F)(y, params, loss)


def _eig2(J):
    tr = J[0, 0] + J[1, 1]
    det = J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]
    disc = jnp.sqrt((0.25 * tr * tr - det).astype(jnp.complex128 if J.dtype == jnp.float64 else jnp.complex64))
    return jnp.stack([0.5 * tr + disc, 0.5 * tr - disc]), (tr < 0) & (det > 0), det


@functools.partial(jax.jit, static_argnames=("loss", "iters"))
def _newton(y0, params, loss, iters):
    lambdas = 2.0 ** -jnp.arange(8.0)

    def norm(y):
        return jnp.linalg.norm(_F(y, params, loss))

    def body(y, _):
        F = _F(y, params, loss)
        J = jax.jacfwd(_F)(y, params, loss)
        step = jnp.linalg.solve(J, F)
        # trust region: |dR| <= 0.05, |db| <= 0.25 per iteration, so that the iteration cannot
        # jump onto the plateau |b| >> 1 where every force vanishes
        step = step / jnp.maximum(1.0, jnp.max(jnp.abs(step) / jnp.array([0.05, 0.25])))
        cands = y[None, :] - lambdas[:, None] * step[None, :]
        ok = jnp.abs(cands[:, 0]) < 1
        norms = jnp.where(ok, jax.vmap(norm)(cands), jnp.inf)
        better = norms < jnp.linalg.norm(F)
        i = jnp.argmax(better)  # first (largest) step that lowers |F|
        y_new = jnp.where(better[i] & jnp.all(jnp.isfinite(cands[i])), cands[i], y)
        return y_new, None

    y, _ = jax.lax.scan(body, y0, None, length=iters)
    J = jax.jacfwd(_F)(y, params, loss)
    res = norm(y)
    ev, stable, det = _eig2(J)
    degenerate = jnp.abs(det) < 1e-12 * params.eta_w * params.eta_b
    return y, res, ev, stable & ~degenerate, degenerate


@functools.partial(jax.jit, static_argnames=("loss", "iters"))
def _newton_batch(y0, params, loss, iters):
    return jax.vmap(lambda yy, pp: _newton(yy, pp, loss, iters))(y0, params)


def newton_fixed_point(
    R: float | jax.Array,
    b: float | jax.Array,
    params: ModelParams,
    *,
    loss: str | Loss = "quadratic",
    iters: int = 60,
    tol: float = 1e-10,
) -> FixedPoint:
    """Damped Newton iterations from ``(R, b)`` (scalars or arrays of the batch shape of ``params``)."""
    validate_params(params)
    p, _, (R_, b_), shape = broadcast_grid(params, DEFAULT_RULE, {}, R, b, dtype=jnp.result_type(float))
    y0 = jnp.stack([R_, b_], axis=-1)
    flat = lambda x: x.reshape((-1,) + x.shape[len(shape) :])
    out = _newton_batch(flat(y0), ModelParams(*(flat(x) for x in p)), get_loss(loss), int(iters))
    y, res, ev, stable, degenerate = (x.reshape(shape + x.shape[1:]) for x in out)
    return FixedPoint(
        R=y[..., 0],
        b=y[..., 1],
        residual=res,
        converged=(res < tol) & ~degenerate,
        eigenvalues=ev,
        stable=stable,
        degenerate=degenerate,
    )


def fixed_point(
    params: ModelParams,
    *,
    R0: float | jax.Array = 0.0,
    b0: float | jax.Array = 0.0,
    alpha_warm: float = 1000.0,
    dt: float = 2.0,
    loss: str | Loss = "quadratic",
    iters: int = 60,
    tol: float = 1e-10,
) -> FixedPoint:
    r"""The fixed point reached from :math:`(R_0, b_0)`: a short ODE integration to
    ``alpha_warm`` (RK4, step ``dt``), then damped Newton on the drift.

    Args:
        params: model parameters, scalars or arrays of one common shape ``G`` (``vmap``-ped).
        R0, b0: initial condition of the warm-up integration.
        alpha_warm: length of the warm-up (0: Newton from ``(R0, b0)`` directly).
        dt: RK4 step of the warm-up.
        loss: loss name.
        iters: Newton iterations (fixed count, so the whole grid is one compiled program).
        tol: ``converged`` is ``residual < tol``.

    Returns:
        :class:`FixedPoint` with fields of shape ``G``.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from jaxadv import ModelParams, fixed_point
        >>> fp = fixed_point(ModelParams(prior=0.5, eps=1.0))
        >>> bool(fp.converged), bool(fp.stable)
        (True, True)
    """
    validate_params(params)
    if not alpha_warm >= 0:
        raise ValueError(f"alpha_warm={alpha_warm!r} must be >= 0")
    if iters < 1:
        raise ValueError(f"iters={iters!r} must be >= 1")
    if alpha_warm > 0:
        sol = solve_ode(params, alpha_warm, 1, dt=dt, R0=R0, b0=b0, loss=loss)
        R0, b0 = sol.R[..., -1], sol.b[..., -1]
    return newton_fixed_point(R0, b0, params, loss=loss, iters=iters, tol=tol)


# --- best achievable errors ----------------------------------------------------------------------


def _S(b, eps, params):
    """Robust error at R = 1 as a function of the threshold b."""
    return robust_error(1.0, b, eps, params)


def best_robust_error_closed(params: ModelParams, eps_test: float | jax.Array = 0.0) -> BestError:
    r"""Closed form for equal variances (uses ``v1``; exact only when ``v1 == v2``)."""
    p, v = jnp.asarray(params.prior, float), jnp.asarray(params.v1, float)
    c = jnp.asarray(params.rho, float) / 2 - eps_test
    safe_c = jnp.where(c > 0, c, 1.0)
    b = -(v / (2 * safe_c)) * jnp.log(p / (1 - p))
    inner = _S(b, eps_test, params)
    trivial = jnp.minimum(p, 1 - p)
    b_inf = jnp.where(p > 0.5, -jnp.inf, jnp.inf)
    return BestError(error=jnp.where(c > 0, inner, trivial), R=jnp.ones_like(inner), b=jnp.where(c > 0, b, b_inf))


@functools.partial(jax.jit, static_argnames=("n_grid", "newton"))
def _best_numeric(eps, params, n_grid, newton):
    s = jnp.sqrt(jnp.maximum(params.v1, params.v2))
    L = jnp.abs(params.rho / 2 - eps) + 12 * s + 1.0
    bs = jnp.linspace(-L, L, n_grid)
    vals = _S(bs, eps, params)
    i = jnp.argmin(vals)
    lo, hi = bs[jnp.maximum(i - 1, 0)], bs[jnp.minimum(i + 1, n_grid - 1)]
    d1 = jax.grad(_S)
    d2 = jax.grad(d1)

    def step(b, _):
        g, H = d1(b, eps, params), d2(b, eps, params)
        nb = jnp.where(H > 0, b - g / H, b)
        return jnp.clip(nb, lo, hi), None

    b, _ = jax.lax.scan(step, bs[i], None, length=newton)
    b = jnp.where(_S(b, eps, params) <= vals[i], b, bs[i])
    val = _S(b, eps, params)
    p = params.prior
    # the b -> ±inf limits (constant classifiers) are infima not on the grid
    inf_val, b_inf = jnp.minimum(p, 1 - p), jnp.where(p > 0.5, -jnp.inf, jnp.inf)
    use_inf = (inf_val < val) | (i == 0) | (i == n_grid - 1)
    return jnp.where(use_inf, inf_val, val), jnp.where(use_inf, b_inf, b)


@functools.partial(jax.jit, static_argnames=("n_grid", "newton"))
def _best_batch(eps, params, n_grid, newton):
    return jax.vmap(lambda e, pp: _best_numeric(e, pp, n_grid, newton))(eps, params)


def best_robust_error(
    params: ModelParams, eps_test: float | jax.Array = 0.0, *, n_grid: int = 4001, newton: int = 20
) -> BestError:
    r""":math:`\min_{R,b} S(R, b, \epsilon_\text{test})` for the data parameters in ``params``
    (``eps`` and learning rates unused), any variances: :math:`R=1`, then a grid search over
    :math:`b` refined by Newton on :math:`dS/db`. Broadcasts over ``params`` and ``eps_test``.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from jaxadv import ModelParams, best_robust_error
        >>> round(float(best_robust_error(ModelParams(prior=0.5), 0.0).error), 6)  # Phi(-1)
        0.158655
    """
    p, _, (eps,), shape = broadcast_grid(params, DEFAULT_RULE, {}, eps_test, dtype=jnp.result_type(float))
    err, b = _best_batch(eps.reshape(-1), ModelParams(*(jnp.reshape(x, -1) for x in p)), int(n_grid), int(newton))
    err, b = err.reshape(shape), b.reshape(shape)
    return BestError(error=err, R=jnp.ones_like(err), b=b)


def best_test_error(params: ModelParams, **kw: int) -> BestError:
    r""":math:`\min_{R,b}\mathcal E(R,b)` (Bayes error of the model restricted to linear
    classifiers): :func:`best_robust_error` at :math:`\epsilon_\text{test}=0`."""
    return best_robust_error(params, 0.0, **kw)
