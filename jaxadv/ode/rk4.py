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
``f`` (the first stage is shared). Derivation: ``docs/theory.md`` (section 7).

``estimate="embedded"`` (RK4 only) estimates the local error instead from the embedded third-order
solution of the same stages plus the first stage of the next step (first same as last, FSAL):
with :math:`k_5 = f(t+h, y_{n+1})`, the weights :math:`\hat b = (\tfrac16, \tfrac13, \tfrac13, 0,
\tfrac16)` on :math:`(k_1, \dots, k_5)` satisfy the four conditions of order 3, so

.. math::
    e = y_{n+1} - \hat y_{n+1} = \tfrac{h}{6}\,(k_4 - k_5),

the local error of the third-order solution, :math:`O(h^4)`; the step advances with the
fourth-order :math:`y_{n+1}` (local extrapolation) and the next step is
:math:`h\,\min(5, \max(0.2,\, 0.9\,\|e\|^{-1/4}))`. :math:`k_5` is the next step's :math:`k_1`,
so an accepted step costs 4 evaluations instead of 11. The steps are shorter than with step
doubling (the estimate is one order lower), so which is cheaper for a given accuracy depends on
the problem: measured on the order-parameter ODEs, the embedded estimate is 1.25-1.5x faster
to alpha = 1000 and step doubling is faster on short horizons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Y = TypeVar("Y")  # the state: any pytree of arrays

__all__ = [
    "ButcherTableau",
    "RK4",
    "DOPRI5",
    "EULER",
    "rk_step",
    "rk_stages",
    "rk_stages_rolled",
    "integrate",
    "integrate_adaptive",
    "AdaptiveStats",
]


