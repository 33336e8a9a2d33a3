r"""The committee in field space: output, loss, force and the three L2 attacks.

For a committee :math:`\sigma=\sum_k v_k g(x_k)` with fields :math:`x_k = w_k\cdot\xi-b_k`,
:math:`g=\operatorname{erf}`, the input gradient of any loss :math:`L(\sigma,\tau)` is

.. math::
    \nabla_\xi L = \sum_k \kappa_k w_k,\qquad \kappa_k = \ell'(\sigma)\,v_k\,g'(x_k),
    \qquad \|\nabla_\xi L\| = \sqrt{\kappa^\top Q\kappa},

so it lies in :math:`\mathrm{span}\{w_k\}`. Every attack here therefore returns the coefficients
:math:`\gamma` of :math:`\delta = W^\top\gamma` (shape ``(K,)``); the fields move by
:math:`u = Q\gamma` and the overlaps with the data directions by :math:`R^\top\gamma`;
:math:`\|\delta\|^2=\gamma^\top Q\gamma`. All functions are pure, for one example, and
``vmap``-able. Derivation: ``docs/theory.md``, section 12.

The loss is a :class:`jaxadv.model.losses.Loss` record (or its name) of the output :math:`\sigma`
(:func:`jaxadv.model.losses.student_loss_value`; the margin losses act on the student's score, which for the
committee is :math:`\sigma`), with the rule's parameters ``rp`` for a loss that has some (the hinge's
``hinge_margin``); the attacks ascend :func:`jaxadv.model.losses.ascent_value`, the loss itself except for
the hinge, whose margin :math:`c-\tau\sigma` they ascend (section 12.15). The attacks' records, which call
:func:`fgm`, :func:`pgd` and :func:`worst_case`, are in :mod:`jaxadv.committee.attacks`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from jax.typing import ArrayLike

from ..model.losses import Loss, ascent_value, get_loss, student_loss_value

if TYPE_CHECKING:
    pass

__all__ = [
    "Geometry",
    "geometry",
    "committee_output",
    "loss_value",
    "loss_slope",
    "ascent_slope",
    "gprime",
    "erf_gprime",
    "forces",
    "fgm",
    "pgd",
    "worst_case",
    "maximise_on_ellipsoid",
    "min_margin",
    "sphere_grid",
]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

LossLike = str | Loss


def _loss_record(loss: LossLike) -> Loss:
    """The :class:`jaxadv.model.losses.Loss` record of a name (or the record passed through)."""
    return get_loss(loss)


def loss_value(loss: LossLike, sigma: Any, tau: Any, rp: dict | None = None) -> jax.Array:
    r""":math:`L(\sigma,\tau)` of a :class:`jaxadv.model.losses.Loss` (or its name) on the committee's output,
    :func:`jaxadv.model.losses.student_loss_value`: ``"quadratic"`` :math:`(\sigma-\tau)^2/2`, ``"logistic"``
    :math:`\log(1+e^{-2\tau\sigma})`, ``"hinge"`` :math:`\max(0,c-\tau\sigma)` with :math:`c` =
    ``rp["hinge_margin"]`` (``rp``: the rule's parameters, :func:`jaxadv.committee.params.rule_params`)."""
    return student_loss_value(_loss_record(loss), sigma, tau, rp)


def loss_slope(loss: LossLike, sigma: Any, tau: Any, rp: dict | None = None) -> jax.Array:
    r""":math:`\ell'(\sigma) = \partial L/\partial\sigma` (``jax.grad`` of :func:`loss_value`; scalars)."""
    return jax.grad(lambda s: loss_value(loss, s, tau, rp))(sigma)


def ascent_slope(loss: LossLike, sigma: Any, tau: Any, rp: dict | None = None) -> jax.Array:
    r"""The slope in :math:`\sigma` of what the attacks ascend (:func:`jaxadv.model.losses.ascent_value`):
    :math:`\ell'(\sigma)`, except for the hinge, :math:`-\tau` (its margin's slope, also where the hinge is 0)."""
    rec = _loss_record(loss)
    return jax.grad(lambda s: ascent_value(rec, s, tau, rp))(sigma)


def gprime(x: jax.Array) -> jax.Array:
    r""":math:`g'(x) = \frac{2}{\sqrt\pi}e^{-x^2}`."""
    return _TWO_OVER_SQRT_PI * jnp.exp(-x * x)


#: :math:`F(x)=e^{x^2}\operatorname{erfc}(x)` on :math:`0\le x\le6` as a polynomial of degree 30 in
#: :math:`u=x/3-1\in[-1,1]`: a least-squares Chebyshev fit on 20 000 Chebyshev points of
#: ``scipy.special.erfcx``, written in powers of ``u`` (the sum of their magnitudes is 1.0005, so Horner's
#: rule loses nothing to cancellation)
_ERFCX_POLY = (
    0.17900115118138943,
    -0.16311678002159005,
    0.14295934043913805,
    -0.12094463748456327,
    0.09906616321746749,
    -0.07876250785716467,
    0.06091096863158825,
    -0.04590394676439638,
    0.0337657554774861,
    -0.024276527107302825,
    0.017081064721390267,
    -0.011773221998560162,
    0.00795867064971423,
    -0.005288062647790144,
    0.0034482309750458046,
    -0.0021835091577329263,
    0.0013736274283759793,
    -0.0009238419527690904,
    0.0005705544410984579,
    -0.00020329956087382692,
    0.00011259949682879537,
    -0.00026687832290296133,
    0.00016246303445539202,
    0.0001140196844912271,
    -6.994203977775856e-05,
    -0.00011011403083026964,
    6.321306492985002e-05,
    3.703945419791421e-05,
    -2.064036702189755e-05,
    -9.448331940381566e-06,
    5.063548159359966e-06,
)
_ERFCX_END = 6.0  # beyond it e^{-x^2} F(x) < 2.2e-17: erf is 1 in float64


def erf_gprime(x: Any) -> Any:
    r""":math:`(\operatorname{erf}x,\ g'(x))` sharing one exponential, for the ODE's quadrature nodes.

    .. math::
        \operatorname{erf}x=\operatorname{sgn}(x)\big(1-e^{-x^2}F(\min(|x|,6))\big),\qquad
        F(x)=e^{x^2}\operatorname{erfc}x\approx\sum_{n=0}^{30}a_n\Big(\frac x3-1\Big)^n,

    by Horner's rule (:data:`_ERFCX_POLY`): no branch and no division, so XLA vectorises it. Absolute error
    below 5e-15 for every ``x`` in float64 (measured against ``scipy.special.erf`` on 400 000 points of
    [-8, 8] and 2000 of [8, 80]; ``tests/test_committee.py``); in float32 the error is that of float32.
    Measured on 2 shared CPU cores: 4.5-5.2 ns an element for both values against 19.9 ns for XLA's
    ``erf`` and ``exp`` (float64), which were most of the cost of an ODE evaluation. The Monte Carlo and the
    measures keep ``jax.scipy.special.erf``.
    """
    u = jnp.minimum(jnp.abs(x), _ERFCX_END) * (2.0 / _ERFCX_END) - 1.0
    F = jnp.full_like(u, _ERFCX_POLY[-1])
    for c in _ERFCX_POLY[-2::-1]:
        F = c + u * F
    e = jnp.exp(-x * x)
    return jnp.sign(x) * (1.0 - e * F), _TWO_OVER_SQRT_PI * e


def committee_output(x: ArrayLike, v: ArrayLike) -> jax.Array:
    r""":math:`\sigma = \sum_k v_k\operatorname{erf}(x_k)` over the last axis (``x``: ``(..., K)``, ``v``: ``(K,)``)."""
    x, v = jnp.asarray(x), jnp.asarray(v)
    return jnp.sum(jnp.reshape(v, (1,) * (x.ndim - v.ndim) + v.shape) * erf(x), axis=-1)


class Geometry(NamedTuple):
    r"""The eigen-decomposition :math:`Q = U\Lambda U^\top` held in the forms the code needs.

    Attributes:
        Q: :math:`Q_{kl}=w_k\cdot w_l`, shape ``(K, K)``.
        L: :math:`U\Lambda^{1/2}` (``Q = L L^T``), shape ``(K, K)``.
        P: :math:`U\Lambda^{-1/2}` with the columns of clipped eigenvalues set to 0, shape ``(K, K)``
            (so :math:`P^\top Q P` is the identity on the kept eigenspace).
        L_sym: the symmetric square root :math:`Q^{1/2}=U\Lambda^{1/2}U^\top` (also ``Q = L L^T``).
        P_sym: :math:`U\Lambda^{-1/2}U^\top` on the kept eigenspace (the pseudo-inverse of ``L_sym``).

    Any :math:`L` with :math:`LL^\top=Q` whitens the fields, :math:`x=m+\sqrt{v_c}Lt`; the symmetric one
    is a smooth function of :math:`Q` and close to the identity when :math:`Q` is, so the axes of a
    tensor-product rule in :math:`t` stay along the fields' own axes (``docs/theory.md``, section 12.7).
    """

    Q: jax.Array
    L: jax.Array
    P: jax.Array
    L_sym: jax.Array | None = None
    P_sym: jax.Array | None = None


def geometry(Q: jax.Array, rtol: float = 1e-10) -> Geometry:
    r""":class:`Geometry` of ``Q``; eigenvalues below ``rtol`` times the largest are clipped to 0."""
    Q = (Q + Q.T) / 2
    lam, U = jnp.linalg.eigh(Q)
    keep = lam > rtol * jnp.maximum(jnp.max(lam), jnp.finfo(Q.dtype).tiny)
    lam_kept = jnp.where(keep, lam, 1.0)
    L = U * jnp.where(keep, jnp.sqrt(lam_kept), 0.0)[None, :]
    P = U * jnp.where(keep, 1.0 / jnp.sqrt(lam_kept), 0.0)[None, :]
    return Geometry(Q, L, P, L @ U.T, P @ U.T)


def _along_units(v, x):
    """``v`` ``(K,)`` shaped to broadcast against fields ``x`` of shape ``(K, ...)``."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - 1))


def _units_sum(v, g):
    """:math:`\\sum_kv_kg_k` over the first axis of ``g`` ``(K, ...)``, unrolled (fuses with the work around it)."""
    return sum(v[k] * g[k] for k in range(g.shape[0]))


def _slopes(slope, loss, sigma, tau, rp):
    r"""``slope`` (:func:`loss_slope` or :func:`ascent_slope`) at every entry of ``sigma`` (any shape)."""
    f = lambda s: slope(loss, s, tau, rp)  # noqa: E731
    return f(sigma) if jnp.ndim(sigma) == 0 else jnp.vectorize(f)(sigma)


def forces(
    xt: jax.Array, v: jax.Array, tau: float | jax.Array, loss: LossLike, rp: dict | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Forces at the attacked fields :math:`\tilde x`, shape ``(K,)`` or ``(K, n)`` (``n`` fields at once, units
    along the first axis: the layout in which the ODE's nodes vectorise).

    Returns:
        ``(Delta, Fv)`` of the shape of ``xt``:
        :math:`\Delta_k=-\partial L/\partial\tilde x_k=-\ell'(\tilde\sigma)v_kg'(\tilde x_k)` and
        :math:`F_{v,k}=-\partial L/\partial v_k=-\ell'(\tilde\sigma)\,g(\tilde x_k)`, with :func:`erf_gprime`
        (``rp``: the rule's parameters, e.g. the hinge's margin; the hinge's force is the step
        :math:`\ell'=-\tau\,\mathbb 1[\tau\tilde\sigma<c]`).
    """
    g, gp = erf_gprime(xt)
    lp = _slopes(loss_slope, loss, _units_sum(v, g), tau, rp)[None]
    return -lp * _along_units(v, xt) * gp, -lp * g


def _safe_unit(kappa, Q):
    """``kappa / sqrt(kappa^T Q kappa)``, and 0 where that norm is 0 (no gradient: no step)."""
    n2 = kappa @ Q @ kappa
    ok = n2 > 0
    return jnp.where(ok, kappa / jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


def _kappa(x, v, tau, loss, rp):
    r""":math:`\kappa_k=\ell'(\sigma)v_kg'(x_k)`: coefficients of :math:`\nabla_\xi A` on the :math:`w_k`
    (:math:`A` what the attacks ascend, :func:`ascent_slope`)."""
    return ascent_slope(loss, committee_output(x, v), tau, rp) * v * gprime(x)


def fgm(
    x: jax.Array,
    geom: Geometry,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    loss: LossLike = "quadratic",
    rp: dict | None = None,
) -> jax.Array:
    r"""Fast gradient method, :math:`\delta=\epsilon\nabla_\xi L/\|\nabla_\xi L\|`:
    :math:`\gamma=\epsilon\,\kappa/\sqrt{\kappa^\top Q\kappa}` (shifts :math:`u=Q\gamma`; 0 where
    :math:`\kappa=0`), :math:`\kappa` with :func:`erf_gprime`. ``x``: one field ``(K,)`` or ``n`` fields
    ``(K, n)`` (units along the first axis); :math:`\gamma` has its shape. :math:`L` is what the attacks ascend
    (:func:`ascent_slope`: for the hinge its margin :math:`c-\tau\sigma`, so FGM moves toward the margin also
    where the hinge is 0; ``docs/theory.md``, section 12.15)."""
    g, gp = erf_gprime(x)
    kappa = _slopes(ascent_slope, loss, _units_sum(v, g), tau, rp)[None] * _along_units(v, x) * gp
    K = kappa.shape[0]
    n2 = sum(geom.Q[i, j] * kappa[i] * kappa[j] for i in range(K) for j in range(K))[None]
    ok = n2 > 0
    return jnp.where(ok, eps * kappa / jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


def pgd(
    x: jax.Array,
    geom: Geometry,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    steps: int,
    step: float | jax.Array,
    loss: LossLike = "quadratic",
    perp0: float | jax.Array = 0.0,
    rp: dict | None = None,
) -> jax.Array:
    r"""L2 PGD: ``steps`` times
    :math:`\delta\leftarrow\Pi_\epsilon(\delta+s\,\nabla_\xi L(\xi+\delta)/\|\nabla_\xi L\|)`.

    In field space :math:`\delta = W^\top\gamma+\delta_\perp` with :math:`\delta_\perp\perp w_k`:
    the gradient never has a :math:`\delta_\perp` part, and the projection scales both parts by
    :math:`\min(1,\epsilon/\|\delta\|)`, :math:`\|\delta\|^2=\gamma^\top Q\gamma+\|\delta_\perp\|^2`.
    ``perp0`` is :math:`\|\delta_\perp\|` at the start (0, or :math:`\epsilon` for the random start at
    large N). Returns :math:`\gamma`."""
    Q = geom.Q

    def body(_, carry):
        gamma, p2 = carry
        gamma = gamma + step * _safe_unit(_kappa(x + Q @ gamma, v, tau, loss, rp), Q)
        n2 = gamma @ Q @ gamma + p2
        ok = n2 > eps * eps
        scale = jnp.where(ok, eps / jnp.sqrt(jnp.where(ok, n2, 1.0)), 1.0)
        return gamma * scale, p2 * scale * scale

    gamma0 = jnp.zeros_like(x)
    p20 = jnp.asarray(perp0, x.dtype) ** 2
    return jax.lax.fori_loop(0, steps, body, (gamma0, p20))[0]


@functools.cache
def sphere_grid(K: int, n: int) -> np.ndarray:
    """``n`` fixed, roughly even points on the unit sphere in ``K`` dimensions (NumPy, cached):
    ``K = 1``: :math:`\\pm1`; ``K = 2``: equally spaced angles; ``K >= 3``: normalised Gaussian draws
    from a fixed seed, spread by a few rounds of mutual repulsion."""
    if K == 1:
        return np.array([[1.0], [-1.0]])
    if K == 2:
        th = 2 * np.pi * np.arange(n) / n
        return np.stack([np.cos(th), np.sin(th)], -1)
    e = np.random.default_rng(12345).normal(size=(n, K))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    for _ in range(50):
        d = e[:, None, :] - e[None, :, :]
        r2 = np.sum(d * d, -1) + np.eye(n)
        force = np.sum(d / r2[..., None] ** 1.5, axis=1)
        e = e + 0.1 / n * force
        e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e


def _grid_size(K: int) -> int:
    return 2 if K == 1 else (24 if K == 2 else 32 * (K - 1) ** 2)


def maximise_on_ellipsoid(
    phi: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    geom: Geometry,
    eps: float | jax.Array,
    iters: int = 32,
    n_polish: int = 3,
    envelope: bool = False,
) -> tuple[jax.Array, jax.Array]:
    r"""Maximise :math:`\varphi(x+u)` over the boundary of :math:`\{u=Q\gamma:\gamma^\top Q\gamma\le\epsilon^2\}`.

    Parametrise :math:`u=\epsilon Le`, :math:`\gamma=\epsilon Pe`, :math:`\|e\|=1` (no :math:`Q^{-1}`).
    Global search on a fixed grid of the sphere (:func:`sphere_grid`, plus :math:`\pm` the normalised
    gradient at :math:`e=0`), then a polish of the ``n_polish`` best points: ``iters`` moves along the
    tangent gradient by an angle that starts at the grid spacing, grows by 1.5 after a move that
    increases :math:`\varphi` and shrinks by 0.4 (move refused) otherwise; the best end point wins.
    For :math:`K=1` the two points :math:`e=\pm1` are compared exactly.
    For a :math:`\varphi` increasing along some :math:`w`-direction (every erf committee) the maximum
    lies on the boundary, so the interior is not searched.

    With ``envelope``, the derivatives of ``value`` are those of the envelope theorem, :math:`\partial\varphi/
    \partial\theta` at the maximiser :math:`e^*` held fixed (the sphere does not depend on :math:`\theta`), not
    those of the search's iterations (whose normalised tangent gradient has no derivative where it vanishes,
    at the maximum); the value is the same, and ``gamma`` carries no derivative through :math:`e^*`.

    Returns:
        ``(gamma, value)``: shape ``(K,)`` and the maximum.
    """
    K = x.shape[-1]
    f = lambda e: phi(x + eps * (geom.L @ e))
    g0 = jax.grad(f)(jnp.zeros_like(x))
    n0 = jnp.linalg.norm(g0)
    e_grad = jnp.where(n0 > 0, g0 / jnp.where(n0 > 0, n0, 1.0), jnp.zeros_like(x).at[-1].set(1.0))
    n_grid = _grid_size(K)
    grid = jnp.asarray(sphere_grid(K, n_grid), x.dtype)
    cands = jnp.concatenate([e_grad[None], -e_grad[None], grid])
    vals = jax.vmap(f)(cands)
    if K == 1:
        best = jnp.argmax(vals)
        return _at_maximiser(f, cands[best], vals[best], geom, eps, envelope)
    step0 = 2.0 * math.pi / n_grid if K == 2 else 2.0 / math.sqrt(n_grid)

    def polish(e, fe):
        def body(_, carry):
            e, fe, s = carry
            g = jax.grad(f)(e)
            g_tan = g - (g @ e) * e
            n = jnp.linalg.norm(g_tan)
            d = jnp.where(n > 0, g_tan / jnp.where(n > 0, n, 1.0), 0.0)
            e_new = jnp.cos(s) * e + jnp.sin(s) * d
            e_new = e_new / jnp.linalg.norm(e_new)
            f_new = f(e_new)
            better = f_new > fe
            return (jnp.where(better, e_new, e), jnp.where(better, f_new, fe), jnp.where(better, 1.5 * s, 0.4 * s))

        return jax.lax.fori_loop(0, iters, body, (e, fe, jnp.asarray(step0, x.dtype)))[:2]

    top = jnp.argsort(-vals)[:n_polish]
    ends, values = jax.vmap(polish)(cands[top], vals[top])
    best = jnp.argmax(values)
    return _at_maximiser(f, ends[best], values[best], geom, eps, envelope)


def _at_maximiser(f, e, fe, geom, eps, envelope: bool):
    """``(gamma, value)`` at the maximiser ``e``; with ``envelope`` the value's derivative is that of ``f`` at ``e``
    held fixed (:func:`maximise_on_ellipsoid`), its value ``fe`` unchanged (the added term is exactly 0)."""
    if envelope:
        e, fe = jax.lax.stop_gradient(e), jax.lax.stop_gradient(fe)
        fe_live = f(e)
        fe = fe + (fe_live - jax.lax.stop_gradient(fe_live))
    return eps * (geom.P @ e), fe


def worst_case(
    x: jax.Array,
    geom: Geometry,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    loss: LossLike = "quadratic",
    iters: int = 32,
    rp: dict | None = None,
) -> jax.Array:
    r"""Exact worst case :math:`\max_{\|\delta\|\le\epsilon} L(\sigma(\xi+\delta),\tau)` as
    :math:`\gamma` (:func:`maximise_on_ellipsoid` of what the attacks ascend,
    :func:`jaxadv.model.losses.ascent_value` of :math:`\sigma(\tilde x)`: the loss, or for the hinge its margin
    :math:`c-\tau\sigma`, whose maximiser is the hinge's wherever the hinge is positive on the ball)."""
    rec = _loss_record(loss)
    phi = lambda xt: ascent_value(rec, committee_output(xt, v), tau, rp)
    return maximise_on_ellipsoid(phi, x, geom, eps, iters)[0]


def min_margin(
    x: jax.Array, geom: Geometry, v: jax.Array, tau: float | jax.Array, eps: float | jax.Array, iters: int = 32
) -> jax.Array:
    r""":math:`\min_{\|\delta\|\le\epsilon}\tau\sigma(\xi+\delta)` (the example is :math:`\epsilon`-robust iff > 0)."""
    phi = lambda xt: -tau * committee_output(xt, v)
    return -maximise_on_ellipsoid(phi, x, geom, eps, iters)[1]
