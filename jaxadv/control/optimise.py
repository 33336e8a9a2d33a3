r"""Projected optimisation of piecewise-linear schedules on the unit's ODE.

The controls are the knot values :math:`v_{c,i}` of the schedules of the parameters :math:`c` in
:attr:`Controls.names` (of ``eps``, ``eta_w``, ``eta_b``) on shared knots :math:`0 = a_0 < \dots <
a_{n-1} = \alpha_\max`. The feasible set is the box :math:`\ell_c \le v_{c,i} \le u_c` and, with a budget
:math:`B`, the hyperplane of the mean of ``eps`` over the run,

.. math::
    \frac{1}{\alpha_\max}\int_0^{\alpha_\max}\epsilon(\alpha)\,d\alpha = \sum_i \omega_i v_{\epsilon,i} = B,
    \qquad \omega_i = \frac{a_{i+1} - a_{i-1}}{2\alpha_\max}

(exact for a piecewise-linear schedule; :math:`a_{-1} = a_0`, :math:`a_n = a_{n-1}`). :func:`project` is
the Euclidean projection onto it: a clip for the box; with the budget
:math:`v_i = \mathrm{clip}(u_i - \lambda\omega_i, \ell, u)` with the multiplier :math:`\lambda` found by
bisection (the mean is monotone in :math:`\lambda`). :func:`optimise` runs, from several starts, optax's
Adam with each update followed by the projection and a cosine-decaying step so that the iterates settle,
or (the default) a spectral projected gradient method with backtracking. The optimum satisfies the KKT
conditions when the projected gradient :math:`v - P(v - \nabla J)` vanishes; :attr:`Start.kkt` reports
its largest component.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..analysis.measures import robust_error
from ..model.params import SCHEDULABLE, ModelParams
from ..model.rule import DEFAULT_RULE, TrainingRule
from ..ode.solve import StepPlan, unit_trajectory
from ..schedule import Schedule
from .objective import Objective

__all__ = [
    "Controls",
    "Problem",
    "Path",
    "Start",
    "OptimiseResult",
    "project",
    "budget_weights",
    "optimise",
    "objective_of",
]

BISECTIONS = 100
"""Bisection steps of the budget's multiplier (the bracket shrinks by 2**-100: float64 round-off)."""