class ButcherTableau(NamedTuple):
    r"""Coefficients of an explicit Runge--Kutta method (``a`` strictly lower triangular).

    ``e`` (optional): weights of the embedded error estimate :math:`e=h\sum_ie_ik_i=y_{n+1}-\hat y_{n+1}`
    (:math:`e_i=b_i-\hat b_i`) over the stages and, when it has one entry more than ``b``, over
    :math:`f(t+h, y_{n+1})` as well (the next step's first stage); ``error_order``: the order of
    :math:`\hat y`, which sets the controller's exponent :math:`-1/(\text{error\_order}+1)`. A tableau
    whose last stage is :math:`f(t+h,y_{n+1})` (``c = 1``, last row of ``a`` equal to ``b``, last ``b`` 0)
    hands that stage to the next step (first same as last)."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    e: tuple[float, ...] | None = None
    error_order: int = 0


RK4 = ButcherTableau(
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4,
    e=(0.0, 0.0, 0.0, 1 / 6, -1 / 6),
    error_order=3,
)

#: Dormand and Prince's 5(4) pair: fifth-order solution, fourth-order embedded one, seven stages of which
#: the last is :math:`f(t+h, y_{n+1})` (6 evaluations a step); order conditions checked in ``tests/test_rk4.py``
DOPRI5 = ButcherTableau(
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    order=5,
    e=(
        35 / 384 - 5179 / 57600,
        0.0,
        500 / 1113 - 7571 / 16695,
        125 / 192 - 393 / 640,
        -2187 / 6784 + 92097 / 339200,
        11 / 84 - 187 / 2100,
        -1 / 40,
    ),
    error_order=4,
)

EULER = ButcherTableau(a=((),), b=(1.0,), c=(0.0,), order=1)


def _axpy(y, h, coeffs, ks):
    """``y + h * sum_j coeffs[j] * ks[j]`` on pytrees, skipping zero coefficients."""
    terms = [(c, k) for c, k in zip(coeffs, ks, strict=False) if c != 0.0]
    if not terms:
        return y

    def comb(y_, *k_):
        return y_ + h * sum(c * kk for (c, _), kk in zip(terms, k_, strict=False))

    return jax.tree.map(comb, y, *[k for _, k in terms])


def rk_stages(
    f: Callable[[Any, Y, Any], Y],
    t: float | jax.Array,
    y: Y,
    h: float | jax.Array,
    args: Any,
    tableau: ButcherTableau = RK4,
    k1: Y | None = None,
) -> tuple[Y, list[Y]]:
    """One explicit Runge--Kutta step of size ``h`` from ``(t, y)`` and its stages: ``(y_new, [k_1, ...])``.

    ``k1``: ``f(t, y, args)`` when the caller has it already (its first stage; ``c_1 = 0``)."""
    ks = []
    for i, (a_i, c_i) in enumerate(zip(tableau.a, tableau.c, strict=False)):
        if i == 0 and k1 is not None:
            ks.append(k1)
            continue
        ks.append(f(t + c_i * h, _axpy(y, h, a_i, ks), args))
    return _axpy(y, h, tableau.b, ks), ks


def rk_stages_rolled(f: Any, t: Any, y: Any, h: Any, args: Any, tableau: ButcherTableau = RK4, k1: Any = None) -> Any:
    """:func:`rk_stages` with the stages in a ``lax.fori_loop``: ``f`` is traced once instead of once a stage,
    which divides the compilation time of an expensive field by about the number of stages (measured on the
    committee ODE with DOPRI5: 35 s to 7 s) at the same cost a step. The stages are stacked along a new
    leading axis of every leaf; the sums over them include the zero entries of the tableau, so the result
    agrees with :func:`rk_stages` to rounding, not bit for bit. ``k1`` as in :func:`rk_stages`."""
    s = len(tableau.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        A[i, : len(row)] = row
    leaves, treedef = jax.tree.flatten(y)
    dtype = jnp.result_type(*leaves)
    A_, b, c = jnp.asarray(A, dtype), jnp.asarray(tableau.b, dtype), jnp.asarray(tableau.c, dtype)
    first = f(t, y, args) if k1 is None else k1
    ks = [
        jnp.zeros((s,) + jnp.shape(x), dtype).at[0].set(k) for x, k in zip(leaves, jax.tree.leaves(first), strict=True)
    ]

    def stage(i, ks):
        yi = [x + h * jnp.tensordot(A_[i], k, axes=1) for x, k in zip(leaves, ks, strict=True)]
        ki = jax.tree.leaves(f(t + c[i] * h, jax.tree.unflatten(treedef, yi), args))
        return [k.at[i].set(kk) for k, kk in zip(ks, ki, strict=True)]

    ks = jax.lax.fori_loop(1, s, stage, ks)
    y_new = jax.tree.unflatten(treedef, [x + h * jnp.tensordot(b, k, axes=1) for x, k in zip(leaves, ks, strict=True)])
    return y_new, [jax.tree.unflatten(treedef, [k[i] for k in ks]) for i in range(s)]


def rk_step(
    f: Callable[[Any, Y, Any], Y],
    t: float | jax.Array,
    y: Y,
    h: float | jax.Array,
    args: Any,
    tableau: ButcherTableau = RK4,
    k1: Y | None = None,
) -> Y:
    """One explicit Runge--Kutta step of size ``h`` from ``(t, y)`` (:func:`rk_stages` without the stages)."""
    return rk_stages(f, t, y, h, args, tableau, k1)[0]


def integrate(
    f: Callable[[Any, Y, Any], Y],
    y0: Y,
    t0: float | jax.Array,
    h: float | jax.Array,
    steps_per_save: int,
    n_save: int,
    args: Any = None,
    tableau: ButcherTableau = RK4,
    project: Callable[[Y], Y] | None = None,
) -> tuple[jax.Array, Y]:
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
        project: ``project(y)`` applied after every step (static; ``None``: none): a splitting of the flow
            and a projection onto a constraint set, first order in ``h`` (the Lipschitz normalisation of
            :mod:`jaxadv.committee.lipschitz`). ``y0`` is used as given.

    Returns:
        ``(ts, ys)``: times of shape ``(n_save + 1,)`` starting with ``t0`` and the states stacked
        along a new leading axis of length ``n_save + 1`` (the first is ``y0``).
    """
    t0 = jnp.asarray(t0, dtype=jnp.result_type(h, float))

    @jax.checkpoint  # reverse mode keeps one state a step and recomputes the stages
    def inner(carry, _):
        t, y = carry
        y = rk_step(f, t, y, h, args, tableau)
        return (t + h, y if project is None else project(y)), None

    def outer(carry, k):
        t, y = jax.lax.scan(inner, carry, None, length=steps_per_save)[0]
        # recompute t from the save index to avoid accumulating round-off in t
        t = t0 + (k + 1) * steps_per_save * h
        return (t, y), y

    (_, _), ys = jax.lax.scan(outer, (t0, y0), jnp.arange(n_save))
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    ts = t0 + jnp.arange(n_save + 1) * (steps_per_save * h)
    return ts, ys


