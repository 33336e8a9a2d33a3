r"""Explicit Runge--Kutta integration held as a Butcher tableau, with a fixed or an adaptive step.

.. math::
    k_i = f\Big(t + c_i h,\; y + h\sum_{j<i} a_{ij} k_j\Big),\qquad
    y_{n+1} = y_n + h\sum_i b_i k_i .

:data:`RK4` is the classical fourth-order method. Vector fields have the signature
``f(t, y, args)`` with ``y`` any pytree. :func:`integrate` is a ``lax.scan`` that saves
``y`` every ``steps_per_save`` steps, so it is jit-compiled once and ``vmap``-able over
``y0`` and ``args``.

:func:`integrate_adaptive` controls the step by **step doubling** (Richardson extrapolation) of
the same tableau of order :math:`p`: one step of size :math:`h` gives :math:`y_h`, two steps of
size :math:`h/2` give :math:`y_{h/2}`, and

.. math::
    e = \frac{y_{h/2} - y_h}{2^p - 1},\qquad y_{n+1} = y_{h/2} + e,\qquad
    \|e\| = \max_i \frac{|e_i|}{\mathrm{atol} + \mathrm{rtol}\,\max(|y_{n,i}|, |y_{n+1,i}|)} .

:math:`e` is the leading local error of :math:`y_{h/2}` (its local error is :math:`C h^{p+1}/2^p`,
that of :math:`y_h` is :math:`C h^{p+1}`), so :math:`y_{n+1}` is accurate to order :math:`p+1`
locally. The step is accepted when :math:`\|e\|\le 1`, and the next step is
:math:`h\,\min(5, \max(0.2,\, 0.9\,\|e\|^{-1/(p+1)}))`. With RK4 a step costs 11 evaluations of
``f`` (the first stage is shared). Derivation: ``docs/theory.md`` (section 12).
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

__all__ = ["ButcherTableau", "RK4", "EULER", "rk_step", "integrate", "integrate_adaptive", "AdaptiveStats"]


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


def rk_step(f, t, y, h, args, tableau: ButcherTableau = RK4, k1=None):
    """One explicit Runge--Kutta step of size ``h`` from ``(t, y)``.

    ``k1``: ``f(t, y, args)`` when the caller has it already (its first stage; ``c_1 = 0``)."""
    ks = []
    for i, (a_i, c_i) in enumerate(zip(tableau.a, tableau.c)):
        if i == 0 and k1 is not None:
            ks.append(k1)
            continue
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


def integrate_at(f, y0, t_save, n_sub, args=None, tableau: ButcherTableau = RK4):
    """Integrate ``dy/dt = f(t, y, args)`` to the save times ``t_save`` (shape ``(P + 1,)``, increasing,
    starting at the initial time) with ``n_sub[k]`` equal steps in interval ``k`` (shape ``(P,)``,
    integers >= 1, may be traced: intervals of any lengths, e.g. log-spaced, share one compilation).

    Returns:
        ``(ts, ys)`` as :func:`integrate`: ``ts = t_save`` and the states at those times.
    """
    t_save = jnp.asarray(t_save)

    def interval(y, seg):
        t0, t1, m = seg
        h = (t1 - t0) / m
        y = jax.lax.fori_loop(0, m, lambda i, yy: rk_step(f, t0 + i * h, yy, h, args, tableau), y)
        return y, y

    _, ys = jax.lax.scan(interval, y0, (t_save[:-1], t_save[1:], jnp.asarray(n_sub, jnp.int32)))
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    return t_save, ys


class AdaptiveStats(NamedTuple):
    """Work of :func:`integrate_adaptive`: accepted and rejected steps and evaluations of ``f``."""

    n_accepted: jax.Array
    n_rejected: jax.Array
    n_evals: jax.Array
    failed: jax.Array  # ``max_steps`` ran out before the last save time (the states after it are NaN)


def _error_norm(err, y_old, y_new, rtol, atol):
    def leaf(e, a, b):
        # the floor at `tiny` makes 0/0 (atol = 0 and a component that stays exactly 0) count as 0
        scale = jnp.maximum(atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)), jnp.finfo(e.dtype).tiny)
        return jnp.max(jnp.abs(e) / scale)

    return jnp.max(jnp.stack([leaf(*z) for z in zip(jax.tree.leaves(err), jax.tree.leaves(y_old),
                                                   jax.tree.leaves(y_new))]))


def integrate_adaptive(f, y0, t0, t_save, h0, args=None, *, rtol=1e-8, atol=1e-10, max_steps: int = 100_000,
                       tableau: ButcherTableau = RK4):
    r"""Integrate ``dy/dt = f(t, y, args)`` with step-doubling error control (module docstring).

    Args:
        f: vector field ``f(t, y, args)``.
        y0: initial state (pytree of float arrays).
        t0: initial time.
        t_save: increasing save times after ``t0``, shape ``(n_save,)``; every one is hit exactly.
        h0: first trial step (``> 0``); later steps follow the controller.
        args: passed to ``f``.
        rtol, atol: relative and absolute tolerance of the local error per step (may be traced).
        max_steps: most step attempts (accepted or rejected) over the whole interval (static).
        tableau: the Runge--Kutta method (static); its ``order`` sets the extrapolation.

    Returns:
        ``(ts, ys, stats)``: ``ts = concatenate([t0], t_save)``, the states stacked along a new leading
        axis of length ``n_save + 1`` (the first is ``y0``), and :class:`AdaptiveStats`.
    """
    t_save = jnp.asarray(t_save)
    dtype = jnp.result_type(t_save, float)
    t0 = jnp.asarray(t0, dtype)
    p = tableau.order
    scale = 1.0 / (2.0**p - 1.0)
    evals_per_try = 3 * len(tableau.b) - 1

    def attempt(t, y, h):
        k1 = f(t, y, args)
        y_full = rk_step(f, t, y, h, args, tableau, k1)
        y_mid = rk_step(f, t, y, h / 2, args, tableau, k1)
        y_two = rk_step(f, t + h / 2, y_mid, h / 2, args, tableau)
        err = jax.tree.map(lambda a, b: (a - b) * scale, y_two, y_full)
        y_new = jax.tree.map(jnp.add, y_two, err)
        return y_new, _error_norm(err, y, y_new, rtol, atol)

    def to_target(carry, target):
        def cond(c):
            t, _, _, n_acc, n_rej = c
            return (t < target) & (n_acc + n_rej < max_steps)

        def body(c):
            t, y, h, n_acc, n_rej = c
            last = t + h >= target * (1 - 8 * jnp.finfo(dtype).eps) - 8 * jnp.finfo(dtype).tiny
            h_try = jnp.where(last, target - t, h)
            y_new, e = attempt(t, y, h_try)
            ok = (e <= 1.0) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(y_new)]))
            factor = jnp.clip(0.9 * jnp.where(e > 0, e, 1e-10) ** (-1.0 / (p + 1)), 0.2, 5.0)
            factor = jnp.where(jnp.isfinite(factor), factor, 0.2)
            # a step shortened to land on the save time does not shrink the proposal after it
            h_next = jnp.where(ok & last, jnp.maximum(h, h_try * factor), h_try * factor)
            t = jnp.where(ok, jnp.where(last, target, t + h_try), t)
            y = jax.tree.map(lambda a, b: jnp.where(ok, a, b), y_new, y)
            return t, y, h_next, n_acc + ok, n_rej + (~ok)

        carry = jax.lax.while_loop(cond, body, carry)
        t, y = carry[0], carry[1]
        reached = t >= target
        y_out = jax.tree.map(lambda a: jnp.where(reached, a, jnp.nan), y)
        return carry, (y_out, ~reached)

    zero = jnp.zeros((), jnp.int32)
    carry0 = (t0, y0, jnp.asarray(h0, dtype), zero, zero)
    (_, _, _, n_acc, n_rej), (ys, missed) = jax.lax.scan(to_target, carry0, t_save)
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    ts = jnp.concatenate([t0[None], t_save.astype(dtype)])
    stats = AdaptiveStats(n_acc, n_rej, (n_acc + n_rej) * evals_per_try, jnp.any(missed))
    return ts, ys, stats
