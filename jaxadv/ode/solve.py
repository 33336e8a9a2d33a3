r"""Integration of the large-N order-parameter ODEs (:mod:`jaxadv.ode.vector_field`) with RK4.

:func:`solve_ode` integrates the vector field of a training rule from :math:`(R_0, b_0)`, with a
fixed step or adaptively (step doubling), for one parameter point or a whole grid in one
compiled ``vmap`` split over the devices. The stepping itself is the students' one solve:
:func:`plan_steps` validates the options into a :class:`StepPlan` and :func:`solve_grid` integrates
any vector field over a pytree state on a grid (the committee's ODE calls the same two).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike, DTypeLike

from ..defaults import DT, N_SAVE
from ..model.losses import Loss, get_loss
from ..model.params import ModelParams, validate_params
from ..model.rule import DEFAULT_RULE, TrainingRule, check_ode_supported, rule_param_specs
from ..model.rule import rule_params as make_rule_params
from ..schedule import at, broadcast_to, cast, grid_shape, has_schedule
from .rk4 import ESTIMATES, RK4, ButcherTableau, integrate, integrate_adaptive, integrate_at
from .vector_field import vector_field

__all__ = [
    "ODEResult",
    "solve_ode",
    "StepPlan",
    "plan_steps",
    "GridSolution",
    "solve_grid",
    "broadcast_grid",
    "drift_vector",
    "STATUS_OK",
    "STATUS_STEP_FAILURE",
    "STATUS_LEFT_DOMAIN",
    "STATUS_NAMES",
    "domain_status",
    "unit_trajectory",
]

#: per-point status codes of :attr:`ODEResult.status`
STATUS_OK, STATUS_STEP_FAILURE, STATUS_LEFT_DOMAIN = 0, 1, 2
STATUS_NAMES = {
    STATUS_OK: "ok",
    STATUS_STEP_FAILURE: "step-size failure",
    STATUS_LEFT_DOMAIN: "left the domain (|R| > 1 or not finite)",
}
#: round-off allowed on |R| <= 1 before a point counts as having left the domain
R_DOMAIN_TOL = 1e-6


class ODEResult(NamedTuple):
    """ODE trajectory: ``alpha`` of shape ``(P,)``, ``R`` and ``b`` of shape ``G + (P,)``.

    ``n_evals``: right-hand-side evaluations per grid point, shape ``G`` (``4 x`` steps for the
    fixed step; counted by the controller for the adaptive one). ``failed``: per grid point,
    shape ``G``, ``True`` where the adaptive controller ran out of ``max_steps`` or the
    trajectory is not finite (its values are then not a solution). ``status``: per grid point,
    shape ``G``, :data:`STATUS_OK` (0), :data:`STATUS_STEP_FAILURE` (1: the adaptive controller
    ran out of steps) or :data:`STATUS_LEFT_DOMAIN` (2: :math:`|R| > 1` or a non-finite value
    somewhere on the trajectory); ``failed`` is ``status != 0``. ``fallback``: per grid point,
    ``True`` where the fixed step left the domain and the adaptive step replaced it."""

    alpha: jax.Array
    R: jax.Array
    b: jax.Array
    n_evals: jax.Array | None = None
    failed: jax.Array | None = None
    status: jax.Array | None = None
    fallback: jax.Array | None = None


def domain_status(R: ArrayLike, b: ArrayLike, step_failed: ArrayLike | None = None) -> jax.Array:
    """Per-point status (shape ``R.shape[:-1]``) of trajectories ``R``, ``b`` of shape ``G + (P,)``:
    :data:`STATUS_LEFT_DOMAIN` where any value is not finite or :math:`|R| > 1`
    (beyond :data:`R_DOMAIN_TOL`), else :data:`STATUS_STEP_FAILURE` where ``step_failed``,
    else :data:`STATUS_OK`."""
    R, b = jnp.asarray(R), jnp.asarray(b)
    finite = jnp.all(jnp.isfinite(R), axis=-1) & jnp.all(jnp.isfinite(b), axis=-1)
    inside = jnp.all(jnp.abs(jnp.where(jnp.isfinite(R), R, 0.0)) <= 1.0 + R_DOMAIN_TOL, axis=-1)
    left = ~(finite & inside)
    step = jnp.zeros(left.shape, bool) if step_failed is None else jnp.asarray(step_failed)
    return jnp.where(step, STATUS_STEP_FAILURE, jnp.where(left, STATUS_LEFT_DOMAIN, STATUS_OK)).astype(jnp.int32)


def drift_vector(
    y: jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    method: str = "auto",
) -> jax.Array:
    """:func:`jaxadv.ode.vector_field.vector_field` at ``y = jnp.array([R, b])``, stacked (for ``jax.jacfwd``)."""
    return vector_field(rule, method)(0.0, y, (params, {} if rp is None else rp))


def _steps(alpha_max: float, n_save: int, dt: float):
    if n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be >= 1")
    if not (alpha_max > 0 and math.isfinite(alpha_max)):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt={dt!r} must be finite and > 0")
    interval = alpha_max / n_save
    sub = max(1, math.ceil(interval / dt - 1e-9))
    return sub, interval / sub


class StepPlan(NamedTuple):
    """How :func:`solve_grid` steps: validated, plain Python and NumPy values (static).

    Attributes:
        alpha_max: final time.
        n_save: save intervals; the result has ``n_save + 1`` points.
        save_alpha: save times of any spacing, starting at 0 (NumPy, shape ``(n_save + 1,)``), or ``None``
            (``n_save`` equal intervals).
        dt: largest fixed step; also the adaptive step's first trial (bounded by the first interval).
        steps_per_save, h: the fixed step divides each of the equal intervals into ``steps_per_save``
            steps of length ``h``.
        n_sub: with ``save_alpha`` and a fixed step, steps per interval (NumPy ``int32``, shape ``(n_save,)``).
        rtol, atol: tolerances of the adaptive step; ``None``: fixed step.
        max_steps: most step attempts per grid point (adaptive).
        estimate: the adaptive step's local error estimate (:mod:`jaxadv.ode.rk4`).
        tableau: the Runge--Kutta method (:data:`jaxadv.ode.rk4.RK4`, or e.g. ``DOPRI5`` with the embedded
            estimate).
        rolled: the adaptive step takes its stages in a loop (:func:`jaxadv.ode.rk4.rk_stages_rolled`), for
            vector fields whose compilation dominates.
    """

    alpha_max: float
    n_save: int
    save_alpha: np.ndarray | None
    dt: float
    steps_per_save: int
    h: float
    n_sub: np.ndarray | None
    rtol: float | None
    atol: float | None
    max_steps: int
    estimate: str
    tableau: ButcherTableau = RK4
    rolled: bool = False

    @property
    def adaptive(self) -> bool:
        return self.rtol is not None

    @property
    def h0(self) -> float:
        """First trial step of the adaptive step: ``dt``, at most the first save interval."""
        first = self.alpha_max / self.n_save if self.save_alpha is None else float(self.save_alpha[1])
        return min(self.dt, first)

    @property
    def fixed_evals(self) -> int:
        """Evaluations of the vector field per grid point with the fixed step (4 per RK4 step)."""
        steps = int(self.n_sub.sum()) if self.n_sub is not None else self.steps_per_save * self.n_save
        return len(self.tableau.b) * steps


def plan_steps(
    alpha_max: float,
    n_save: int,
    dt: float,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100000,
    estimate: str = "doubling",
    save_alpha: Any = None,
    tableau: ButcherTableau = RK4,
    rolled: bool = False,
) -> StepPlan:
    """Validate the stepping options and return the :class:`StepPlan` (``ValueError`` naming the option).

    ``rtol`` or ``atol`` given: adaptive step (one given, the other defaults to ``rtol = 1e-8`` or
    ``atol = 1e-3 * rtol``); otherwise a fixed step of at most ``dt`` that divides every save interval.
    ``save_alpha`` (increasing, from 0, at least two) replaces ``alpha_max`` and ``n_save``."""
    if save_alpha is not None:
        save_alpha = np.asarray(save_alpha, np.float64)
        if save_alpha.ndim != 1 or save_alpha.size < 2 or save_alpha[0] != 0 or np.any(np.diff(save_alpha) <= 0):
            raise ValueError(f"save_alpha={save_alpha!r} must be increasing times starting at 0, at least two")
        alpha_max, n_save = float(save_alpha[-1]), save_alpha.size - 1
    if estimate not in ESTIMATES:  # checked with the fixed step too (where it has no effect)
        raise ValueError(f"estimate={estimate!r} is not one of {list(ESTIMATES)}")
    if not isinstance(tableau, ButcherTableau):
        raise ValueError(f"tableau={tableau!r} must be a jaxadv.ode.rk4.ButcherTableau")
    if estimate == ESTIMATES[1] and (rtol is not None or atol is not None) and tableau.e is None:
        raise ValueError(f"estimate={estimate!r} needs a tableau with embedded error weights (RK4, DOPRI5)")
    sub, h = _steps(float(alpha_max), int(n_save), float(dt))
    adaptive = rtol is not None or atol is not None
    if adaptive:
        rtol = 1e-8 if rtol is None else rtol
        atol = 1e-3 * rtol if atol is None else atol
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        if rtol == 0 and atol == 0:
            raise ValueError("rtol=0 and atol=0: at least one tolerance must be > 0")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"max_steps={max_steps!r} must be an integer >= 1")
        rtol, atol = float(rtol), float(atol)
    n_sub = None
    if save_alpha is not None and not adaptive:
        n_sub = np.maximum(1, np.ceil(np.diff(save_alpha) / float(dt) - 1e-9)).astype(np.int32)
    return StepPlan(
        float(alpha_max),
        int(n_save),
        save_alpha,
        float(dt),
        sub,
        h,
        n_sub,
        rtol,
        atol,
        int(max_steps),
        estimate,
        tableau,
        bool(rolled),
    )


class GridSolution(NamedTuple):
    """What :func:`solve_grid` returns: ``alpha`` ``(P,)``; ``ys`` the state pytree with leaves of shape
    ``G + (P,) + leaf shape``; ``n_evals`` (vector-field evaluations) and ``step_failed`` (the adaptive
    step ran out of ``max_steps``; its states after that are NaN) per grid point, shape ``G``."""

    alpha: jax.Array
    ys: object
    n_evals: jax.Array
    step_failed: jax.Array


def _start(y0, project):
    return y0 if project is None else project(y0)


@functools.partial(jax.jit, static_argnames=("field", "steps_per_save", "n_save", "project", "tableau"))
def _solve(field, args, y0, h, steps_per_save, n_save, project=None, tableau=RK4):
    return integrate(field, _start(y0, project), 0.0, h, steps_per_save, n_save, args, tableau, project=project)


@functools.partial(jax.jit, static_argnames=("field", "project", "tableau"))
def _solve_at(field, args, y0, t_save, n_sub, project=None, tableau=RK4):
    return integrate_at(field, _start(y0, project), t_save, n_sub, args, tableau, project=project)


@functools.partial(jax.jit, static_argnames=("field", "max_steps", "estimate", "project", "tableau", "rolled"))
def _solve_adaptive(
    field,
    args,
    y0,
    t_save,
    h0,
    rtol,
    atol,
    max_steps=100_000,
    estimate="doubling",
    project=None,
    tableau=RK4,
    rolled=False,
):
    return integrate_adaptive(
        field,
        _start(y0, project),
        0.0,
        t_save,
        h0,
        args,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        tableau=tableau,
        estimate=estimate,
        project=project,
        rolled=rolled,
    )


def solve_grid(
    field: Any,
    plan: StepPlan,
    y0: Any,
    args: Any,
    shared: Any = None,
    *,
    shape: Any = (),
    project: Any = None,
    devices: Any = None,
    dtype: Any = None,
) -> Any:
    """Integrate ``dy/dalpha = field(alpha, y, (args, shared))`` with RK4 at every point of a grid: the one
    solve of every student (the unit's :func:`solve_ode`, the committee's
    :func:`jaxadv.committee.ode.solve_committee_ode`).

    Args:
        field: the vector field, static: pass the same (cached) function for the same equations, so the
            compiled solve is reused.
        plan: :func:`plan_steps`.
        y0: initial state, a pytree whose leaves have the leading grid shape ``shape``.
        args: per-point arguments, a pytree whose leaves have the leading shape ``shape``.
        shared: arguments common to every grid point (not mapped).
        shape: the grid shape ``G`` (``()``: one point).
        project: ``project(y)`` applied to ``y0`` and after every step (static; ``None``: none), see
            :func:`jaxadv.ode.rk4.integrate` and :func:`jaxadv.ode.rk4.integrate_adaptive`.
        devices: devices to split the grid over (:func:`jaxadv.sharding.shard_batch`; default all).
        dtype: float dtype of the times (default JAX's default float).

    Returns:
        :class:`GridSolution`. With the fixed step ``n_evals`` is ``4 x`` the steps and ``step_failed``
        is ``False``.
    """
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if has_schedule((args, shared)):  # schedules (jaxadv.schedule): the parameters at each stage time
        field = _scheduled(field)
    if plan.adaptive:
        if plan.save_alpha is None:
            n = plan.n_save
            t_save = jnp.asarray(plan.alpha_max, dtype) * jnp.arange(1, n + 1, dtype=dtype) / n
        else:
            t_save = jnp.asarray(plan.save_alpha[1:], dtype)
        consts = (jnp.asarray(plan.h0, dtype), jnp.asarray(plan.rtol, dtype), jnp.asarray(plan.atol, dtype))
        kernel = functools.partial(
            _solve_adaptive,
            t_save=t_save,
            max_steps=plan.max_steps,
            estimate=plan.estimate,
            project=project,
            tableau=plan.tableau,
            rolled=plan.rolled,
        )

        def point(a, yy):
            return kernel(field, (a, shared), yy, h0=consts[0], rtol=consts[1], atol=consts[2])

    elif plan.save_alpha is not None:
        t_at, n_sub = jnp.asarray(plan.save_alpha, dtype), jnp.asarray(plan.n_sub)

        def point(a, yy):
            return _solve_at(field, (a, shared), yy, t_at, n_sub, project=project, tableau=plan.tableau)

    else:
        h = jnp.asarray(plan.h, dtype)

        def point(a, yy):
            return _solve(
                field, (a, shared), yy, h, plan.steps_per_save, plan.n_save, project=project, tableau=plan.tableau
            )

    # one vmap over the flattened grid, split over all devices (no-op on one device)
    size = math.prod(shape)
    a_flat, y_flat = jax.tree.map(lambda x: x.reshape((size,) + x.shape[len(shape) :]), (args, y0))
    if shape and len(jax.devices() if devices is None else devices) > 1:
        from ..sharding import shard_batch

        a_flat, y_flat = shard_batch((a_flat, y_flat), devices)
    out = jax.vmap(point)(a_flat, y_flat) if shape else point(args, y0)
    if jax.process_count() > 1:  # several processes: every one gets the whole grid's results
        from ..sharding import gather

        out = gather(out)
    if shape:
        out = jax.tree.map(lambda x: x[:size].reshape(shape + x.shape[1:]), out)
    ts, ys = out[0], out[1]
    alpha = ts.reshape(-1, ts.shape[-1])[0] if ts.ndim > 1 else ts
    if plan.adaptive:
        n_evals, step_failed = out[2].n_evals, out[2].failed
    else:
        n_evals, step_failed = jnp.full(shape, plan.fixed_evals, jnp.int32), jnp.zeros(shape, bool)
    return GridSolution(alpha, ys, n_evals, step_failed)


@functools.cache
def _scheduled(field: Any) -> Any:
    """``field`` evaluated with every schedule of its arguments at the stage time (cached: one function, one
    compilation, per field)."""
    return lambda t, y, a: field(t, y, at(a, t))


@functools.cache
def _unit_field(rule: TrainingRule, method: str):
    """The unit's vector field on :func:`solve_grid`'s arguments ``((params, grid rule parameters), shared
    rule parameters)`` (cached: one function, one compilation, per rule and method)."""
    f = vector_field(rule, method)
    return lambda t, y, a: f(t, y, (a[0][0], {**a[0][1], **a[1]}))


def broadcast_grid(
    params: ModelParams, rule: TrainingRule, rp: dict, *extra: ArrayLike, dtype: DTypeLike
) -> tuple[ModelParams, dict[str, jax.Array], tuple[Any, ...], tuple[int, ...]]:
    """Cast the model parameters, the rule's scalar parameters and the ``extra`` arrays to ``dtype``
    and broadcast them to one grid shape ``G``: returns ``(params, rp, extra, G)``. The rule's
    vector parameters (a discrete law's support and weights) are shared by all grid points."""
    vector = {k for k, spec in rule_param_specs(rule).items() if spec.vector}
    p = ModelParams(*(cast(x, dtype) for x in params))
    rp = {k: cast(v, dtype) for k, v in rp.items()}
    shape = jnp.broadcast_shapes(
        *(grid_shape(x) for x in p),
        *(grid_shape(v) for k, v in rp.items() if k not in vector),
        *(jnp.shape(e) for e in extra),
    )
    p = ModelParams(*(broadcast_to(x, shape) for x in p))
    rp = {k: v if k in vector else broadcast_to(v, shape) for k, v in rp.items()}
    extra = tuple(jnp.asarray(e, dtype) + jnp.zeros(shape, dtype) for e in extra)
    return p, rp, extra, shape


def _solve_unit(params, rp, R0, b0, rule, plan, method, devices, dtype) -> Any:
    """The unit's ODE on :func:`solve_grid` (no checks: traceable, so :func:`unit_trajectory` differentiates
    it); ``y = (R, b)`` stacked on the last axis of ``ys``."""
    p, rp, (R0_, b0_), shape = broadcast_grid(params, rule, rp, R0, b0, dtype=dtype)
    y0 = jnp.stack([R0_, b0_], axis=-1)
    vector = {k for k, spec in rule_param_specs(rule).items() if spec.vector}
    grid_rp = {k: v for k, v in rp.items() if k not in vector}
    shared_rp = {k: v for k, v in rp.items() if k in vector}
    return solve_grid(
        _unit_field(rule, method), plan, y0, (p, grid_rp), shared_rp, shape=shape, devices=devices, dtype=dtype
    )


def unit_trajectory(
    params: ModelParams,
    plan: StepPlan,
    *,
    R0: ArrayLike = 0.0,
    b0: ArrayLike = 0.0,
    rule: TrainingRule = DEFAULT_RULE,
    rule_params: dict | None = None,
    method: str = "auto",
    dtype: DTypeLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``(alpha, R, b)`` of the unit's ODE on ``plan`` (:func:`plan_steps`), as a pure function of its inputs:
    no eager checks and no fallback, so ``jax.grad`` and ``jax.jacfwd`` go through it, e.g. with respect to a
    schedule's values (:class:`jaxadv.schedule.Schedule`). :func:`solve_ode` is the checked form; with the
    same arguments both give the same numbers. Each RK4 step is rematerialised in reverse mode
    (:func:`jax.checkpoint`), so a gradient stores one state a step, not the stages.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from jaxadv import ModelParams
        >>> from jaxadv.ode.solve import plan_steps, unit_trajectory
        >>> from jaxadv.schedule import Schedule
        >>> def final_R(v):
        ...     params = ModelParams(prior=0.7, eps=Schedule([0.0, 10.0], v))
        ...     return unit_trajectory(params, plan_steps(10.0, 1, 0.5))[1][-1]
        >>> g = jax.grad(final_R)(jax.numpy.array([0.0, 1.0]))
        >>> g.shape
        (2,)
    """
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    rp = make_rule_params(rule, dtype, validate=False, **(rule_params or {}))
    sol = _solve_unit(params, rp, R0, b0, rule, plan, method, None, dtype)
    return sol.alpha, sol.ys[..., 0], sol.ys[..., 1]


def solve_ode(
    params: ModelParams,
    alpha_max: float,
    n_save: int = N_SAVE,
    *,
    dt: float = DT,
    R0: ArrayLike = 0.0,
    b0: ArrayLike = 0.0,
    rule: TrainingRule = DEFAULT_RULE,
    rule_params: dict | None = None,
    loss: str | Loss | None = None,
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100000,
    devices: Sequence[jax.Device] | None = None,
    dtype: DTypeLike | None = None,
    save_alpha: npt.ArrayLike | None = None,
    estimate: str = "doubling",
) -> ODEResult:
    r"""Integrate the order-parameter ODEs of a training rule from :math:`(R_0, b_0)` with RK4.

    With ``rtol`` (or ``atol``) given the step is adaptive: RK4 with step doubling
    (:func:`jaxadv.ode.rk4.integrate_adaptive`; per grid point, local error per step
    :math:`\le \mathrm{atol} + \mathrm{rtol}\,|y|`), starting from ``dt``. Otherwise the step is
    fixed, at most ``dt``. Far from the initial transient the adaptive step grows to tens of
    units of :math:`\alpha`, so long horizons cost a few hundred evaluations.

    Args:
        params: model parameters; scalars, or arrays of one common shape ``G`` for a grid
            (the grid is ``vmap``-ped, one compilation for all values).
        alpha_max: final time :math:`\alpha_\max`.
        n_save: number of equal save intervals; ``alpha`` has ``n_save + 1`` points.
        dt: largest RK4 step; the step used divides the save interval exactly.
        R0, b0: initial overlap and bias (a random initial ``w`` has :math:`R_0 = 0` as N grows).
        rule: the :class:`jaxadv.TrainingRule` (default: the talk's L2 adversarial training);
            ``ValueError`` when it has no ODE face (:func:`jaxadv.model.rule.check_ode_supported`).
        rule_params: the rule's traced parameters; scalars may be arrays on the grid too.
        loss: loss name or :class:`jaxadv.Loss`, replacing ``rule.loss`` when given.
        method: Gaussian averages, see :func:`jaxadv.model.losses.force_moments`.
        rtol, atol: tolerances of the adaptive step (``None``: fixed step; one given, the other
            defaults to ``rtol = 1e-8`` or ``atol = 1e-3 * rtol``). The fixed step checks its
            result: where a trajectory leaves the domain (:math:`|R| > 1` or not finite, the
            sign of an unstable step) the point is integrated again adaptively
            (``rtol = 1e-8``), ``fallback=True``; ``status`` says whether that succeeded.
        max_steps: most step attempts per grid point of the adaptive step; a point that runs out
            gets NaN from there on, ``failed=True`` and a ``RuntimeWarning``.
        devices: devices to split a grid over (:func:`jaxadv.sharding.shard_batch`; default all,
            :func:`jax.devices`); the values do not depend on it.
        dtype: float dtype of the integration (default: JAX's default float, float64 when
            ``jax_enable_x64`` is on); float64 needs ``jax_enable_x64``.
        save_alpha: save times of any spacing (e.g. log-spaced, the Monte Carlo's ``alpha``),
            increasing, starting at 0; they replace ``alpha_max`` and ``n_save``. The fixed step
            divides each interval into at most ``dt``-long steps.
        estimate: the adaptive step's local error estimate (:mod:`jaxadv.ode.rk4`): ``"doubling"``
            (step doubling, 11 evaluations a step, the result extrapolated to fifth order; the default) or
            ``"embedded"`` (RK4's embedded third-order pair, 4 evaluations a step, more and shorter steps).
            Measured: to alpha = 1000 the embedded estimate reaches the same end-point error 1.25-1.5x
            faster; on short horizons step doubling is the cheaper one.

    Returns:
        :class:`ODEResult` with ``R`` and ``b`` of shape ``G + (n_save + 1,)`` and ``n_evals``,
        ``failed``, ``status``, ``fallback`` of shape ``G``.

    Example:
        >>> from jaxadv import ModelParams, solve_ode
        >>> sol = solve_ode(ModelParams(prior=0.5, eps=1.0), alpha_max=10.0, n_save=10)
        >>> sol.R.shape
        (11,)
    """
    validate_params(params)
    for name, value in (("R0", R0), ("b0", b0)):
        v = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name}={value!r} must be finite")
    if not np.all(np.abs(np.asarray(R0, dtype=float)) <= 1):
        raise ValueError(f"R0={R0!r} must lie in [-1, 1]")
    plan = plan_steps(
        alpha_max, n_save, dt, rtol=rtol, atol=atol, max_steps=max_steps, estimate=estimate, save_alpha=save_alpha
    )
    if loss is not None:
        rule = rule._replace(loss=get_loss(loss))
    check_ode_supported(rule)
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    rp = make_rule_params(rule, dtype, **(rule_params or {}))
    alpha, ys, n_evals, step_failed = _solve_unit(params, rp, R0, b0, rule, plan, method, devices, dtype)
    shape = jnp.shape(step_failed)
    fallback = jnp.zeros(shape, bool)
    if plan.adaptive:
        if bool(jnp.any(step_failed)):
            import warnings

            warnings.warn(
                f"max_steps={max_steps} ran out before alpha_max={plan.alpha_max} at "
                f"{int(jnp.sum(step_failed))} grid point(s); their states after that are NaN "
                "(raise max_steps or loosen rtol/atol)",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        left = domain_status(ys[..., 0], ys[..., 1]) == STATUS_LEFT_DOMAIN
        if bool(jnp.any(left)):
            # the fixed step went unstable (or the dynamics left the domain): integrate again with
            # the step-doubling controller; the stable points keep their fixed-step values
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                again = solve_ode(
                    params,
                    alpha_max,
                    n_save,
                    dt=dt,
                    R0=R0,
                    b0=b0,
                    rule=rule,
                    rule_params=rule_params,
                    method=method,
                    rtol=1e-8,
                    max_steps=max_steps,
                    devices=devices,
                    dtype=dtype,
                    save_alpha=save_alpha,
                )
            ys = jnp.where(left[..., None, None], jnp.stack([again.R, again.b], axis=-1), ys)
            step_failed = jnp.where(left, again.status == STATUS_STEP_FAILURE, step_failed)
            n_evals = jnp.where(left, n_evals + again.n_evals, n_evals)
            fallback = left
    status = domain_status(ys[..., 0], ys[..., 1], step_failed)
    return ODEResult(
        alpha=alpha,
        R=ys[..., 0],
        b=ys[..., 1],
        n_evals=n_evals,
        failed=status != STATUS_OK,
        status=status,
        fallback=fallback,
    )