class Controls(NamedTuple):
    """What a protocol controls.

    Attributes:
        names: the scheduled parameters (of :data:`jaxadv.model.params.SCHEDULABLE`).
        knots: the shared knots, from 0 to the run's ``alpha_max`` (or ``(0.0,)``: a constant).
        lower, upper: the box of each name's values.
        budget: the mean of ``eps`` over the run (``None``: free); needs ``eps`` in ``names``.
    """

    names: tuple
    knots: tuple
    lower: tuple
    upper: tuple
    budget: float | None = None

    def check(self, alpha_max: float, schedulable: Sequence[str] = SCHEDULABLE) -> Controls:
        """``self`` if valid for a run to ``alpha_max`` with the student's ``schedulable`` parameters (default
        the unit's); ``ValueError`` naming the field otherwise."""
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"controls={list(self.names)!r} must name distinct parameters")
        for n in self.names:
            if n not in schedulable:
                raise ValueError(f"controls: {n!r} cannot follow a schedule; one of {', '.join(schedulable)}")
        k = self.knots
        constant = len(k) == 1 and k[0] == 0  # one knot: a constant
        if not constant and (len(k) < 2 or k[0] != 0 or abs(k[-1] - alpha_max) > 1e-12 * max(1.0, alpha_max)):
            raise ValueError(f"knots={list(k)!r} must run from 0 to alpha_max={alpha_max!r} (or be [0]: a constant)")
        if any(b <= a for a, b in zip(k, k[1:], strict=False)):
            raise ValueError(f"knots={list(k)!r} must be increasing")
        for n, lo, hi in zip(self.names, self.lower, self.upper, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{n}_bounds=[{lo!r}, {hi!r}] must be finite with lower <= upper")
            if n != "eps" and lo <= 0:
                raise ValueError(f"{n}_bounds=[{lo!r}, {hi!r}]: a learning rate must stay > 0")
            if n == "eps" and lo < 0:
                raise ValueError(f"eps_bounds=[{lo!r}, {hi!r}]: eps must stay >= 0")
        if self.budget is not None:
            if "eps" not in self.names:
                raise ValueError(f"budget={self.budget!r} is the mean of eps: put eps in the controls")
            i = self.names.index("eps")
            if not (self.lower[i] <= self.budget <= self.upper[i]):
                raise ValueError(
                    f"budget={self.budget!r} must lie in eps_bounds=[{self.lower[i]!r}, {self.upper[i]!r}]"
                )
        return self


class Problem(NamedTuple):
    """A protocol problem on the unit's ODE: the data and fixed rule parameters ``params``, the rule and its
    parameters, the step ``plan`` (:func:`jaxadv.ode.solve.plan_steps`, fixed step), the start ``R0``,
    ``b0``, the ``objective`` and the ``controls``."""

    params: ModelParams
    plan: StepPlan
    objective: Objective
    controls: Controls
    rule: TrainingRule = DEFAULT_RULE
    rule_params: dict | None = None
    R0: float = 0.0
    b0: float = 0.0

    @property
    def schedulable(self) -> tuple[str, ...]:
        """The parameters this student's protocol may control (:data:`jaxadv.model.params.SCHEDULABLE`)."""
        return tuple(SCHEDULABLE)

    def scheduled(self, values: Any) -> ModelParams:
        """``params`` with each controlled field the schedule of its row of ``values`` (shape ``(names,
        knots)``)."""
        sched: dict[str, Any] = {n: Schedule(self.controls.knots, values[i]) for i, n in enumerate(self.controls.names)}
        return self.params._replace(**sched)

    def trajectory(self, values: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(alpha, R, b)`` of the ODE under the schedules ``values``."""
        return unit_trajectory(
            self.scheduled(values),
            self.plan,
            R0=self.R0,
            b0=self.b0,
            rule=self.rule,
            rule_params=self.rule_params,
        )

    def value(self, values: Any) -> jax.Array:
        """:math:`J(v) = \\Phi(R(\\alpha_\\max), b(\\alpha_\\max))` under the schedules ``values``."""
        _, R, b = self.trajectory(values)
        return self.objective.fn(R[-1], b[-1], self.params)

    def path(self, values: Any) -> Path:
        """The :class:`Path` of the ODE under the schedules ``values``."""
        alpha, R, b = (np.asarray(x) for x in self.trajectory(values))
        S = lambda e: np.asarray(robust_error(R, b, e, self.params))  # noqa: E731
        phi = np.array([float(self.objective.fn(r, c, self.params)) for r, c in zip(R, b, strict=True)])
        return Path(alpha, {"R": R, "b": b}, S(0.0), S(self.objective.eps_test), phi)


class Path(NamedTuple):
    """A protocol's ODE trajectory: ``alpha``, the order parameters ``order`` (``{column: array over alpha}``,
    the columns of ``ode.csv``), the clean error, the robust error at the objective's ``eps_test`` and the
    objective, each along ``alpha``."""

    alpha: np.ndarray
    order: dict
    clean: np.ndarray
    robust: np.ndarray
    objective: np.ndarray


def objective_of(problem: Any, values: Any) -> jax.Array:
    """:math:`J(v)`, the objective at the end of the run under the schedules ``values``: ``problem.value`` of
    a :class:`Problem` (the unit) or a :class:`jaxadv.control.committee.CommitteeControl`."""
    return problem.value(values)


def budget_weights(knots: Sequence[float]) -> np.ndarray:
    r""":math:`\omega_i` of the module docstring: the mean over ``[knots[0], knots[-1]]`` of the piecewise-linear
    function with values ``v`` is ``omega @ v`` (one knot: ``[1]``)."""
    a = np.asarray(knots, float)
    if a.size == 1:
        return np.ones(1)
    left = np.concatenate([[a[0]], a[:-1]])
    right = np.concatenate([a[1:], [a[-1]]])
    return (right - left) / (2.0 * (a[-1] - a[0]))


def project(values: Any, controls: Controls) -> jax.Array:
    """The Euclidean projection of ``values`` (shape ``(names, knots)``) onto the feasible set (module
    docstring)."""
    v = jnp.asarray(values)
    lo = jnp.asarray(controls.lower, v.dtype)[:, None]
    hi = jnp.asarray(controls.upper, v.dtype)[:, None]
    v = jnp.clip(v, lo, hi)
    if controls.budget is None:
        return v
    i = controls.names.index("eps")
    u, w = jnp.asarray(values)[i], jnp.asarray(budget_weights(controls.knots), v.dtype)
    lo_i, hi_i, B = controls.lower[i], controls.upper[i], controls.budget

    def mean(lam):
        return jnp.sum(w * jnp.clip(u - lam * w, lo_i, hi_i))

    # the mean falls from hi (lam small) to lo (lam large) as lam grows: bracket and bisect
    a = jnp.min((u - hi_i) / w) - 1.0
    b = jnp.max((u - lo_i) / w) + 1.0

    def body(_, ab):
        a, b = ab
        m = 0.5 * (a + b)
        high = mean(m) > B
        return jnp.where(high, m, a), jnp.where(high, b, m)

    a, b = jax.lax.fori_loop(0, BISECTIONS, body, (a, b))
    return v.at[i].set(jnp.clip(u - 0.5 * (a + b) * w, lo_i, hi_i))


class Start(NamedTuple):
    """One start of :func:`optimise`: its initial and final values, the final objective, the projected
    gradient's largest component at the end (``kkt``) and at the start (``kkt0``), and the objective after
    every iteration (``history``)."""

    initial: np.ndarray
    values: np.ndarray
    objective: float
    kkt: float
    kkt0: float
    history: np.ndarray


class OptimiseResult(NamedTuple):
    """The best start's ``values`` and ``objective``, every :class:`Start` (``starts[0]`` is the constant
    start), and ``evaluate``: the compiled ``v -> (J(v), dJ/dv)`` over the problem's knot values (pass it to a
    further :func:`optimise` of the same problem, e.g. ``tied=True``, to reuse it rather than compile again)."""

    values: np.ndarray
    objective: float
    starts: list
    evaluate: Any = None


def projected_gradient(problem: Any, values: Any) -> jax.Array:
    """:math:`v - P(v - \\nabla J(v))`: zero at a KKT point of the box (and budget) constrained problem."""
    g = jax.grad(lambda v: objective_of(problem, v))(values)
    return values - project(values - g, problem.controls)


def initial_values(controls: Controls, starts: int, seed: int, dtype: Any = jnp.float64) -> list[jax.Array]:
    """``starts`` feasible starting points: the first constant (the budget, or each box's middle), the others
    uniform in the box (``seed``), projected."""
    n = len(controls.knots)
    lo, hi = np.asarray(controls.lower, float), np.asarray(controls.upper, float)
    first = np.repeat(((lo + hi) / 2)[:, None], n, 1)
    if controls.budget is not None:
        first[controls.names.index("eps")] = controls.budget
    out = [project(jnp.asarray(first, dtype), controls)]
    rng = np.random.default_rng(seed)
    for _ in range(starts - 1):
        out.append(project(jnp.asarray(rng.uniform(lo[:, None], hi[:, None], (len(lo), n)), dtype), controls))
    return out


METHODS = ("spg", "adam")
"""The optimisers of :func:`optimise`."""


def _adam(J, value_and_grad, P, v0, steps, learning_rate, tol):
    """optax's Adam with a cosine-decaying step (to 1 % of ``learning_rate``), each update projected."""
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))

    @jax.jit
    def step(v, state):
        f, g = value_and_grad(v)
        updates, state = opt.update(g, state, v)
        return P(optax.apply_updates(v, updates)), state, f

    v, state, hist = v0, opt.init(v0), []
    for _ in range(steps):
        v, state, f = step(v, state)
        hist.append(float(f))
    return v, hist[:1] + hist  # the first entry stands for the start, as the SPG's


