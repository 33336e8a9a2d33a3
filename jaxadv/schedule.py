r"""Schedules: a training-rule parameter that depends on the training time :math:`\alpha`.

A schedule is data, a pytree leaf-group that stands where a float would: in
:class:`jaxadv.ModelParams` (``eps``, ``eta_w``, ``eta_b``) or in a rule's parameter dict (the eps law's
parameters, the noise's std, the hinge margin, ...). Both faces of a student honour it through one
function, :func:`at`, which replaces every schedule in a pytree by its value at one time:

* the ODE evaluates the vector field at each Runge--Kutta stage time :math:`t` with the parameters
  ``at(args, t)`` (:func:`jaxadv.ode.solve.solve_grid`);
* the Monte Carlo's step :math:`\mu \to \mu + 1` (0-based :math:`\mu`) applies the rule with the
  parameters at the step's midpoint, :math:`\alpha = (\mu + \frac12) / N`
  (:func:`jaxadv.mc.driver.plan_simulation` rescales the schedule to step units once, :func:`in_steps`, and
  the kernel loop evaluates it at :data:`jaxadv.mc.driver.SCHEDULE_POINT` of each step).

Read at the midpoint, the Monte Carlo's piecewise-constant parameter leaves no :math:`O(1/N)` bias against
the ODE's continuous one (``docs/theory.md``, "Schedules": derived, and measured against the start and the
end of the step).

Two kinds:

:class:`Schedule`
    piecewise linear on knots :math:`a_0 < a_1 < \dots < a_{n-1}`,

    .. math::
        \theta(\alpha) = v_i + (v_{i+1} - v_i)\,\frac{\alpha - a_i}{a_{i+1} - a_i},
        \qquad a_i \le \alpha \le a_{i+1},

    constant (:math:`v_0`, :math:`v_{n-1}`) before the first knot and after the last. The
    ``values`` are the traced leaves: ``jax.grad`` of any result with respect to them is the
    gradient with respect to the schedule; they may carry leading grid axes (``values`` of shape
    ``G + (n,)``). One knot is a constant.

:class:`FunctionSchedule`
    ``fn(alpha, theta)`` for any JAX function ``fn`` (static) of the time and a pytree of traced
    parameters ``theta``.

Example:
    >>> from jaxadv.schedule import Schedule, at
    >>> s = Schedule(knots=(0.0, 10.0, 100.0), values=(0.0, 0.5, 1.0))
    >>> [round(float(s(a)), 6) for a in (0.0, 5.0, 55.0, 200.0)]
    [0.0, 0.25, 0.75, 1.0]
    >>> float(at({"eps": s, "eta": 0.1}, 10.0)["eps"])
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Schedule",
    "FunctionSchedule",
    "is_schedule",
    "has_schedule",
    "at",
    "in_steps",
    "schedule_values",
    "parse_schedule",
    "describe",
    "cast",
    "at_knots",
    "described",
    "grid_shape",
    "broadcast_to",
]


@jax.tree_util.register_pytree_node_class
class Schedule:
    r"""A piecewise-linear schedule on knots (module docstring).

    Args:
        knots: increasing times :math:`a_0 < \dots < a_{n-1}` (at least one; static, plain floats).
        values: the value at each knot, shape ``(n,)`` or ``G + (n,)`` for a grid (traced).

    Raises:
        ValueError: knots not increasing or not finite, or ``values``' last axis not of length ``n``.
    """

    def __init__(self, knots: Sequence[float], values: Any) -> None:
        knots = tuple(float(k) for k in np.atleast_1d(np.asarray(knots, float)))
        if not knots or not all(math.isfinite(k) for k in knots):
            raise ValueError(f"knots={knots!r} must be finite numbers, at least one")
        if any(b <= a for a, b in zip(knots, knots[1:], strict=False)):
            raise ValueError(f"knots={knots!r} must be increasing")
        if isinstance(values, (list, tuple)):
            values = np.asarray(values, float)
        if np.ndim(values) < 1 or np.shape(values)[-1] != len(knots):
            raise ValueError(f"values of shape {np.shape(values)} must end in the number of knots ({len(knots)})")
        self.knots = knots
        self.values = values

    def tree_flatten(self) -> tuple[tuple[Any], tuple[float, ...]]:
        return (self.values,), self.knots

    @classmethod
    def tree_unflatten(cls, knots: tuple[float, ...], children: Sequence[Any]) -> Schedule:
        obj = object.__new__(cls)
        obj.knots, obj.values = knots, children[0]
        return obj

    def __call__(self, alpha: Any) -> jax.Array:
        """The value at time ``alpha`` (a scalar), shape ``values.shape[:-1]``."""
        v = jnp.asarray(self.values)
        if len(self.knots) == 1:
            return v[..., 0]
        a = jnp.asarray(self.knots, v.dtype)
        t = jnp.asarray(alpha, v.dtype)
        i = jnp.clip(jnp.searchsorted(a, t, side="right") - 1, 0, len(self.knots) - 2)
        w = jnp.clip((t - a[i]) / (a[i + 1] - a[i]), 0.0, 1.0)
        return v[..., i] + (v[..., i + 1] - v[..., i]) * w  # exact on a flat segment

    def scaled(self, factor: float) -> Schedule:
        """The same schedule on a time axis ``factor`` times longer (knots multiplied by ``factor``)."""
        return Schedule(tuple(k * factor for k in self.knots), self.values)

    def __repr__(self) -> str:
        return f"Schedule(knots={list(self.knots)}, values={np.asarray(self.values).tolist()})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Schedule)
            and self.knots == other.knots
            and np.array_equal(np.asarray(self.values), np.asarray(other.values))
        )

    __hash__ = None  # type: ignore[assignment]


@jax.tree_util.register_pytree_node_class
class FunctionSchedule:
    """``fn(alpha, theta)``: any JAX function ``fn`` (static, hashable) of the time and traced parameters
    ``theta`` (a pytree; ``None``: ``fn(alpha)``). ``scale`` (static) evaluates ``fn`` at ``alpha / scale``
    (:func:`in_steps`)."""

    def __init__(self, fn: Callable[..., Any], theta: Any = None, scale: float = 1.0) -> None:
        if not callable(fn):
            raise ValueError(f"fn={fn!r} must be a function of alpha (and theta)")
        self.fn, self.theta, self.scale = fn, theta, float(scale)

    def tree_flatten(self) -> tuple[tuple[Any], tuple[Callable[..., Any], float]]:
        return (self.theta,), (self.fn, self.scale)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Callable[..., Any], float], children: Sequence[Any]) -> FunctionSchedule:
        obj = object.__new__(cls)
        obj.fn, obj.scale = aux
        obj.theta = children[0]
        return obj

    def __call__(self, alpha: Any) -> jax.Array:
        t = alpha / self.scale if self.scale != 1.0 else alpha
        return jnp.asarray(self.fn(t) if self.theta is None else self.fn(t, self.theta))

    def scaled(self, factor: float) -> FunctionSchedule:
        return FunctionSchedule(self.fn, self.theta, self.scale * factor)

    def __repr__(self) -> str:
        return f"FunctionSchedule({getattr(self.fn, '__name__', self.fn)!s})"


def is_schedule(x: Any) -> bool:
    """Whether ``x`` is a schedule (:class:`Schedule` or :class:`FunctionSchedule`)."""
    return isinstance(x, (Schedule, FunctionSchedule))


def has_schedule(tree: Any) -> bool:
    """Whether any leaf-group of ``tree`` is a schedule (a static question: the pytree's structure)."""
    return any(is_schedule(x) for x in jax.tree.leaves(tree, is_leaf=is_schedule))


def at(tree: Any, alpha: Any) -> Any:
    """``tree`` with every schedule replaced by its value at ``alpha``; other leaves unchanged (a tree with
    no schedule is returned as it is)."""
    if not has_schedule(tree):
        return tree
    return jax.tree.map(lambda x: x(alpha) if is_schedule(x) else x, tree, is_leaf=is_schedule)


def in_steps(tree: Any, N: int) -> Any:
    """``tree`` with every schedule read on the Monte Carlo's step index: the value at step ``mu`` is the
    schedule's at ``alpha = mu / N``."""
    if not has_schedule(tree):
        return tree
    return jax.tree.map(lambda x: x.scaled(N) if is_schedule(x) else x, tree, is_leaf=is_schedule)


def schedule_values(x: Any) -> np.ndarray:
    """The values a parameter takes, for range checks: a schedule's knot values (a piecewise-linear schedule
    stays between them), a number's own value; a :class:`FunctionSchedule` has none to check (empty)."""
    if isinstance(x, Schedule):
        return np.asarray(x.values, float).ravel()
    if isinstance(x, FunctionSchedule):
        return np.zeros(0)
    return np.atleast_1d(np.asarray(x, float)).ravel()


def parse_schedule(name: str, spec: Any) -> Schedule:
    """A :class:`Schedule` from a configuration value: a TOML table ``{knots = [...], values = [...]}`` or
    the command line's ``"knots:0,10,100;values:0,0.5,1"``. ``ValueError`` naming ``name`` and the value.

    Example:
        >>> parse_schedule("eps", "knots:0,10;values:0,1")
        Schedule(knots=[0.0, 10.0], values=[0.0, 1.0])
    """
    parts: dict[str, Any]
    if isinstance(spec, str):
        parts = {}
        for item in spec.split(";"):
            key, sep, rest = item.partition(":")
            if not sep:
                raise ValueError(f"{name}={spec!r}: write a schedule as 'knots:0,10,100;values:0,0.5,1'")
            try:
                parts[key.strip()] = [float(x) for x in rest.split(",")]
            except ValueError:
                raise ValueError(f"{name}={spec!r}: {key.strip()} must be numbers separated by commas") from None
    elif isinstance(spec, dict):
        parts = dict(spec)
    else:
        raise ValueError(f"{name}={spec!r} is not a schedule ({{knots = [...], values = [...]}})")
    if set(parts) != {"knots", "values"}:
        raise ValueError(f"{name}={spec!r}: a schedule has exactly the keys knots and values")
    knots, values = parts["knots"], parts["values"]
    for key, xs in (("knots", knots), ("values", values)):
        ok = (
            isinstance(xs, (list, tuple))
            and xs
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs)
        )
        if not ok:
            raise ValueError(f"{name}.{key}={xs!r} must be a non-empty list of finite numbers")
    if len(knots) != len(values):
        raise ValueError(f"{name}: {len(knots)} knots but {len(values)} values")
    if any(k < 0 for k in knots):
        raise ValueError(f"{name}.knots={knots!r} must be >= 0 (times alpha)")
    try:
        return Schedule(knots, values)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def describe(x: Any) -> Any:
    """A JSON-ready form of a parameter: ``{"knots": [...], "values": [...]}`` for a :class:`Schedule`, the
    function's name for a :class:`FunctionSchedule`, else the number."""
    if isinstance(x, Schedule):
        return {"knots": list(x.knots), "values": np.asarray(x.values, float).tolist()}
    if isinstance(x, FunctionSchedule):
        return {"function": getattr(x.fn, "__qualname__", repr(x.fn)), "scale": x.scale}
    return float(np.asarray(x, float)) if np.ndim(x) == 0 else np.asarray(x, float).tolist()


