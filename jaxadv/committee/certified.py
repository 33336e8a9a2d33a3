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

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.scipy.special import erf
from jax.typing import ArrayLike

from .. import attacks
from .fields import committee_output, geometry, min_margin, pgd
from .lipschitz import lipschitz_bound
from .measures import bisected_error, measure_rule
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


@functools.partial(jax.jit, static_argnames=("certificate", "rule"))
def _certified_error(state, mixture, eps, certificate, rule):
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
) -> jax.Array:
    r""":math:`C(\epsilon)=\sum_cp_cP(\underline m\le0)` of one point of order parameters
    (a :class:`~jaxadv.committee.ode.CommitteeState`, ``Q`` ``(K, K)``, ``R`` ``(K, D)``, ``b``, ``v`` ``(K,)``).

    Args:
        state: order parameters (exact for fixed weights at any N).
        mixture: the data.
        eps: L2 radius :math:`\epsilon\ge0` (scalar).
        certificate: ``"lipschitz"`` (:math:`\tau\sigma\le L\epsilon`) or ``"interval"``.
        rule: (K-1)-dimensional rule (default :func:`jaxadv.committee.measures.measure_rule`).

    Raises:
        ValueError: naming ``eps`` or ``certificate``.

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
    rule = measure_rule(int(np.shape(state.Q)[-1])) if rule is None else rule
    return _certified_error(state, mixture, jnp.asarray(eps, jnp.asarray(state.Q).dtype), certificate, rule)


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