def _spg(J, value_and_grad, P, v0, steps, learning_rate, tol):
    r"""Spectral projected gradient (Birgin, Martínez & Raydan 2000): the direction :math:`d = P(v - s g) - v`
    with the Barzilai--Borwein step :math:`s = \|\Delta v\|^2 / \Delta v\cdot\Delta g`, an Armijo backtracking
    on :math:`t\in(0, 1]` (sufficient decrease :math:`10^{-4}\,t\,g\cdot d`); stops when the projected
    gradient's largest component is below ``tol``, or when the backtracking finds no decrease (the objective's
    round-off reached). Every iterate is feasible and the objective decreases."""
    v = v0
    f, g = value_and_grad(v)
    hist = [float(f)]
    s = 1.0 / max(float(jnp.max(jnp.abs(P(v - g) - v))), 1e-12)
    for _ in range(steps):
        if float(jnp.max(jnp.abs(P(v - g) - v))) < tol:
            break
        d = P(v - s * g) - v
        slope, t = float(jnp.sum(g * d)), 1.0
        while t > 1e-12 and float(J(v + t * d)) > float(f) + 1e-4 * t * slope:
            t *= 0.5
        if t <= 1e-12:  # no decrease along the projected direction: the objective's round-off, stop here
            break
        v_new = v + t * d
        f_new, g_new = value_and_grad(v_new)
        dv, dg = v_new - v, g_new - g
        curvature = float(jnp.sum(dv * dg))
        s = min(max(float(jnp.sum(dv * dv)) / curvature, 1e-10), 1e10) if curvature > 0 else 1e10
        v, f, g = v_new, f_new, g_new
        hist.append(float(f))
    return v, hist