def integrate_at(
    f: Callable[[Any, Y, Any], Y],
    y0: Y,
    t_save: ArrayLike,
    n_sub: ArrayLike,
    args: Any = None,
    tableau: ButcherTableau = RK4,
    project: Any = None,
) -> tuple[jax.Array, Y]:
    """Integrate ``dy/dt = f(t, y, args)`` to the save times ``t_save`` (shape ``(P + 1,)``, increasing,
    starting at the initial time) with ``n_sub[k]`` equal steps in interval ``k`` (shape ``(P,)``,
    integers >= 1, may be traced: intervals of any lengths, e.g. log-spaced, share one compilation).
    ``project``: as in :func:`integrate`, after every step.

    Returns:
        ``(ts, ys)`` as :func:`integrate`: ``ts = t_save`` and the states at those times.
    """
    t_save = jnp.asarray(t_save)

    def interval(y, seg):
        t0, t1, m = seg
        h = (t1 - t0) / m

        def step(i, yy):
            yy = rk_step(f, t0 + i * h, yy, h, args, tableau)
            return yy if project is None else project(yy)

        y = jax.lax.fori_loop(0, m, step, y)
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

    return jnp.max(
        jnp.stack(
            [leaf(*z) for z in zip(jax.tree.leaves(err), jax.tree.leaves(y_old), jax.tree.leaves(y_new), strict=False)]
        )
    )


ESTIMATES = ("doubling", "embedded")
"""Local error estimates of :func:`integrate_adaptive` (module docstring)."""

# RK4's embedded third-order weights on (k1, k2, k3, k4, k5), k5 = f(t + h, y_new): b - b_hat = (0, 0, 0, 1/6, -1/6)
_RK4_EMBEDDED_DIFF = RK4.e[3:]  # type: ignore[index]  # RK4 has e (tested)


def _last_stage_is_next_first(tableau: ButcherTableau) -> bool:
    """The last stage is :math:`f(t+h, y_{n+1})` (first same as last inside the tableau)."""
    return tableau.c[-1] == 1.0 and tuple(tableau.a[-1]) == tuple(tableau.b[:-1]) and tableau.b[-1] == 0.0


