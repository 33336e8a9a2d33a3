r"""Certified robustness of committees: two certificates, their errors, and the attacks beside them.

A certificate is a lower bound :math:`\underline m(\xi)\le\min_{\|\delta\|\le\epsilon}\tau\sigma(\xi+\delta)`;
the example is *certified* when :math:`\underline m>0`. Two bounds, from the fields
:math:`x_k=w_k\cdot\xi-b_k` and :math:`Q`:

* **Lipschitz** (global): :math:`\|\nabla\sigma\|\le L=\frac{2}{\sqrt\pi}\sum_k|v_k|\sqrt{Q_{kk}}`
  (:func:`jaxadv.committee.lipschitz.lipschitz_bound`), so
  :math:`\underline m_L=\tau\sigma(x)-L\epsilon` and the certified radius is :math:`|\sigma|/L`.
* **Interval** (per unit): :math:`|w_k\cdot\delta|\le\epsilon\sqrt{Q_{kk}}` and each term of
  :math:`\sigma` is monotone in its own field, so, relaxing the coupling of the shifts,

  .. math::
      \underline m_I=\sum_k\tau v_k\operatorname{erf}\big(x_k-\operatorname{sgn}(\tau v_k)\,\epsilon\sqrt{Q_{kk}}\big).

  :math:`\underline m_I\ge\underline m_L` (each term moves by at most
  :math:`\frac{2}{\sqrt\pi}|v_k|\epsilon\sqrt{Q_{kk}}`), and for :math:`K=1` it is exact:
  :math:`\underline m_I\le0\iff\tau\operatorname{sgn}(v)x\le\epsilon\|w\|`, the single-layer robust error.

The certified error :math:`C(\epsilon)=\sum_cp_cP(\underline m\le0)`, the exact (worst-case) robust
error :math:`S(\epsilon)` (:func:`jaxadv.committee.measures.robust_error`) and the error :math:`P_\text{PGD}(\epsilon)`
that PGD leaves obey, example by example,

.. math::
    C_L(\epsilon)\ \ge\ C_I(\epsilon)\ \ge\ S(\epsilon)\ \ge\ P_\text{PGD}(\epsilon)

(a certificate proves robustness, an attack proves non-robustness). :func:`certified_error` integrates
:math:`P(\underline m\le0)` over the K-dimensional Gaussian fields as
:func:`jaxadv.committee.measures.robust_error` does (Cholesky with the unit of largest :math:`|v_k|`
last, bisection along its axis, :math:`(K-1)`-dimensional rule); :func:`sampled_errors` evaluates
all of them on the same sampled fields of given order parameters (the ODE face) and
:func:`example_errors` on N-dimensional examples of given weights, PGD run in N dimensions with
:func:`jaxadv.attacks.pgd` (the Monte Carlo face). ``docs/theory.md``, section 14.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.scipy.special import erf, erfinv, ndtr
from jax.typing import ArrayLike

from .. import attacks
from .fields import committee_output, geometry, min_margin, pgd
from .lipschitz import lipschitz_bound
from .measures import _frame, bisected_error, measure_rule
from .ode import CommitteeState
from .params import Mixture
from .quadrature import GaussRule

__all__ = [
    "CERTIFICATES",
    "certified_margin",
    "certified_error",
    "field_errors",
    "sampled_errors",
    "example_errors",
    "check_eps",
    "check_certificate",
]

CERTIFICATES = ("lipschitz", "interval")


def check_eps(eps: npt.ArrayLike, name: str = "eps") -> None:
    """``ValueError`` naming ``name`` unless every value of ``eps`` is finite and ``>= 0``."""
    arr = np.atleast_1d(np.asarray(eps, np.float64)).ravel()
    for e in arr:
        if not (np.isfinite(e) and e >= 0):
            raise ValueError(f"{name}={float(e)!r} must be finite and >= 0")


def check_certificate(certificate: str) -> str:
    if certificate not in CERTIFICATES:
        raise ValueError(f"certificate={certificate!r} must be one of {CERTIFICATES}")
    return certificate


def certified_margin(
    x: jax.Array,
    Q: jax.Array,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    certificate: str = "lipschitz",
) -> jax.Array:
    r"""The certificate's lower bound :math:`\underline m` on :math:`\min_{\|\delta\|\le\epsilon}\tau\sigma`
    (module docstring) for one example: fields ``x`` ``(K,)``, ``Q`` ``(K, K)``, ``v`` ``(K,)``, scalar
    ``tau`` and ``eps``. Certified iff > 0."""
    if certificate == "lipschitz":
        return tau * committee_output(x, v) - eps * lipschitz_bound(Q, v)
    r = eps * jnp.sqrt(jnp.maximum(jnp.diagonal(Q), 0.0))
    tv = tau * v
    return jnp.sum(tv * erf(x - jnp.sign(tv) * r))


def _certificate_terms(Q, v, tau, eps, certificate: str):
    r"""``(u, c)`` of the certificate written as :math:`\underline m=\tau\sum_kv_k\operatorname{erf}(x_k-u_k)-c`:
    Lipschitz :math:`u=0`, :math:`c=\epsilon L`; interval :math:`u_k=\operatorname{sgn}(\tau v_k)\epsilon\sqrt{Q_{kk}}`,
    :math:`c=0`."""
    if certificate == "lipschitz":
        return jnp.zeros_like(v), eps * lipschitz_bound(Q, v)
    return jnp.sign(tau * v) * eps * jnp.sqrt(jnp.maximum(jnp.diagonal(Q), 0.0)), jnp.zeros((), Q.dtype)


GRADING = 3
"""Order :math:`q` of the graded end panels of the split axis (:func:`_split_nodes`)."""

_FAR = 1e3  # a crossing that does not exist: beyond every node


@functools.cache
def _split_nodes(order: int, q: int = GRADING):
    r"""Gauss--Legendre nodes and weights on :math:`[0, 1]` (``order`` nodes): plain, graded towards 0
    (:math:`s\to s^q`) and graded towards 1 (:math:`s\to1-(1-s)^q`), each ``(nodes, weights)`` (NumPy). A
    graded end panel turns an integrand :math:`\propto d^\beta` at distance :math:`d` from the end
    (:math:`0<\beta<1`) into :math:`s^{q(1+\beta)-1}`, which the rule integrates to many digits."""
    x, w = np.polynomial.legendre.leggauss(order)
    s, ws = (x + 1) / 2, w / 2
    return (s, ws), (s**q, ws * q * s ** (q - 1)), (1 - (1 - s) ** q, ws * q * (1 - s) ** (q - 1))


def _split_error(state, mixture, eps, certificate, rule):
    r""":math:`C(\epsilon)` with the threshold's jumps integrated exactly (``docs/theory.md``, section 14.4).

    In the frame of :func:`jaxadv.committee.measures.bisected_error` (unit :math:`k^*` of largest
    :math:`|v_k|` last, Cholesky :math:`C`), write :math:`a=|v_{k^*}|`, :math:`s_*=\operatorname{sgn}(\tau v_{k^*})`,
    :math:`A=\tau\sum_{k\ne k^*}v_k\operatorname{erf}(x_k-u_k)` and :math:`r=(c-A)/a`. The example is uncertified iff
    :math:`\operatorname{erf}(s_*(x_{k^*}-u_{k^*}))\le r`: always for :math:`r\ge1`, never for :math:`r\le-1`, else
    with probability :math:`\Phi\big((\operatorname{erfinv}r-s_*(\bar x_{k^*}-u_{k^*}))/(\sqrt{v_c}C_{KK})\big)`
    over :math:`t_K` (:math:`\bar x` the fields at :math:`t_K=0`). Along :math:`t_{K-1}` only the field of one other
    unit :math:`j` moves, so :math:`r` is monotone there and crosses :math:`\pm1` at most once each, at
    :math:`x_j=u_j+\operatorname{erfinv}((c\mp a-A_{\ne j})/(\tau v_j))`. Beyond the crossings the probability
    is 1 or 0 and integrates to :math:`\Phi` of the crossing; between them (within :math:`\pm T`, ``rule.width``)
    by ``rule.panels`` equal panels of ``rule.order`` Gauss--Legendre nodes, an end panel graded towards its end
    when that end is a crossing (:func:`_split_nodes`: the probability approaches 0 or 1 as a power of the
    distance to a crossing, with an infinite derivative there). The earlier directions :math:`t_i` are nested
    the same way, split where a crossing further in appears or vanishes: where the units so far, the others
    at their extremes :math:`\pm|v_k|`, reach :math:`c\mp a` (:math:`2^{K-1-i}` cuts)."""
    Q, R, b, v = state
    K = Q.shape[0]
    dtype = Q.dtype
    k_star, perm, inv, C = _frame(Q, v)
    vp = v[perm]
    a = jnp.abs(v[k_star])
    a_safe = jnp.where(a > 0, a, 1.0)
    edge = 1.0 - jnp.finfo(dtype).eps
    (s0, w0), (sl, wl), (sr, wr) = (tuple(jnp.asarray(z, dtype) for z in p) for p in _split_nodes(rule.order))
    P = max(rule.panels, 2)
    mid = jnp.asarray(np.arange(1, P - 1), dtype)

    def cluster(a_c, var, tau):
        u, c = _certificate_terms(Q, v, tau, eps, certificate)
        u = u[perm]
        m = (R @ a_c - b)[perm]
        s = jnp.sqrt(var)
        s_star = jnp.where(tau * v[k_star] < 0, -1.0, 1.0)
        sd = s * C[K - 1, K - 1]

        def inner(xbar):
            """P(uncertified | fields at t_K = 0, ``xbar`` (K,) in the permuted order)."""
            A = tau * jnp.sum(vp[: K - 1] * erf(xbar[: K - 1] - u[: K - 1]))
            r = (c - A) / a_safe
            z = (erfinv(jnp.clip(r, -edge, edge)) - s_star * (xbar[K - 1] - u[K - 1])) / sd
            return jnp.where(r >= 1.0, 1.0, jnp.where(r <= -1.0, 0.0, ndtr(z)))

        if K == 1:
            return jnp.where(a > 0, inner(m), 1.0)

        def panels(lo, hi, graded_lo, graded_hi):
            """Nodes and weights of P panels on [lo, hi], an end panel graded towards a graded end."""
            h = jnp.maximum(hi - lo, 0.0) / P
            first = jnp.where(graded_lo, sl, s0), jnp.where(graded_lo, wl, w0)
            last = jnp.where(graded_hi, sr, s0), jnp.where(graded_hi, wr, w0)
            t = lo + h * jnp.concatenate([first[0], (mid[:, None] + s0[None, :]).ravel(), P - 1 + last[0]])
            return t, h * jnp.concatenate([first[1], jnp.tile(w0, P - 2), last[1]])

        def crossing(j, base, col, rhs):
            """t_j where tau v_j erf(x_j - u_j) = rhs (+-_FAR: never; x_j = base_j + col_j t_j)."""
            tv = tau * vp[j]
            z = rhs / jnp.where(tv != 0, tv, 1.0)
            t = (erfinv(jnp.clip(z, -edge, edge)) + u[j] - base[j]) / col[j]
            t = jnp.where(z >= 1.0, _FAR, jnp.where(z <= -1.0, -_FAR, t))
            return jnp.where(tv != 0, t, _FAR)

        def integrate(i, base):
            """The probability averaged over t_i, ..., t_{K-2} given the fields ``base`` at t_i = ... = 0."""
            col = s * C[:, i]  # how the fields move with t_i (units i.. only)
            A_done = tau * jnp.sum(jnp.where(jnp.arange(K - 1) < i, vp[: K - 1] * erf(base[: K - 1] - u[: K - 1]), 0.0))

            def phi(t):
                return jnp.exp(-t * t / 2) / jnp.sqrt(2 * jnp.pi)

            if i == K - 2:  # the last: beyond its two crossings the probability is 1 or 0
                tv = tau * vp[i]
                t_up, t_down = crossing(i, base, col, c - a - A_done), crossing(i, base, col, c + a - A_done)
                lo, hi = jnp.minimum(t_up, t_down), jnp.maximum(t_up, t_down)
                lo = jnp.where(tv != 0, lo, -_FAR)
                below = jnp.where(tv > 0, 1.0, 0.0)  # r decreases along t_i iff tau v_i > 0
                ends = jnp.where(tv != 0, below * ndtr(lo) + (1.0 - below) * ndtr(-hi), 0.0)
                t0, t1 = jnp.maximum(lo, -rule.width), jnp.minimum(hi, rule.width)
                t, w = panels(t0, t1, lo > -rule.width, hi < rule.width)
                vals = jax.vmap(lambda tt: inner(base + col * tt))(t)
                return ends + jnp.sum(w * phi(t) * vals)
            # an earlier direction: the crossings further in appear or vanish where the units so far, with
            # the others at their extremes, reach c -+ a; split there
            rest = np.asarray(list(itertools.product((-1.0, 1.0), repeat=K - 2 - i)), np.float64)  # signs of i+1..K-2
            extremes = jnp.asarray(rest, dtype) @ jnp.abs(vp[i + 1 : K - 1])
            rhs = jnp.concatenate([c - a - A_done - extremes, c + a - A_done - extremes])
            cuts = jnp.sort(jax.vmap(lambda r: crossing(i, base, col, r))(rhs))
            edges = jnp.concatenate([jnp.array([-rule.width], dtype), jnp.clip(cuts, -rule.width, rule.width)])
            edges = jnp.concatenate([edges, jnp.array([rule.width], dtype)])
            inside = jnp.abs(edges) < rule.width
            t, w = jax.vmap(panels)(edges[:-1], edges[1:], inside[:-1], inside[1:])
            t, w = t.ravel(), w.ravel()
            vals = jax.vmap(lambda tt: integrate(i + 1, base + col * tt))(t)
            return jnp.sum(w * phi(t) * vals)

        return jnp.where(a > 0, integrate(0, m), 1.0)

    per = jax.vmap(cluster)(mixture.centres, mixture.variances, mixture.labels)
    return jnp.dot(mixture.priors, per)


@functools.partial(jax.jit, static_argnames=("certificate", "rule", "method"))
def _certified_error(state, mixture, eps, certificate, rule, method):
    if method == "split":
        err = _split_error(state, mixture, eps, certificate, rule)
    else:
        Q, _, _, v = state
        err = bisected_error(
            state, mixture, lambda x, tau: certified_margin(x, Q, v, tau, eps, certificate), rule, bisect=40
        )
    return jnp.clip(err, 0.0, 1.0)  # the truncated rule's weights sum to 1 within 1e-12


def certified_error(
    state: CommitteeState,
    mixture: Mixture,
    eps: float | jax.Array,
    certificate: str = "lipschitz",
    rule: GaussRule | None = None,
    method: str = "split",
) -> jax.Array:
    r""":math:`C(\epsilon)=\sum_cp_cP(\underline m\le0)` of one point of order parameters
    (a :class:`~jaxadv.committee.ode.CommitteeState`, ``Q`` ``(K, K)``, ``R`` ``(K, D)``, ``b``, ``v`` ``(K,)``).

    Args:
        state: order parameters (exact for fixed weights at any N).
        mixture: the data.
        eps: L2 radius :math:`\epsilon\ge0` (scalar).
        certificate: ``"lipschitz"`` (:math:`\tau\sigma\le L\epsilon`) or ``"interval"``.
        rule: the rule of the outer directions (default :func:`jaxadv.committee.measures.measure_rule`).
        method: ``"split"`` (default): the error set's threshold in closed form, the last outer direction
            split where the threshold jumps (:func:`_split_error`, ``docs/theory.md`` section 14.4);
            ``"bisect"``: the earlier reference, a bisection of the margin on the (K-1)-dimensional rule,
            which treats the jumps as smooth (1e-2 off on the ``certified`` preset, not converging as the
            rule is refined).

    Raises:
        ValueError: naming ``eps``, ``certificate`` or ``method``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxadv.committee import CommitteeState, two_cluster
        >>> s = CommitteeState(jnp.eye(2), jnp.array([[0.6], [0.3]]), jnp.zeros(2), jnp.array([0.5, 0.5]))
        >>> c0, c1 = (float(certified_error(s, two_cluster(), e)) for e in (0.0, 0.5))
        >>> c0 < c1
        True
    """
    check_eps(eps)
    check_certificate(certificate)
    if method not in ("split", "bisect"):
        raise ValueError(f"method={method!r} must be 'split' or 'bisect'")
    rule = measure_rule(int(np.shape(state.Q)[-1])) if rule is None else rule
    return _certified_error(state, mixture, jnp.asarray(eps, jnp.asarray(state.Q).dtype), certificate, rule, method)


def field_errors(
    x: jax.Array,
    Q: jax.Array,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    pgd_steps: int = 20,
    pgd_step: float | jax.Array | None = None,
    iters: int = 32,
) -> dict[str, jax.Array]:
    r"""Indicators of one example's errors from its clean fields ``x`` ``(K,)``: a dict of booleans
    ``clean`` (:math:`\tau\sigma\le0`), ``pgd`` (after field-space L2 PGD,
    :func:`jaxadv.committee.fields.pgd`, ``pgd_steps`` steps of ``pgd_step``, default
    :math:`2.5\epsilon/T`, ascending the margin), ``worst`` (:func:`~jaxadv.committee.fields.min_margin`
    :math:`\le0`), ``interval`` and ``lipschitz`` (:func:`certified_margin` :math:`\le0`)."""
    step = 2.5 * eps / pgd_steps if pgd_step is None else pgd_step
    geom = geometry(Q)
    gamma = pgd(x, geom, v, tau, eps, pgd_steps, step, "logistic")  # logistic in sigma: the margin's direction
    return {
        "clean": tau * committee_output(x, v) <= 0,
        "pgd": tau * committee_output(x + Q @ gamma, v) <= 0,
        "worst": min_margin(x, geom, v, tau, eps, iters) <= 0,
        "interval": certified_margin(x, Q, v, tau, eps, "interval") <= 0,
        "lipschitz": certified_margin(x, Q, v, tau, eps, "lipschitz") <= 0,
    }


@functools.partial(jax.jit, static_argnames=("n", "pgd_steps"))
def _sampled(key, state, mixture, eps, n, pgd_steps, pgd_step):
    Q, R, b, v = state
    K = Q.shape[0]
    k_c, k_t = jax.random.split(key)
    c = jax.random.categorical(k_c, jnp.log(mixture.priors), shape=(n,))
    t = jax.random.normal(k_t, (n, K), Q.dtype)
    L = geometry(Q).L
    m = mixture.centres @ R.T - b[None, :]  # (M, K)
    x = m[c] + jnp.sqrt(mixture.variances[c])[:, None] * (t @ L.T)  # (n, K)
    tau = mixture.labels[c]
    return jax.vmap(lambda xx, tt: field_errors(xx, Q, v, tt, eps, pgd_steps, pgd_step))(x, tau)


def sampled_errors(
    key: jax.Array,
    state: CommitteeState,
    mixture: Mixture,
    eps: float,
    n: int = 4000,
    pgd_steps: int = 20,
    pgd_step: float | None = None,
) -> dict[str, np.ndarray]:
    r"""Every error of :func:`field_errors` on ``n`` fields drawn from the order parameters ``state``
    (one point): ``{name: (n,) bool}`` (NumPy). Common random numbers make the chain
    lipschitz >= interval >= worst >= pgd hold sample by sample."""
    check_eps(eps)
    if int(n) != n or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1")
    if int(pgd_steps) != pgd_steps or pgd_steps < 1:
        raise ValueError(f"pgd_steps={pgd_steps!r} must be an integer >= 1")
    dtype = jnp.asarray(state.Q).dtype
    step = 2.5 * float(eps) / pgd_steps if pgd_step is None else float(pgd_step)
    out = _sampled(key, state, mixture, jnp.asarray(eps, dtype), int(n), int(pgd_steps), jnp.asarray(step, dtype))
    return {k: np.asarray(val) for k, val in out.items()}


@functools.partial(jax.jit, static_argnames=("pgd_steps",))
def _examples(W, b, v, xi, tau, eps, pgd_steps, pgd_step):
    Q = W @ W.T
    geom = geometry(Q)

    def one(x_in, t):
        margin_loss = lambda z, tt: -tt * committee_output(W @ z - b, v)  # the attacker ascends -tau sigma
        adv = attacks.pgd(
            margin_loss,
            x_in,
            t,
            jax.random.key(0),
            eps=eps,
            step=pgd_step,
            n_steps=pgd_steps,
            norm=2,
            random_start=False,
        )
        x = W @ x_in - b
        return {
            "clean": t * committee_output(x, v) <= 0,
            "pgd": t * committee_output(W @ adv - b, v) <= 0,
            "worst": min_margin(x, geom, v, t, eps) <= 0,
            "interval": certified_margin(x, Q, v, t, eps, "interval") <= 0,
            "lipschitz": certified_margin(x, Q, v, t, eps, "lipschitz") <= 0,
        }

    return jax.vmap(one)(xi, tau)


def example_errors(
    W: ArrayLike,
    b: ArrayLike,
    v: ArrayLike,
    xi: ArrayLike,
    tau: ArrayLike,
    eps: float,
    pgd_steps: int = 20,
    pgd_step: float | None = None,
) -> dict[str, np.ndarray]:
    r"""Every error on N-dimensional examples of fixed weights (the Monte Carlo face).

    Args:
        W: first layer ``(K, N)``; b, v: ``(K,)``.
        xi: examples ``(n, N)``; tau: labels ``(n,)``.
        eps: L2 radius (scalar, ``>= 0``).
        pgd_steps, pgd_step: N-dimensional L2 PGD (:func:`jaxadv.attacks.pgd`, from 0, best iterate;
            default step :math:`2.5\epsilon/T`) on :math:`-\tau\sigma`.

    Returns:
        ``{clean, pgd, worst, interval, lipschitz}``, each ``(n,)`` bool (NumPy).
    """
    check_eps(eps)
    if int(pgd_steps) != pgd_steps or pgd_steps < 1:
        raise ValueError(f"pgd_steps={pgd_steps!r} must be an integer >= 1")
    W = jnp.asarray(W)
    dtype = W.dtype
    step = 2.5 * float(eps) / pgd_steps if pgd_step is None else float(pgd_step)
    if not step > 0:
        step = 1.0  # eps = 0: the ball is a point, any step is projected away
    out = _examples(
        W,
        jnp.asarray(b, dtype),
        jnp.asarray(v, dtype),
        jnp.asarray(xi, dtype),
        jnp.asarray(tau, dtype),
        jnp.asarray(eps, dtype),
        int(pgd_steps),
        jnp.asarray(step, dtype),
    )
    return {k: np.asarray(val) for k, val in out.items()}
