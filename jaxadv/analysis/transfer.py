r"""Attack transfer between two linear students: closed forms, exact at any N.

An attacker computes the worst perturbation of a *surrogate* student :math:`(w_s, b_s)` and applies
it to a *target* :math:`(w_t, b_t)` (both :math:`\|w\|_2=1`). With the attack label :math:`l`
(the true :math:`\tau`, or in the black-box case the surrogate's prediction
:math:`\operatorname{sign}(x_s)`):

* L2: :math:`\delta=-l\epsilon w_s`, the target's field moves by :math:`-l\epsilon\,Q`,
  :math:`Q=w_s\cdot w_t`;
* L-infinity: :math:`\delta=-l\epsilon\operatorname{sign}(w_s)`, the target's field moves by
  :math:`-l\epsilon M`, :math:`M=w_t\cdot\operatorname{sign}(w_s)` (the ODE has no :math:`M`: the
  Monte Carlo measures it).

Given :math:`\tau`, the clean fields :math:`x_a = \tau\frac\rho2R_a-b_a+\sqrt{v_\tau}\,w_a\cdot z` are
jointly Gaussian with correlation :math:`Q`. With :math:`c_a=(\frac\rho2R_a-\tau b_a)/\sqrt{v_\tau}`
(the standardised mean of :math:`\tau x_a`) and :math:`m` the shift overlap (:math:`Q` or :math:`M`):

.. math::
    E_\text{tr}^{(l=\tau)} = \sum_\tau p_\tau\,\Phi\Big(\frac{\epsilon m}{\sqrt{v_\tau}} - c_t\Big),

.. math::
    E_\text{tr}^{(l=\operatorname{sign}x_s)} = \sum_\tau p_\tau\Big[F(\epsilon m)
    + \Phi\big(-\tfrac{\epsilon m}{\sqrt{v_\tau}}-c_t\big) - F(-\epsilon m)\Big],
    \qquad F(y) = \Phi_2\Big(c_s,\ \frac{y}{\sqrt{v_\tau}}-c_t;\ -Q\Big),

:math:`F(y)=P(\tau x_s>0,\ \tau x_t<y\mid\tau)` and :math:`\Phi_2` the bivariate normal CDF
(:func:`bivariate_normal_cdf`). Derivations: ``docs/theory.md``, section 13.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jax.typing import ArrayLike

from ..model.data import cluster_table
from ..model.params import ModelParams
from ..validation import check_value

__all__ = ["LABEL_MODES", "bivariate_normal_cdf", "transfer_error", "transfer_rate", "transfer_table"]

LABEL_MODES = ("true", "surrogate")
"""Attack labels: ``"true"`` (:math:`l=\\tau`) or ``"surrogate"`` (:math:`l=\\operatorname{sign}(x_s)`, black box)."""

_T, _W = np.polynomial.legendre.leggauss(20)
_S, _WS = (1.0 + _T) / 2.0, _W / 2.0  # Gauss-Legendre on [0, 1], weights summing to 1


@jax.jit
def _bvn_upper(h, k, r):
    r""":math:`P(X>h, Y>k)` for a standard bivariate normal with correlation ``r`` (Genz's BVNU,
    Drezner--Wesolowsky with 20-point Gauss--Legendre; for :math:`|r|\ge0.925` the expansion in
    :math:`\sqrt{1-r^2}`). Broadcasting arrays."""
    h, k, r = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.result_type(h, k, r, float)) for a in (h, k, r)))
    dtype = h.dtype
    lift = lambda a: jnp.reshape(a, (1,) * h.ndim + a.shape)
    s, ws = lift(jnp.asarray(_S, dtype)), lift(jnp.asarray(_WS, dtype))  # h.shape + (20,) after broadcasting
    tp = 2.0 * math.pi
    ex = lambda a: a[..., None]
    # |r| < 0.925: integral over theta in (0, asin r)
    hk, hs = h * k, (h * h + k * k) / 2
    rr = jnp.where(jnp.abs(r) < 0.925, r, 0.0)
    A = jnp.arcsin(rr)
    sn = jnp.sin(ex(A) * s)
    small = A / tp * jnp.sum(ws * jnp.exp((sn * ex(hk) - ex(hs)) / (1 - sn * sn)), axis=-1) + ndtr(-h) * ndtr(-k)
    # |r| >= 0.925
    kk = jnp.where(r < 0, -k, k)
    hk2 = h * kk
    one = jnp.abs(r) >= 1
    as_ = jnp.where(one, 1.0, (1 - r) * (1 + r))
    a = jnp.sqrt(as_)
    bs = (h - kk) ** 2
    c, d = (4 - hk2) / 8, (12 - hk2) / 80
    asr = -(bs / as_ + hk2) / 2
    bvn = jnp.where(asr > -100, a * jnp.exp(asr) * (1 - c * (bs - as_) * (1 - d * bs) / 3 + c * d * as_ * as_), 0.0)
    b = jnp.sqrt(bs)
    bvn = bvn - jnp.where(
        hk2 > -100, jnp.exp(-hk2 / 2) * math.sqrt(tp) * ndtr(-b / a) * b * (1 - c * bs * (1 - d * bs) / 3), 0.0
    )
    xs = (ex(a) * s) ** 2
    asx = -(ex(bs) / xs + ex(hk2)) / 2
    sp = 1 + ex(c) * xs * (1 + 5 * ex(d) * xs)
    rs = jnp.sqrt(1 - xs)
    ep = jnp.exp(-(ex(hk2) / 2) * xs / (1 + rs) ** 2) / rs
    term = a * jnp.sum(ws * jnp.where(asx > -100, jnp.exp(asx) * (sp - ep), 0.0), axis=-1)
    bvn = jnp.where(one, 0.0, (term - bvn) / tp)
    low = jnp.where(h < 0, ndtr(kk) - ndtr(h), ndtr(-h) - ndtr(-kk))
    large = jnp.where(r > 0, bvn + ndtr(-jnp.maximum(h, kk)), jnp.where(h >= kk, -bvn, low - bvn))
    out = jnp.where(jnp.abs(r) < 0.925, small, large)
    return jnp.clip(out, 0.0, 1.0)


def bivariate_normal_cdf(h: ArrayLike, k: ArrayLike, r: ArrayLike) -> jax.Array:
    r""":math:`\Phi_2(h, k; r) = P(X<h,\ Y<k)` for standard normals with correlation :math:`r`.

    .. math::
        \Phi_2(h,k;r) = \Phi(h)\Phi(k) + \frac1{2\pi}\int_0^{\arcsin r}
        \exp\Big(-\frac{h^2+k^2-2hk\sin\theta}{2\cos^2\theta}\Big)\,d\theta

    for :math:`|r|<0.925` (20-point Gauss--Legendre), and Genz's expansion in :math:`\sqrt{1-r^2}` above
    (A. Genz, *Numerical computation of rectangular bivariate and trivariate normal and t
    probabilities*, Stat. Comput. 14, 2004). Accurate to about :math:`10^{-14}` (tested against
    ``scipy.stats.multivariate_normal.cdf``). Broadcasts; jit- and vmap-able.

    Example:
        >>> from jaxadv.analysis.transfer import bivariate_normal_cdf
        >>> round(float(bivariate_normal_cdf(0.0, 0.0, 0.5)), 6)   # 1/4 + asin(1/2)/(2 pi)
        0.333333
    """
    return _bvn_upper(-jnp.asarray(h), -jnp.asarray(k), r)


def _concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _check(name, x, ok, rule):
    """Validate a concrete argument elementwise (traced values inside ``jit`` are not checked)."""
    if x is None or not _concrete(x):
        return
    for v in np.atleast_1d(np.asarray(x, dtype=float)).ravel():
        check_value(name, v, ok, rule)


def _validate(eps, Q, M, labels, R_s, b_s, R_t, b_t):
    if labels not in LABEL_MODES:
        raise ValueError(f"labels={labels!r} must be one of {list(LABEL_MODES)}")
    _check("eps", eps, lambda v: v >= 0, "must be >= 0")
    _check("Q", Q, lambda v: -1.0 <= v <= 1.0, "must lie in [-1, 1] (an overlap of unit vectors)")
    _check("M", M, lambda v: True, "")
    for name, x in (("R_s", R_s), ("R_t", R_t)):
        _check(name, x, lambda v: -1.0 <= v <= 1.0, "must lie in [-1, 1]")
    for name, x in (("b_s", b_s), ("b_t", b_t)):
        _check(name, x, lambda v: True, "")
    if labels == "surrogate" and (R_s is None or b_s is None):
        raise ValueError("labels='surrogate' needs the surrogate's R_s and b_s (the attack label is its prediction)")


def _pieces(R_t, b_t, eps, params, Q, M, R_s, b_s):
    """Per-cluster standardised quantities, each of shape ``(2,) + broadcast shape``."""
    tau, weight, var = cluster_table(params)
    arrays = [jnp.asarray(a, float) for a in (R_t, b_t, eps, Q, M, R_s, b_s)]
    shape = jnp.broadcast_shapes(*(a.shape for a in arrays), jnp.shape(tau)[1:])
    rank = len(shape) + 1
    up = lambda a: jnp.broadcast_to(jnp.reshape(a, (1,) * (rank - jnp.ndim(a)) + jnp.shape(a)), (2,) + shape)
    R_t, b_t, eps, Q, M, R_s, b_s = (up(a) for a in arrays)
    # the cluster axis leads: (2,) + the data parameters' shape, lifted to (2,) + shape
    lead = lambda a: jnp.broadcast_to(
        jnp.reshape(a, (2,) + (1,) * (rank - jnp.ndim(a)) + jnp.shape(a)[1:]), (2,) + shape
    )
    tau, weight, sd = lead(tau), lead(weight), jnp.sqrt(lead(var))
    half = up(jnp.asarray(params.rho)) / 2
    c_t = (half * R_t - tau * b_t) / sd
    c_s = (half * R_s - tau * b_s) / sd
    return weight, sd, c_t, c_s, eps * M, Q


def _defaults(eps, Q, M, labels, R_s, b_s, R_t, b_t):
    """Validate, then ``(Q, M, R_s, b_s)`` with the defaults filled in (``M = Q``: the L2 shift;
    the surrogate's ``R_s, b_s`` only matter with surrogate labels)."""
    _validate(eps, Q, M, labels, R_s, b_s, R_t, b_t)
    return Q, (Q if M is None else M), (0.0 if R_s is None else R_s), (0.0 if b_s is None else b_s)


def transfer_error(
    R_t: ArrayLike,
    b_t: ArrayLike,
    eps: ArrayLike,
    params: ModelParams,
    *,
    Q: ArrayLike,
    M: ArrayLike | None = None,
    labels: str = "true",
    R_s: ArrayLike | None = None,
    b_s: ArrayLike | None = None,
) -> jax.Array:
    r"""The target's error on examples attacked through the surrogate (module docstring).

    Args:
        R_t, b_t: the target's :math:`w_t\cdot B` and bias.
        eps: attack radius (>= 0).
        params: data parameters (``prior``, ``rho``, ``v1``, ``v2``).
        Q: :math:`w_s\cdot w_t\in[-1,1]`, the correlation of the two clean fields.
        M: the overlap the target's field moves by per unit :math:`\epsilon`: ``None`` (L2: :math:`M=Q`) or
            :math:`w_t\cdot\operatorname{sign}(w_s)` (L-infinity).
        labels: ``"true"`` (:math:`l=\tau`) or ``"surrogate"`` (:math:`l=\operatorname{sign}(x_s)`, needs
            ``R_s``, ``b_s``).

    Returns:
        The error, of the arguments' broadcast shape. With ``Q = M = 1`` and true labels it is the
        target's white-box robust error :func:`jaxadv.analysis.measures.robust_error`.

    Example:
        >>> from jaxadv import ModelParams, robust_error
        >>> from jaxadv.analysis.transfer import transfer_error
        >>> p = ModelParams()
        >>> bool(transfer_error(0.9, 0.0, 0.5, p, Q=0.8) < robust_error(0.9, 0.0, 0.5, p))
        True
    """
    return _error(R_t, b_t, eps, params, *_defaults(eps, Q, M, labels, R_s, b_s, R_t, b_t), labels)


@functools.partial(jax.jit, static_argnames="labels")
def _error(R_t, b_t, eps, params, Q, M, R_s, b_s, labels):
    weight, sd, c_t, c_s, em, Q = _pieces(R_t, b_t, eps, params, Q, M, R_s, b_s)
    if labels == "true":
        per = ndtr(em / sd - c_t)
    else:
        F = lambda y: bivariate_normal_cdf(c_s, y / sd - c_t, -Q)
        per = F(em) + ndtr(-em / sd - c_t) - F(-em)
    return jnp.sum(weight * per, axis=0)


def transfer_rate(
    R_t: ArrayLike,
    b_t: ArrayLike,
    eps: ArrayLike,
    params: ModelParams,
    *,
    Q: ArrayLike,
    M: ArrayLike | None = None,
    labels: str = "true",
    R_s: ArrayLike | None = None,
    b_s: ArrayLike | None = None,
) -> jax.Array:
    r"""The conditional transfer rate :math:`P(\text{target wrong after}\mid\text{target right before})`.

    .. math::
        \text{rate} = \frac{\sum_\tau p_\tau\,P(\tau x_t>0,\ \tau x_t'\le0\mid\tau)}{\sum_\tau p_\tau\,\Phi(c_t)},

    with :math:`\tau x_t' = \tau x_t - \tau l\,\epsilon m`. True labels: the numerator's term is
    :math:`\max(0, \Phi(\epsilon m/\sqrt{v_\tau}-c_t)-\Phi(-c_t))`; surrogate labels split on the sign of
    :math:`\tau x_s` with :math:`F` of :func:`transfer_error`. Arguments as :func:`transfer_error`.
    """
    return _rate(R_t, b_t, eps, params, *_defaults(eps, Q, M, labels, R_s, b_s, R_t, b_t), labels)


@functools.partial(jax.jit, static_argnames="labels")
def _rate(R_t, b_t, eps, params, Q, M, R_s, b_s, labels):
    weight, sd, c_t, c_s, em, Q = _pieces(R_t, b_t, eps, params, Q, M, R_s, b_s)
    G = lambda y: ndtr(y / sd - c_t)  # P(tau x_t < y)
    zero = jnp.zeros_like(em)
    if labels == "true":
        num = G(jnp.maximum(em, zero)) - G(zero)
    else:
        F = lambda y: bivariate_normal_cdf(c_s, y / sd - c_t, -Q)  # P(tau x_s > 0, tau x_t < y)
        hi_r, hi_w = jnp.maximum(em, zero), jnp.maximum(-em, zero)
        right = F(hi_r) - F(zero)  # surrogate right: l = tau
        wrong = (G(hi_w) - G(zero)) - (F(hi_w) - F(zero))  # surrogate wrong: l = -tau
        num = right + wrong
    den = jnp.sum(weight * ndtr(c_t), axis=0)
    return jnp.sum(weight * num, axis=0) / den


def transfer_table(
    R_s: ArrayLike,
    b_s: ArrayLike,
    R_t: ArrayLike,
    b_t: ArrayLike,
    Q: ArrayLike,
    eps: ArrayLike,
    params: ModelParams,
    M: ArrayLike | None = None,
) -> dict[str, jax.Array]:
    r"""Every closed-form measure at once: ``{clean_t, robust_t, transfer_true, transfer_surrogate,
    rate_true, rate_surrogate}`` (``robust_t``: the target's white-box L2 robust error at ``eps``)."""
    from .measures import robust_error, test_error

    out = {
        "clean_t": test_error(jnp.asarray(R_t), jnp.asarray(b_t), params),
        "robust_t": robust_error(jnp.asarray(R_t), jnp.asarray(b_t), jnp.asarray(eps), params),
    }
    for lab in LABEL_MODES:
        kw: dict[str, Any] = dict(Q=Q, M=M, labels=lab, R_s=R_s, b_s=b_s)
        out[f"transfer_{lab}"] = transfer_error(R_t, b_t, eps, params, **kw)
        out[f"rate_{lab}"] = transfer_rate(R_t, b_t, eps, params, **kw)
    return out