def integrate_adaptive(
    f: Callable[[Any, Y, Any], Y],
    y0: Y,
    t0: float | jax.Array,
    t_save: ArrayLike,
    h0: float | jax.Array,
    args: Any = None,
    *,
    rtol: float | jax.Array = 1e-08,
    atol: float | jax.Array = 1e-10,
    max_steps: int = 100000,
    tableau: ButcherTableau = RK4,
    estimate: str = "doubling",
    project: Any = None,
    rolled: bool = False,
) -> tuple[jax.Array, Y, AdaptiveStats]:
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
        estimate: ``"doubling"`` (step doubling, any tableau, 11 evaluations a step with RK4) or
            ``"embedded"`` (RK4's embedded third-order pair, first stage shared with the previous step:
            4 evaluations a step); static.
        project: ``project(y)`` applied to every step's result before it is judged (static; ``None``:
            none), as in :func:`integrate`. With the embedded estimate the last stage is taken at the
            projected point (it is the next step's first stage), so the estimate sees the splitting error
            of flow and projection (weighted by the last error weight, 1/6 for RK4 and 1/40 for DOPRI5: a
            smaller share of it than of the flow's own error) and the step shrinks until it meets the tolerance;
            with step
            doubling the projected full step is compared with the projected two half steps, and the step
            advances with the latter (not extrapolated, which would leave the constraint set). ``y0`` is
            used as given.
        rolled: with the embedded estimate, take the stages in a loop (:func:`rk_stages_rolled`): one
            trace of ``f`` instead of one a stage, for fields whose compilation dominates (static).

    Returns:
        ``(ts, ys, stats)``: ``ts = concatenate([t0], t_save)``, the states stacked along a new leading
        axis of length ``n_save + 1`` (the first is ``y0``), and :class:`AdaptiveStats`.
    """
    if estimate not in ESTIMATES:
        raise ValueError(f"estimate={estimate!r} is not one of {list(ESTIMATES)}")
    embedded = estimate == "embedded"
    if embedded and tableau.e is None:
        raise ValueError(
            "estimate='embedded' needs tableau=RK4, DOPRI5 or another tableau with embedded error weights e"
        )
    t_save = jnp.asarray(t_save)
    dtype = jnp.result_type(t_save, float)
    t0 = jnp.asarray(t0, dtype)
    p = tableau.error_order if embedded else tableau.order  # e is O(h^(p+1)): the controller's exponent is -1/(p+1)
    scale = 1.0 / (2.0**tableau.order - 1.0)
    # embedded: the last stage is the next step's first, or one more evaluation gives it (k5 of RK4)
    e_w = tableau.e if tableau.e is not None else ()
    inside = embedded and _last_stage_is_next_first(tableau) and len(e_w) == len(tableau.b)
    extra = 0 if inside and project is None else 1
    evals_per_try = len(tableau.b) - 1 + extra if embedded else 3 * len(tableau.b) - 1

    def attempt(t, y, h, k1):
        """One try of size ``h`` from ``(t, y)`` with ``k1 = f(t, y)``: ``(y_new, k1 at y_new or None, ||e||)``."""
        proj = (lambda z: z) if project is None else project
        if embedded:
            y_new, ks = (rk_stages_rolled if rolled else rk_stages)(f, t, y, h, args, tableau, k1)
            y_new = proj(y_new)
            k_next = ks[-1] if extra == 0 else f(t + h, y_new, args)
            # the last weight sees f at the (projected) new point, so the estimate sees the projection too
            stages = ks[:-1] + [k_next] if len(e_w) == len(tableau.b) else ks + [k_next]
            terms = [(w, k) for w, k in zip(e_w, stages, strict=True) if w != 0.0]
            err = jax.tree.map(
                lambda *k: h * sum(w * kk for (w, _), kk in zip(terms, k, strict=True)), *(k for _, k in terms)
            )
            return y_new, k_next, _error_norm(err, y, y_new, rtol, atol)
        y_full = proj(rk_step(f, t, y, h, args, tableau, k1))
        y_mid = proj(rk_step(f, t, y, h / 2, args, tableau, k1))
        y_two = proj(rk_step(f, t + h / 2, y_mid, h / 2, args, tableau))
        err = jax.tree.map(lambda a, b: (a - b) * scale, y_two, y_full)
        y_new = jax.tree.map(jnp.add, y_two, err) if project is None else y_two
        return y_new, None, _error_norm(err, y, y_new, rtol, atol)

    def to_target(carry, target):
        def cond(c):
            t, _, _, n_acc, n_rej, _ = c
            return (t < target) & (n_acc + n_rej < max_steps)

        def body(c):
            t, y, h, n_acc, n_rej, k1 = c
            last = t + h >= target * (1 - 8 * jnp.finfo(dtype).eps) - 8 * jnp.finfo(dtype).tiny
            h_try = jnp.where(last, target - t, h)
            y_new, k_next, e = attempt(t, y, h_try, k1 if embedded else f(t, y, args))
            ok = (e <= 1.0) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(y_new)]))
            factor = jnp.clip(0.9 * jnp.where(e > 0, e, 1e-10) ** (-1.0 / (p + 1)), 0.2, 5.0)
            factor = jnp.where(jnp.isfinite(factor), factor, 0.2)
            # a step shortened to land on the save time does not shrink the proposal after it
            h_next = jnp.where(ok & last, jnp.maximum(h, h_try * factor), h_try * factor)
            t = jnp.where(ok, jnp.where(last, target, t + h_try), t)
            y = jax.tree.map(lambda a, b: jnp.where(ok, a, b), y_new, y)
            if embedded:  # first same as last: f at the accepted point is the next step's first stage
                k1 = jax.tree.map(lambda a, b: jnp.where(ok, a, b), k_next, k1)
            return t, y, h_next, n_acc + ok, n_rej + (~ok), k1

        carry = jax.lax.while_loop(cond, body, carry)
        t, y = carry[0], carry[1]
        reached = t >= target
        y_out = jax.tree.map(lambda a: jnp.where(reached, a, jnp.nan), y)
        return carry, (y_out, ~reached)

    zero = jnp.zeros((), jnp.int32)
    # the carried first stage (embedded estimate only; a placeholder of y's structure otherwise)
    k10 = f(t0, y0, args) if embedded else y0
    carry0 = (t0, y0, jnp.asarray(h0, dtype), zero, zero, k10)
    (_, _, _, n_acc, n_rej, _), (ys, missed) = jax.lax.scan(to_target, carry0, t_save)
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    ts = jnp.concatenate([t0[None], t_save.astype(dtype)])
    stats = AdaptiveStats(n_acc, n_rej, (n_acc + n_rej) * evals_per_try + int(embedded), jnp.any(missed))
    return ts, ys, stats