def cast(x: Any, dtype: Any, xp: Any = jnp) -> Any:
    """``xp.asarray(x, dtype)`` (``xp``: ``jax.numpy`` or ``numpy``), or for a schedule the same schedule with its
    values (or ``theta``) cast."""
    if isinstance(x, Schedule):
        return Schedule(x.knots, xp.asarray(x.values, dtype))
    if isinstance(x, FunctionSchedule):
        return FunctionSchedule(x.fn, jax.tree.map(lambda t: xp.asarray(t, dtype), x.theta), x.scale)
    return xp.asarray(x, dtype)


def at_knots(values: dict[str, Any]) -> dict[str, Any]:
    """For checks of several parameters together: every :class:`Schedule` of ``values`` evaluated at the union
    of all schedules' knots (a leading axis; between the knots every piecewise-linear schedule is linear, so a
    linear condition that holds at the knots holds everywhere); a :class:`FunctionSchedule` at its value at 0
    (it is the user's responsibility). Plain values are returned as they are."""
    if not has_schedule(values):
        return values
    times = sorted({k for v in values.values() if isinstance(v, Schedule) for k in v.knots}) or [0.0]
    out = {}
    for k, v in values.items():
        if is_schedule(v):
            out[k] = np.stack([np.asarray(v(t), float) for t in times])
        else:
            out[k] = v
    return out


def described(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every schedule :func:`describe`-d (for ``config.json``)."""
    return {k: describe(v) if is_schedule(v) else v for k, v in values.items()}


def grid_shape(x: Any) -> tuple[int, ...]:
    """The grid shape of a parameter: its shape, or a piecewise-linear schedule's without the knot axis (a
    function schedule is shared by every grid point: ``()``)."""
    if isinstance(x, Schedule):
        return tuple(np.shape(x.values)[:-1])
    return () if isinstance(x, FunctionSchedule) else tuple(np.shape(x))


def broadcast_to(x: Any, shape: tuple[int, ...]) -> Any:
    """``x`` broadcast to the grid ``shape`` (a schedule's values to ``shape + (knots,)``; NumPy or JAX arrays
    as given). ``ValueError`` for a function schedule on a grid."""
    xp = jnp if isinstance(getattr(x, "values", x), jax.Array) else np
    if isinstance(x, Schedule):
        return Schedule(x.knots, xp.broadcast_to(x.values, tuple(shape) + np.shape(x.values)[-1:]))
    if isinstance(x, FunctionSchedule):
        if shape:
            raise ValueError(f"{x!r}: a function schedule cannot run on a grid; give it a point at a time")
        return x
    return xp.broadcast_to(x, shape)
