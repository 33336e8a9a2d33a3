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
bisection (the clean error, and the robust error's reference ``method="bisect"``) or, for the robust
error, in closed form for each shift :math:`u` of the ball and maximised once over the ball
(``method="threshold"``, the default: the example is an error iff
:math:`\operatorname{erf}(s_*(x_{k^*}+u_{k^*}))\le r(u)=-A(u)/|v_{k^*}|` with :math:`A` the other units'
part of :math:`\tau\sigma`, so
:math:`t^*=\max_u[\operatorname{erfinv}(r(u))-s_*(x^0_{k^*}+u_{k^*})]/(\sqrt{v_c}C_{KK})`;
``docs/theory.md`` section 12.13). The error given :math:`t_{<K}` is :math:`\Phi(t^*)`, averaged over
:math:`t_{<K}` by the (K-1)-dimensional rule of :mod:`jaxadv.committee.quadrature`. For :math:`K=1`
this is the single-layer closed form (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax.scipy.special import erfinv, ndtr
from jax.typing import ArrayLike, DTypeLike

from .fields import committee_output, fgm, geometry, maximise_on_ellipsoid, min_margin
from .ode import CommitteeState
from .params import Mixture
from .quadrature import GaussRule, gaussian_mean

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "order_parameter_names",
    "MEASURE_RULE",
    "measure_rule",
    "clean_error",
    "robust_error",
    "fgm_error",
    "robustness_curve",
    "columns",
    "bisected_error",
    "error_fraction",
    "implicit_root",
]

MEASURE_RULE = GaussRule(panels=8, order=8, width=8.0)


def measure_rule(K: int) -> GaussRule:
    """Default rule of the (K-1)-dimensional outer average: :data:`MEASURE_RULE` (64 nodes per axis) for
    ``K <= 2``, 24 nodes per axis for ``K = 3``, 15 for ``K >= 4`` (the robust error runs a bisection of
    ball minimisations per node)."""
    if K <= 2:
        return MEASURE_RULE
    return GaussRule(4, 6, 7.0) if K == 3 else GaussRule(3, 5, 6.0)


_BIG = 1e3  # far beyond any finite threshold (|t| <= span + the fields' range): "always" / "never"


def _threshold_objective(x, v, tau, k_star, a):
    r""":math:`F(\tilde x)`, the error threshold of one shift in the coordinate :math:`y=s_*\tilde x_{k^*}`.

    With :math:`A=\tau\sum_{k\ne k^*}v_k\operatorname{erf}(\tilde x_k)`, :math:`a=|v_{k^*}|`,
    :math:`s_*=\operatorname{sign}(\tau v_{k^*})` and :math:`r=-A/a`, the attacked example is an error iff
    :math:`\operatorname{erf}(s_*\tilde x_{k^*})\le r`: always for :math:`r\ge1` (value :math:`+B+r`),
    never for :math:`r\le-1` (value :math:`-B+r`), else iff the part of :math:`s_*\tilde x_{k^*}` not
    due to :math:`t_K` is at most :math:`\operatorname{erfinv}(r)-s_*\tilde x_{k^*}` (the value)."""
    K = x.shape[-1]
    others = jnp.where(jnp.arange(K) == k_star, 0.0, v)
    r = -tau * committee_output(x, others) / a
    s_star = jnp.where(tau * v[k_star] < 0, -1.0, 1.0)
    edge = 1.0 - jnp.finfo(x.dtype).eps
    mid = erfinv(jnp.clip(r, -edge, edge)) - s_star * x[k_star]
    return jnp.where(r >= 1.0, _BIG + r, jnp.where(r <= -1.0, -_BIG + r, mid))


def error_fraction(G: Callable[[jax.Array], jax.Array], span: float, bisect: int, dtype: DTypeLike) -> jax.Array:
    r""":math:`P(G(t)\le0)` for :math:`t\sim\mathcal N(0,1)` and ``G`` increasing in ``t``: the root
    :math:`t^*` of ``G`` by ``bisect`` halvings of :math:`[-T, T]` (``T = span``), then
    :math:`\Phi(t^*)`; 1 when ``G(T) <= 0``, 0 when ``G(-T) > 0``."""
    lo, hi = jnp.asarray(-span, dtype), jnp.asarray(span, dtype)

    def body(_, bracket):
        left, right = bracket
        mid = (left + right) / 2
        bad = G(mid) <= 0
        return jnp.where(bad, mid, left), jnp.where(bad, right, mid)

    left, right = jax.lax.fori_loop(0, bisect, body, (lo, hi))
    p = jnp.where(G(hi) <= 0, 1.0, ndtr(implicit_root(G, left, right)))
    return jnp.where(G(lo) > 0, 0.0, p)


def implicit_root(G: Callable[[jax.Array], jax.Array], left: jax.Array, right: jax.Array) -> jax.Array:
    r"""The root :math:`t^*` of ``G`` in the bracket ``[left, right]`` that a search autodiff cannot see through
    (a bisection) has left, polished by one Newton step from the bracket's middle :math:`t_0` (kept inside the
    bracket) and given the derivative of the implicit function theorem,
    :math:`dt^*/d\theta = -\partial_\theta G/\partial_tG` for any parameter :math:`\theta` that ``G`` closes
    over. It is :math:`t_0 - G(t_0)/\bar G'(t_0)` with the bar stopping the gradient: its value is Newton's,
    its derivative :math:`-\partial_\theta G/G'`. From 30 halvings of :math:`[-10, 10]` (a bracket of
    2e-8) the step leaves an error of order :math:`G''/G'\cdot10^{-16}`: float64's round-off instead of the
    bracket's 1e-8 (where :math:`G'` vanishes the middle is kept)."""
    t0 = jax.lax.stop_gradient((left + right) / 2)
    g, slope = jax.jvp(G, (t0,), (jnp.ones_like(t0),))
    slope = jax.lax.stop_gradient(slope)
    safe = jnp.where(slope != 0, slope, 1.0)
    step = jnp.where(slope != 0, g / safe, 0.0)
    # the step's value kept in the bracket, its derivative -dG/dtheta / G' untouched
    bound = jnp.clip(jax.lax.stop_gradient(step), t0 - right, t0 - left)
    return t0 - (step - jax.lax.stop_gradient(step) + bound)


def _frame(Q, v):
    """``(k_star, perm, inv, C)``: the unit of largest :math:`|v_k|`, a permutation putting it last and its
    inverse, and the Cholesky factor of the permuted ``Q`` (a tiny ridge keeps it defined at rank loss)."""
    K = Q.shape[0]
    k_star = jnp.argmax(jnp.abs(v))
    perm = jnp.argsort(jnp.where(jnp.arange(K) == k_star, 1, 0), stable=True)
    Qp = Q[perm][:, perm]
    C = jnp.linalg.cholesky(Qp + 1e-12 * jnp.trace(Q) * jnp.eye(K, dtype=Q.dtype))
    return k_star, perm, jnp.argsort(perm), C


def bisected_error(
    state: CommitteeState,
    mixture: Mixture,
    margin_fn: Callable[[jax.Array, Any], jax.Array],
    rule: GaussRule,
    bisect: int = 30,
    span: float = 10.0,
) -> jax.Array:
    r""":math:`\sum_cp_cP(\text{margin}(x,\tau_c)\le0)` for a margin increasing in :math:`\tau v_{k^*}x_{k^*}`
    (the unit of largest :math:`|v_k|`), :math:`x\sim\mathcal N(Ra_c-b, v_cQ)`: the other :math:`K-1`
    directions by the Gauss rule, the last one by :func:`error_fraction` (``bisect`` halvings of
    :math:`[-T, T]`, ``T = span``). Serves the clean and robust errors and the certificates."""
    Q, R, b, v = state
    K = Q.shape[0]
    dtype = Q.dtype
    k_star, perm, inv, C = _frame(Q, v)

    def cluster(a, var, tau):
        m = (R @ a - b)[perm]
        s = jnp.sqrt(var)
        d = jnp.where(tau * v[k_star] < 0, -1.0, 1.0)

        def node(t_rest):
            base = m + s * (C[:, : K - 1] @ t_rest)
            col = s * C[:, K - 1]
            return error_fraction(lambda t: margin_fn((base + col * (d * t))[inv], tau), span, bisect, dtype)

        return gaussian_mean(node, K - 1, rule, dtype)

    per = jax.vmap(cluster)(mixture.centres, mixture.variances, mixture.labels)
    return jnp.dot(mixture.priors, per)


def _error(
    state: CommitteeState,
    mixture: Mixture,
    eps,
    robust: bool,
    rule,
    bisect: int = 30,
    span: float = 10.0,
    iters: int = 32,
    method: str = "threshold",
):
    Q, R, b, v = state
    K = Q.shape[0]
    rule = measure_rule(K) if rule is None else rule
    dtype = Q.dtype
    geom = geometry(Q)
    if not (robust and method == "threshold"):

        def margin(x, tau):
            if robust:
                return min_margin(x, geom, v, tau, eps, iters)
            return tau * committee_output(x, v)

        return bisected_error(state, mixture, margin, rule, bisect, span)
    k_star, perm, inv, C = _frame(Q, v)
    a = jnp.abs(v[k_star])

    def cluster(a_c, var, tau):
        m = (R @ a_c - b)[perm]
        s = jnp.sqrt(var)

        def node(t_rest):
            # fields at t_K = 0; only the field of unit k* moves with t_K, by s C_KK per unit
            x0 = (m + s * (C[:, : K - 1] @ t_rest))[inv]
            phi = lambda xt: _threshold_objective(xt, v, tau, k_star, jnp.where(a > 0, a, 1.0))
            f = maximise_on_ellipsoid(phi, x0, geom, eps, iters, envelope=True)[1]
            t = f / (s * C[K - 1, K - 1])
            p = jnp.where(t >= span, 1.0, jnp.where(t < -span, 0.0, ndtr(t)))
            p = jnp.where(f >= _BIG / 2, 1.0, jnp.where(f <= -_BIG / 2, 0.0, p))
            return jnp.where(a > 0, p, 1.0)  # sigma = 0 everywhere: every example is an error

        return gaussian_mean(node, K - 1, rule, dtype)

    per = jax.vmap(cluster)(mixture.centres, mixture.variances, mixture.labels)
    return jnp.dot(mixture.priors, per)


@functools.partial(jax.jit, static_argnames=("rule",))
def clean_error(state: CommitteeState, mixture: Mixture, rule: GaussRule | None = None) -> jax.Array:
    r""":math:`\mathcal E=\sum_cp_cP(\tau_c\sigma\le0)` (module docstring). ``state``: one point."""
    return _error(state, mixture, 0.0, False, rule)


@functools.partial(jax.jit, static_argnames=("rule", "method"))
def robust_error(
    state: CommitteeState,
    mixture: Mixture,
    eps: float | jax.Array,
    rule: GaussRule | None = None,
    method: str = "threshold",
) -> jax.Array:
    r""":math:`S(\epsilon)`: probability that some :math:`\|\delta\|\le\epsilon` makes :math:`\tau\sigma\le0`.

    ``method="threshold"`` (default): one maximisation over the ball per outer node: the error set along
    :math:`t_K` is :math:`t_K\le t^*` with
    :math:`t^*=\max_{u}\,[\operatorname{erfinv}(r(u))-s_*(x_{k^*}+u_{k^*})]/(\sqrt{v_c}C_{KK})`
    (module docstring, ``docs/theory.md`` section 12), maximised by
    :func:`jaxadv.committee.fields.maximise_on_ellipsoid`. ``method="bisect"``: the reference, a bisection
    on :math:`t_K` whose every step minimises the margin over the ball
    (:func:`jaxadv.committee.fields.min_margin`); the same value, about 30 times slower. Both are exact
    for :math:`K=1`."""
    return _error(state, mixture, eps, True, rule, method=method)


def grid_fraction(G, span: float, points: int, dtype, roots: int = 4, bisect: int = 40):
    r""":math:`P(G(t)\le0)` for :math:`t\sim\mathcal N(0,1)` and any ``G``: its sign on ``points + 1`` equally
    spaced :math:`t` in :math:`[-T, T]` (``T = span``), the first ``roots`` sign changes located by ``bisect``
    halvings of their interval (any further ones by linear interpolation), the tails by the end values.
    Two sign changes closer than the spacing :math:`2T/\text{points}` are missed."""
    t = jnp.linspace(-span, span, points + 1, dtype=dtype)
    g = jax.vmap(G)(t)
    bad = g <= 0
    b0, b1 = bad[:-1], bad[1:]
    g0, g1 = g[:-1], g[1:]
    d = g0 - g1
    root = t[:-1] + (t[1:] - t[:-1]) * jnp.where(d != 0, g0 / jnp.where(d != 0, d, 1.0), 0.5)
    (idx,) = jnp.nonzero(b0 != b1, size=roots, fill_value=points)

    def refine(i):
        lo, hi = t[jnp.minimum(i, points - 1)], t[jnp.minimum(i + 1, points)]
        lo_bad = G(lo) <= 0

        def body(_, lh):
            l_, h_ = lh
            m = (l_ + h_) / 2
            same = (G(m) <= 0) == lo_bad
            return jnp.where(same, m, l_), jnp.where(same, h_, m)

        l_, h_ = jax.lax.fori_loop(0, bisect, body, (lo, hi))
        return (l_ + h_) / 2

    root = root.at[idx].set(jax.vmap(refine)(idx), mode="drop")  # fill_value = points: out of range, dropped
    Phi, P_root = ndtr(t), ndtr(root)
    part = jnp.where(
        b0 & b1, Phi[1:] - Phi[:-1], jnp.where(b0 & ~b1, P_root - Phi[:-1], jnp.where(~b0 & b1, Phi[1:] - P_root, 0.0))
    )
    return jnp.sum(part) + jnp.where(bad[0], Phi[0], 0.0) + jnp.where(bad[-1], 1.0 - Phi[-1], 0.0)


@functools.partial(jax.jit, static_argnames=("loss", "rule", "points"))
def fgm_error(
    state: CommitteeState,
    mixture: Mixture,
    eps: float | jax.Array,
    loss: str = "quadratic",
    rule: GaussRule | None = None,
    points: int = 400,
) -> jax.Array:
    r"""The error left by the fast gradient method, the committee's training attack:
    :math:`\sum_cp_cP(\tau_c\sigma(x+Q\gamma)\le0)` with :math:`\gamma` the FGM of the loss ``loss``
    (:func:`jaxadv.committee.fields.fgm`, radius ``eps``). FGM ascends the loss, not the margin (with the
    quadratic loss an example beyond its target is pushed further out), so its error lies between the
    clean and the worst-case error and need not be monotone along any field: the fields are framed as in
    :func:`bisected_error` and the last direction is integrated by :func:`grid_fraction` (``points``
    intervals on :math:`[-10, 10]`, the first 4 sign changes bisected), the others by the (K-1)-dimensional
    rule ``rule``. At :math:`\epsilon=0` it equals :func:`clean_error` to 1e-9 (tested).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxadv.committee import CommitteeState, two_cluster
        >>> s = CommitteeState(jnp.eye(2), jnp.array([[0.6], [0.3]]), jnp.zeros(2), jnp.array([0.5, 0.5]))
        >>> e0, e1, w1 = float(clean_error(s, two_cluster())), float(fgm_error(s, two_cluster(), 0.5)), float(
        ...     robust_error(s, two_cluster(), 0.5))
        >>> e0 < e1 <= w1 + 1e-6
        True
    """
    Q, R, b, v = state
    K = Q.shape[0]
    rule = measure_rule(K) if rule is None else rule
    dtype = Q.dtype
    geom = geometry(Q)
    k_star, perm, inv, C = _frame(Q, v)

    def margin(x, tau):
        return tau * committee_output(x + Q @ fgm(x, geom, v, tau, eps, loss), v)

    def cluster(a, var, tau):
        m = (R @ a - b)[perm]
        s = jnp.sqrt(var)

        def node(t_rest):
            base = m + s * (C[:, : K - 1] @ t_rest)
            col = s * C[:, K - 1]
            return grid_fraction(lambda t: margin((base + col * t)[inv], tau), 10.0, points, dtype)

        return gaussian_mean(node, K - 1, rule, dtype)

    per = jax.vmap(cluster)(mixture.centres, mixture.variances, mixture.labels)
    return jnp.dot(mixture.priors, per)


def robustness_curve(
    state: CommitteeState, mixture: Mixture, eps_values: ArrayLike, rule: GaussRule | None = None
) -> jax.Array:
    r""":math:`S(\epsilon)` at every value of ``eps_values`` (shape ``(E,)``; ``vmap``)."""
    return jax.vmap(lambda e: robust_error(state, mixture, e, rule))(jnp.asarray(eps_values))


def columns(
    result: Any, mixture: Mixture, eps_test: Sequence[float] = (), rule: GaussRule | None = None, errors: bool = True
) -> dict[str, np.ndarray]:
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
        for m in range(k, K):
            out[f"Q_{k + 1}_{m + 1}"] = Q[:, k, m]
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


def order_parameter_names(K: int, D: int) -> list[str]:
    """Column names of the order parameters: ``Q_k_m`` (k <= m), ``R_k_j``, ``b_k``, ``v_k`` (1-based), in the
    order of :func:`columns`."""
    return (
        [f"Q_{k + 1}_{m + 1}" for k in range(K) for m in range(k, K)]
        + [f"R_{k + 1}_{j + 1}" for k in range(K) for j in range(D)]
        + [f"b_{k + 1}" for k in range(K)]
        + [f"v_{k + 1}" for k in range(K)]
    )
