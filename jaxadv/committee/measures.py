r"""Clean and :math:`\epsilon`-robust errors of a committee from its order parameters.

In cluster :math:`c` the clean fields are :math:`x\sim\mathcal N(m_c, v_cQ)`, :math:`m_c=Ra_c-b`, so

.. math::
    \mathcal E=\sum_cp_c\,P\big(\tau_c\sigma(x)\le0\big),\qquad
    S(\epsilon)=\sum_cp_c\,P\Big(\min_{\|\delta\|\le\epsilon}\tau_c\sigma(x+Q\gamma)\le0\Big),

(:math:`\delta=W^\top\gamma`; the part of :math:`\delta` orthogonal to every :math:`w_k` does not
move the fields, so the ball in field space is :math:`\{Q\gamma:\gamma^\top Q\gamma\le\epsilon^2\}`).
The indicator is not smooth, so it is not integrated on the K-dimensional grid. Instead the
unit :math:`k^*` with the largest :math:`|v_k|` is put last and :math:`Q` factorised by Cholesky,
:math:`x=m_c+\sqrt{v_c}Ct` (:math:`C` lower triangular): only :math:`x_{k^*}` depends on :math:`t_K`,
and both :math:`\tau\sigma` and its minimum over the ball are monotone in :math:`t_K` (direction
:math:`\operatorname{sign}(\tau v_{k^*})`, because :math:`\sigma` is monotone in each field
separately). The error set along :math:`t_K` is a half-line whose end :math:`t^*` is found by
bisection; the error given :math:`t_{<K}` is :math:`\Phi(t^*)`, averaged over :math:`t_{<K}` by the
(K-1)-dimensional rule of :mod:`jaxadv.committee.quadrature`. For :math:`K=1` this is the
single-layer closed form (tested).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from .fields import committee_output, geometry, min_margin
from .ode import CommitteeState
from .params import Mixture
from .quadrature import GaussRule, gaussian_mean

__all__ = ["MEASURE_RULE", "measure_rule", "clean_error", "robust_error", "robustness_curve", "columns"]

MEASURE_RULE = GaussRule(panels=8, order=8, width=8.0)


def measure_rule(K: int) -> GaussRule:
    """Default rule of the (K-1)-dimensional outer average: :data:`MEASURE_RULE` (64 nodes per axis) for
    ``K <= 2``, 24 nodes per axis for ``K = 3``, 15 for ``K >= 4`` (the robust error runs a bisection of
    ball minimisations per node)."""
    if K <= 2:
        return MEASURE_RULE
    return GaussRule(4, 6, 7.0) if K == 3 else GaussRule(3, 5, 6.0)


def _error(state: CommitteeState, mixture: Mixture, eps, robust: bool, rule, bisect: int = 30,
           span: float = 10.0, iters: int = 32):
    Q, R, b, v = state
    K = Q.shape[0]
    rule = measure_rule(K) if rule is None else rule
    dtype = Q.dtype
    geom = geometry(Q)
    k_star = jnp.argmax(jnp.abs(v))
    perm = jnp.argsort(jnp.where(jnp.arange(K) == k_star, 1, 0), stable=True)
    inv = jnp.argsort(perm)
    Qp = Q[perm][:, perm]
    C = jnp.linalg.cholesky(Qp + 1e-12 * jnp.trace(Q) * jnp.eye(K, dtype=dtype))

    def cluster(a, var, tau):
        m = (R @ a - b)[perm]
        s = jnp.sqrt(var)
        d = jnp.where(tau * v[k_star] < 0, -1.0, 1.0)

        def margin(x):
            if robust:
                return min_margin(x, geom, v, tau, eps, iters)
            return tau * committee_output(x, v)

        def node(t_rest):
            base = m + s * (C[:, : K - 1] @ t_rest)
            col = s * C[:, K - 1]
            G = lambda t: margin((base + col * (d * t))[inv])  # increasing in t
            lo, hi = jnp.asarray(-span, dtype), jnp.asarray(span, dtype)

            def body(_, lh):
                l, h = lh
                mid = (l + h) / 2
                bad = G(mid) <= 0
                return jnp.where(bad, mid, l), jnp.where(bad, h, mid)

            l, h = jax.lax.fori_loop(0, bisect, body, (lo, hi))
            p = ndtr((l + h) / 2)
            p = jnp.where(G(hi) <= 0, 1.0, p)
            return jnp.where(G(lo) > 0, 0.0, p)

        return gaussian_mean(node, K - 1, rule, dtype)

    per = jax.vmap(cluster)(mixture.centres, mixture.variances, mixture.labels)
    return jnp.dot(mixture.priors, per)


@functools.partial(jax.jit, static_argnames=("rule",))
def clean_error(state: CommitteeState, mixture: Mixture, rule: GaussRule = None):
    r""":math:`\mathcal E=\sum_cp_cP(\tau_c\sigma\le0)` (module docstring). ``state``: one point."""
    return _error(state, mixture, 0.0, False, rule)


@functools.partial(jax.jit, static_argnames=("rule",))
def robust_error(state: CommitteeState, mixture: Mixture, eps, rule: GaussRule = None):
    r""":math:`S(\epsilon)`: probability that some :math:`\|\delta\|\le\epsilon` makes :math:`\tau\sigma\le0`.

    The minimum over the ball is :func:`jaxadv.committee.fields.min_margin` (multi-start ascent on the
    ellipsoid's boundary, exact for :math:`K=1`)."""
    return _error(state, mixture, eps, True, rule)


def robustness_curve(state: CommitteeState, mixture: Mixture, eps_values, rule: GaussRule = None):
    r""":math:`S(\epsilon)` at every value of ``eps_values`` (shape ``(E,)``; ``vmap``)."""
    return jax.vmap(lambda e: robust_error(state, mixture, e, rule))(jnp.asarray(eps_values))


def columns(result, mixture: Mixture, eps_test=(), rule: GaussRule = None, errors: bool = True) -> dict:
    r"""Flat named columns of a trajectory, for tables, files and the command line.

    ``result``: a :class:`~jaxadv.committee.ode.CommitteeODEResult` (one parameter point), or the
    replica mean of a Monte Carlo run (any record with ``alpha``, ``Q``, ``R``, ``b``, ``v`` of shapes
    ``(P,)``, ``(P, K, K)``, ``(P, K, D)``, ``(P, K)``). Columns (1-based indices): ``alpha``,
    ``Q_k_l`` (``k <= l``), ``R_k_j``, ``b_k``, ``v_k``, and with ``errors`` ``clean_error`` and
    ``robust_error_<eps>`` for every value of ``eps_test`` (NumPy arrays of shape ``(P,)``).
    """
    import numpy as np

    Q, R, b, v = (np.asarray(getattr(result, n)) for n in ("Q", "R", "b", "v"))
    K, D = R.shape[-2:]
    out = {"alpha": np.asarray(result.alpha)}
    for k in range(K):
        for l in range(k, K):
            out[f"Q_{k + 1}_{l + 1}"] = Q[:, k, l]
    for k in range(K):
        for j in range(D):
            out[f"R_{k + 1}_{j + 1}"] = R[:, k, j]
    for k in range(K):
        out[f"b_{k + 1}"] = b[:, k]
    for k in range(K):
        out[f"v_{k + 1}"] = v[:, k]
    if errors:
        states = [CommitteeState(*(jnp.asarray(z[i]) for z in (Q, R, b, v))) for i in range(len(out["alpha"]))]
        out["clean_error"] = np.array([float(clean_error(s, mixture, rule)) for s in states])
        for e in eps_test:
            out[f"robust_error_{e:g}"] = np.array([float(robust_error(s, mixture, e, rule)) for s in states])
    return out
