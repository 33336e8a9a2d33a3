r"""Certified robustness of the single-layer (linear-field) student.

A classifier :math:`\operatorname{sign}(x)`, :math:`x=w\cdot\xi-b`, is *certified* robust at
:math:`\xi` to radius :math:`\epsilon` in the norm :math:`p` when a bound proves that no
:math:`\|\delta\|_p\le\epsilon` flips it. For the linear field the bound is exact (Hölder, with
equality at :math:`\delta=-\tau\epsilon\,\partial\|w\|_{p^*}`):

.. math::
    \min_{\|\delta\|_p\le\epsilon}\tau\,w\cdot(\xi+\delta)-\tau b=\tau x-\epsilon\|w\|_{p^*},
    \qquad r_p(\xi)=\frac{|x|}{\|w\|_{p^*}},\qquad \tfrac1p+\tfrac1{p^*}=1,

so the certified radius :math:`r_p` is the distance to the decision boundary and the certified
error

.. math::
    C_p(\epsilon)=P\big(\tau x\le\epsilon\|w\|_{p^*}\big)

*is* the exact :math:`\epsilon`-robust error (no box). With :math:`\|w\|_2=1` and the two-cluster
data (:math:`x\mid\tau\sim\mathcal N(\tau\rho R/2-b, v_\tau)`)

.. math::
    C_p(\epsilon)=p\,\Phi\Big(\frac{\epsilon\|w\|_{p^*}+b-\rho R/2}{\sqrt{v_1}}\Big)
      +(1-p)\,\Phi\Big(\frac{\epsilon\|w\|_{p^*}-b-\rho R/2}{\sqrt{v_2}}\Big)

(:func:`certified_error`; :math:`\|w\|_{p^*}` is 1 for L2, :math:`\|w\|_1` for L-infinity,
:math:`\|w\|_\infty` for L1). A certificate proves robustness, so in general (committees,
:mod:`jaxadv.committee.certified`) certified *accuracy* :math:`\le` exact robust accuracy :math:`\le`
the accuracy an attack (PGD) leaves, i.e. certified error :math:`\ge` exact robust error
:math:`\ge` PGD robust error; here the first :math:`\ge` is an equality. With a box constraint on
the inputs (MNIST's :math:`[0,1]`) the certificate ignores the box: it stays a valid upper bound
on the robust error but is no longer tight. ``docs/theory.md``, section 14.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike

from .. import attacks
from ..attacks import canonical_norm, dual_norm_value
from ..model.params import ModelParams
from ..typing import Norm, Real
from ..validation import check_value
from .measures import robust_error

if TYPE_CHECKING:
    from ..model.student import Student

__all__ = [
    "certified_radius",
    "certified_margin",
    "certified_mask",
    "certified_error",
    "certified_error_empirical",
    "certified_curve",
    "unboxed_attack_errors",
]


def _check_eps(eps, name: str = "eps"):
    for e in np.atleast_1d(np.asarray(eps, np.float64)).ravel():
        check_value(name, e, lambda v: v >= 0, "must be >= 0")


def certified_radius(w: ArrayLike, b: Real, xi: ArrayLike, norm: Norm = 2) -> jax.Array:
    r""":math:`r_p(\xi)=|w\cdot\xi-b|/\|w\|_{p^*}`, the exact radius (norm ``norm``) within which the
    decision :math:`\operatorname{sign}(w\cdot\xi-b)` cannot change.

    Args:
        w: weights ``(N,)`` (any length; not normalised).
        b: bias, scalar.
        xi: inputs ``(..., N)``.
        norm: the threat's norm :math:`p` (1, 2 or inf).

    Returns:
        ``(...)`` radii.

    Example:
        >>> import jax.numpy as jnp
        >>> float(certified_radius(jnp.array([3.0, 4.0]), 1.0, jnp.array([1.0, 1.0])))
        1.2
    """
    w = jnp.asarray(w)
    return jnp.abs(jnp.asarray(xi) @ w - b) / dual_norm_value(w, canonical_norm(norm))


def certified_margin(w: ArrayLike, b: Real, xi: ArrayLike, tau: ArrayLike, eps: Real, norm: Norm = 2) -> jax.Array:
    r""":math:`\tau(w\cdot\xi-b)-\epsilon\|w\|_{p^*}`: positive iff the example is certified (correct and
    robust to every :math:`\|\delta\|_p\le\epsilon`). Shapes as :func:`certified_radius`, ``tau`` ``(...)``."""
    w = jnp.asarray(w)
    return jnp.asarray(tau) * (jnp.asarray(xi) @ w - b) - eps * dual_norm_value(w, canonical_norm(norm))


def certified_mask(w: ArrayLike, b: Real, xi: ArrayLike, tau: ArrayLike, eps: Real, norm: Norm = 2) -> jax.Array:
    r"""Per example: ``True`` where the example is *not* certified at radius ``eps``,
    :math:`\tau x\le\epsilon\|w\|_{p^*}` (an error or not provably robust). Shape ``(...)``."""
    _check_eps(eps)
    return certified_margin(w, b, xi, tau, eps, norm) <= 0


def certified_error_empirical(
    w: ArrayLike, b: Real, xi: ArrayLike, tau: ArrayLike, eps: Real, norm: Norm = 2
) -> jax.Array:
    r"""Empirical certified error :math:`\frac1n\sum_\mu\Theta(\epsilon\|w\|_{p^*}-\tau_\mu x_\mu)` of
    fixed weights on examples ``xi`` ``(n, N)``, labels ``tau`` ``(n,)``; ``eps`` a scalar.

    For this linear field it equals the error left by the exact worst-case attack (and by an
    L2 PGD that reaches the ball's boundary) on the same examples, example by example."""
    return jnp.mean(certified_mask(w, b, xi, tau, eps, norm).astype(jnp.result_type(float)))


def certified_error(
    R: Real, b: Real, eps: ArrayLike, params: ModelParams, norm: Norm = 2, dual: Real | None = None
) -> jax.Array:
    r""":math:`C_p(\epsilon)` of a unit-L2 student from its order parameters (module docstring).

    Args:
        R: :math:`R=w\cdot B`; b: bias (broadcast with ``eps``).
        eps: radius :math:`\epsilon\ge0`.
        params: the data (``prior``, ``rho``, ``v1``, ``v2``).
        norm: 2 (the default; ``dual`` is 1) or 1 / inf, which need ``dual``
            :math:`=\|w\|_{p^*}` (:math:`\|w\|_\infty` resp. :math:`\|w\|_1`, recorded by the Monte Carlo).

    Raises:
        ValueError: naming ``eps`` (negative), ``norm`` or ``dual`` (missing or < 0).
    """
    _check_eps(eps)
    norm = canonical_norm(norm)
    if dual is None:
        if norm != 2:
            raise ValueError(
                f"dual={dual!r}: norm={norm!r} needs the dual norm of w ({'||w||_1' if norm == 'inf' else '||w||_inf'})"
            )
        dual = 1.0
    for d in np.atleast_1d(np.asarray(dual, np.float64)).ravel():
        check_value("dual", d, lambda v: v >= 0, "must be >= 0")
    return robust_error(R, b, jnp.asarray(eps) * dual, params)


def certified_curve(
    student: Student, x: npt.ArrayLike, y: npt.ArrayLike, eps_grid: npt.ArrayLike, norm: Norm = 2
) -> np.ndarray:
    r"""Empirical certified error of a linear classifier ``student`` (``w`` ``(N,)``, ``b``; any
    :math:`\|w\|`) on ``(x, y)`` at every radius of ``eps_grid``: ``(E,)`` float64 (NumPy).

    The certificate ignores a box constraint on the inputs (MNIST's :math:`[0,1]`): it is the exact
    robust error *without* the box (:func:`unboxed_attack_errors`) and an upper bound with it."""
    eps_grid = np.atleast_1d(np.asarray(eps_grid, np.float64))
    _check_eps(eps_grid)
    x = np.asarray(x, np.float64)
    w, b = np.asarray(student.w, np.float64), float(student.b)
    margin = np.asarray(y, np.float64) * (x @ w - b)  # (n,)
    dual = float(dual_norm_value(jnp.asarray(w), canonical_norm(norm)))
    return np.mean(margin[None, :] <= eps_grid[:, None] * dual, axis=1)


def unboxed_attack_errors(
    student: Student, x: npt.ArrayLike, y: npt.ArrayLike, eps_grid: npt.ArrayLike, norm: Norm = 2
) -> np.ndarray:
    r"""Error left by FGM *without* a box (:func:`jaxadv.attacks.fgm`, ``box=None``), the exact worst case
    of a linear field in every norm: equals :func:`certified_curve` example by example. ``(E,)``."""
    eps_grid = np.atleast_1d(np.asarray(eps_grid, np.float64))
    _check_eps(eps_grid)
    x, y = jnp.asarray(x), jnp.asarray(y)
    w, b = jnp.asarray(student.w, x.dtype), jnp.asarray(student.b, x.dtype)
    return np.asarray(_unboxed_errors(w, b, x, y, jnp.asarray(eps_grid, x.dtype), canonical_norm(norm)))


@functools.partial(jax.jit, static_argnames=("norm",))
def _unboxed_errors(w, b, x, y, eps_grid, norm):
    """FGM's error without a box at every radius of ``eps_grid``: one compilation per shape and norm."""
    loss = lambda xi, tau: -tau * (xi @ w - b)

    def at(eps):
        adv = jax.vmap(lambda xi, tau: attacks.fgm(loss, xi, tau, eps=eps, norm=norm))(x, y)
        return jnp.mean((y * (adv @ w - b) <= 0).astype(x.dtype))

    return jax.lax.map(at, eps_grid)
