r"""Explicit Runge--Kutta integration with a fixed step, held as a Butcher tableau.

.. math::
    k_i = f\Big(t + c_i h,\; y + h\sum_{j<i} a_{ij} k_j\Big),\qquad
    y_{n+1} = y_n + h\sum_i b_i k_i .

:data:`RK4` is the classical fourth-order method. Vector fields have the signature
``f(t, y, args)`` with ``y`` any pytree. :func:`integrate` is a ``lax.scan`` that saves
``y`` every ``steps_per_save`` steps, so it is jit-compiled once and ``vmap``-able over
``y0`` and ``args``.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

__all__ = ["ButcherTableau", "RK4", "EULER", "rk_step", "integrate"]


class ButcherTableau(NamedTuple):
    """Coefficients of an explicit Runge--Kutta method (``a`` strictly lower triangular)."""

    a: Tuple[Tuple[float, ...], ...]
    b: Tuple[float, ...]
    c: Tuple[float, ...]
    order: int


RK4 = ButcherTableau(
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4,
)

EULER = ButcherTableau(a=((),), b=(1.0,), c=(0.0,), order=1)


def _axpy(y, h, coeffs, ks):
    """``y + h * sum_j coeffs[j] * ks[j]`` on pytrees, skipping zero coefficients."""
    terms = [(c, k) for c, k in zip(coeffs, ks) if c != 0.0]
    if not terms:
        return y

    def comb(y_, *k_):
        return y_ + h * sum(c * kk for (c, _), kk in zip(terms, k_))

    return jax.tree.map(comb, y, *[k for _, k in terms])


def rk_step(f, t, y, h, args, tableau: ButcherTableau = RK4):
    """One explicit Runge--Kutta step of size ``h`` from ``(t, y)``."""
    ks = []
    for a_i, c_i in zip(tableau.a, tableau.c):
        ks.append(f(t + c_i * h, _axpy(y, h, a_i, ks), args))
    return _axpy(y, h, tableau.b, ks)


def integrate(f, y0, t0, h, steps_per_save: int, n_save: int, args=None, tableau: ButcherTableau = RK4):
    """Integrate ``dy/dt = f(t, y, args)`` with fixed step ``h``.

    Args:
        f: vector field ``f(t, y, args)``.
        y0: initial state (pytree).
        t0: initial time.
        h: step size (may be traced).
        steps_per_save: steps between saves (static).
        n_save: number of saves after ``t0`` (static).
        args: passed to ``f``.
        tableau: the Runge--Kutta method (static).

    Returns:
        ``(ts, ys)``: times of shape ``(n_save + 1,)`` starting with ``t0`` and the states stacked
        along a new leading axis of length ``n_save + 1`` (the first is ``y0``).
    """
    t0 = jnp.asarray(t0, dtype=jnp.result_type(h, float))

    def inner(carry, _):
        t, y = carry
        return (t + h, rk_step(f, t, y, h, args, tableau)), None

    def outer(carry, k):
        t, y = jax.lax.scan(inner, carry, None, length=steps_per_save)[0]
        # recompute t from the save index to avoid accumulating round-off in t
        t = t0 + (k + 1) * steps_per_save * h
        return (t, y), y

    (_, _), ys = jax.lax.scan(outer, (t0, y0), jnp.arange(n_save))
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    ts = t0 + jnp.arange(n_save + 1) * (steps_per_save * h)
    return ts, ys