def optimise(
    problem: Any,
    *,
    starts: int = 4,
    steps: int = 200,
    method: str = "spg",
    learning_rate: float = 0.05,
    tol: float = 1e-9,
    seed: int = 0,
    log: Any = None,
    tied: bool = False,
    evaluate: Any = None,
) -> OptimiseResult:
    """Minimise the objective over the feasible schedules from ``starts`` starts (:func:`initial_values`); the
    best final point wins.

    ``method``: ``"spg"`` (spectral projected gradient with backtracking, at most ``steps`` iterations, until
    the projected gradient is below ``tol``) or ``"adam"`` (optax's Adam, ``steps`` iterations from
    ``learning_rate`` with a cosine decay, each update projected). Measured on the problem of
    ``tests/test_control.py``: SPG stops below ``tol`` (projected gradients 5e-11 to 6e-10) after 11 or 12
    iterations from every start; Adam's 200 iterations end with a projected gradient of 5e-3 to 7e-3, 0.005 to
    0.009 above the optimum's objective.

    ``tied``: one value per controlled parameter, the same at every knot (the best constant schedule; the
    values have shape ``(names, 1)``, the gradient is the sum over the knots). ``evaluate``: a previous
    result's :attr:`OptimiseResult.evaluate` of the same problem (not compiled again).

    Raises:
        ValueError: ``starts`` or ``steps`` below 1, an unknown ``method``, ``learning_rate`` or ``tol`` not
            > 0, invalid controls.
    """
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts={starts!r} must be an integer >= 1")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be an integer >= 1")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    for name, x in (("learning_rate", learning_rate), ("tol", tol)):
        if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0):
            raise ValueError(f"{name}={x!r} must be > 0")
    problem.controls.check(problem.plan.alpha_max, problem.schedulable)
    # one compiled program, J and its gradient together: the line search, the KKT check and the tied problem
    # read it (a compilation of the committee's ODE and measures costs about 13 s on 2 cores)
    full = jax.jit(jax.value_and_grad(lambda v: objective_of(problem, v))) if evaluate is None else evaluate
    controls, value_and_grad = problem.controls, full
    if tied:
        n = len(controls.knots)
        controls = controls._replace(knots=(0.0,))

        def value_and_grad(c: Any) -> tuple[jax.Array, jax.Array]:
            f, g = full(jnp.repeat(c, n, axis=1))
            return f, jnp.sum(g, axis=1, keepdims=True)

    def J(v: Any) -> jax.Array:
        return value_and_grad(v)[0]

    P = jax.jit(lambda v: project(v, controls))

    def pg(v: Any) -> float:
        return float(jnp.max(jnp.abs(v - P(v - value_and_grad(v)[1]))))

    run = _spg if method == "spg" else _adam
    results = []
    for s, v0 in enumerate(initial_values(controls, starts, seed)):
        v, hist = run(J, value_and_grad, P, v0, steps, learning_rate, tol)
        f = float(J(v))
        start = Start(np.asarray(v0), np.asarray(v), f, pg(v), pg(v0), np.asarray(hist + [f]))
        results.append(start)
        if log:
            log(
                f"start {s + 1}/{starts}: objective {hist[0]:.6f} -> {f:.6f} in {len(hist) - 1} iterations "
                f"(projected gradient {start.kkt:.1e})"
            )
    best = min(range(len(results)), key=lambda i: results[i].objective)
    return OptimiseResult(results[best].values, results[best].objective, results, full)
