r"""The Monte Carlo driver: many replicas of a sampler, keys, save points and devices; pure.

Each replica is a student trained on its own stream of fresh examples by a sampler's
``(init, step)`` kernel (:func:`jaxadv.mc.full.full_sampler`, :func:`jaxadv.mc.reduced.reduced_sampler`,
:func:`jaxadv.mc.pair.pair_sampler`, the committee's :func:`jaxadv.committee.montecarlo.committee_sampler`;
observables may be any pytree).
The kernel is ``vmap``-ped over replicas; steps are a ``lax.fori_loop``. The key of step
:math:`\mu` of a replica is ``fold_in(replica_key, mu)``, so results do not depend on how the run
is chunked (save interval, progress updates, resumption). Only the order parameters are
recorded, at save points; time is :math:`\alpha=\mu/N`.

:func:`simulate` runs a whole simulation and returns arrays. It is built from three steps an
application can drive itself (:func:`jaxadv.app.checkpoint.simulate_resumable` adds checkpoint
files and progress): :func:`plan_simulation` (validate, keys, constants, devices),
:func:`init_states` and :func:`advance` (one save interval); :func:`run_plan` runs a plan of any sampler
(:func:`start_states`, :func:`dispatch`, :func:`observables_on_host`, :func:`record`). A plan may carry a
:class:`SaveMeasure`: quantities measured at save points from the states of all replicas, outside the
step kernel (the pair's transfer on fresh test examples, :func:`jaxadv.mc.pair.plan_pair`); they join the
observables, so checkpoints and resumption keep them like the order parameters.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from .. import threefry
from ..defaults import N_SAVE, REPLICAS
from ..generators import Generator, get_generator
from ..model.data import cluster_axis, unit_direction
from ..model.losses import Loss, get_loss
from ..model.params import ModelParams, as_array_params, validate_params
from ..model.rule import DEFAULT_RULE, TrainingRule, rule_params
from ..schedule import at, describe, has_schedule, in_steps, is_schedule
from ..sharding import shard_batch, to_host
from . import schedule
from .full import Sampler, SamplerParams, full_sampler
from .reduced import reduced_sampler

__all__ = [
    "MCResult",
    "SAMPLERS",
    "MAX_MC_STEPS",
    "Plan",
    "plan_simulation",
    "init_states",
    "advance",
    "result",
    "simulate",
    "save_schedule",
    "advance_states",
    "init_batch",
    "simulate_grid",
    "start_states",
    "observables_on_host",
    "allocate_observables",
    "record",
    "run_plan",
    "SaveMeasure",
]

SAMPLERS = {"full": full_sampler, "reduced": reduced_sampler}
"""Sampler constructors by name: ``SAMPLERS[name](rule) -> Sampler``."""


class MCResult(NamedTuple):
    """Order parameters of all replicas at the save points.

    Attributes:
        alpha: save times, shape ``(P,)``, starting at 0.
        R: overlaps :math:`w\\cdot B`, shape ``(replicas, P)``.
        b: biases, shape ``(replicas, P)``.
        norm: :math:`\\|w\\|` (1 up to round-off), shape ``(replicas, P)``.
        finite: ``True`` where R and b are finite, shape ``(replicas, P)``.
        norm1: :math:`\\|w\\|_1`, shape ``(replicas, P)`` (dual norm of the L-infinity threat).
        norm_inf: :math:`\\|w\\|_\\infty`, shape ``(replicas, P)`` (dual norm of the L1 threat).
    """

    alpha: np.ndarray
    R: np.ndarray
    b: np.ndarray
    norm: np.ndarray
    finite: np.ndarray
    norm1: np.ndarray | None = None
    norm_inf: np.ndarray | None = None


@functools.partial(jax.jit, static_argnames=("sampler",), donate_argnums=(1,))
def _advance(run_keys, states, sp, start, n_steps, sampler):
    """Advance every replica by ``n_steps`` steps, starting at step index ``start``.

    ``n_steps`` is traced (a ``fori_loop`` with a dynamic trip count), so runs with another N or
    save interval reuse the compilation. Returns the states and their observables.
    """

    def body(i, st):
        keys = jax.vmap(threefry.fold_in, (0, None))(run_keys, start + i)
        p = _at_step(sp, start + i)  # schedules: the step's parameters
        return jax.vmap(lambda k, s_: sampler.step(k, s_, p)[0])(keys, st)

    states = jax.lax.fori_loop(jnp.uint32(0), n_steps, body, states)
    return states, jax.vmap(sampler.observe, (0, None))(states, _at_step(sp, start + n_steps))


SCHEDULE_POINT = 0.5
"""Where in a step a schedule is read: step ``mu -> mu + 1`` uses the parameters at ``alpha = (mu + SCHEDULE_POINT)
/ N``. The midpoint (0.5) leaves no O(1/N) bias against the ODE; 0 (the step's start) or 1 (its end) would shift
the mean by the O(1/N) term of ``docs/theory.md`` section 15 (measured there by changing this value; it is read
when the kernel is compiled, so call ``jax.clear_caches()`` after changing it)."""


def _at_step(sp, step):
    """``sp`` with its schedules (in step units, :func:`jaxadv.schedule.in_steps`) for the step from index
    ``step`` to ``step + 1``: at :data:`SCHEDULE_POINT` of it (``docs/theory.md``, "Schedules")."""
    if not has_schedule(sp):
        return sp
    dtype = jnp.result_type(*jax.tree.leaves(sp.model))
    return at(sp, step.astype(dtype) + jnp.asarray(SCHEDULE_POINT, dtype))


@functools.partial(jax.jit, static_argnames=("R0_given", "sampler"))
def _init(init_keys, sp, R0, b0, R0_given, sampler):
    sp = _at_step(sp, jnp.uint32(0))
    states = jax.vmap(lambda k: sampler.init(k, sp, R0 if R0_given else None, b0))(init_keys)
    return states, jax.vmap(sampler.observe, (0, None))(states, sp)


def advance_states(
    sampler: Sampler, run_keys: jax.Array, states: Any, sp: SamplerParams, start: int, n_steps: int
) -> tuple[Any, Any]:
    """Public form of the jitted kernel loop: ``n_steps`` steps of ``sampler`` on every replica from step
    index ``start`` (``states`` donated); returns ``(states, observables)``. Benchmarks and custom
    drivers call this."""
    return _advance(run_keys, states, sp, jnp.uint32(start), jnp.uint32(n_steps), sampler)


def init_batch(
    sampler: Sampler, init_keys: jax.Array, sp: SamplerParams, R0: Any = None, b0: Any = 0.0
) -> tuple[Any, Any]:
    """Initial states of a batch of replicas (one per key) and their observables."""
    dtype = jnp.result_type(sp.const)
    return _init(
        init_keys, sp, jnp.asarray(0.0 if R0 is None else R0, dtype), jnp.asarray(b0, dtype), R0 is not None, sampler
    )


MAX_MC_STEPS = 2**32 - 1
"""Most steps of a Monte Carlo run: every step folds its index, a 32-bit counter, into the replica's key."""


def save_schedule(N: int, alpha_max: float, n_save: int) -> tuple[int, np.ndarray]:
    """Steps between saves and the save times: ``(steps_per_save, alpha)``, alpha of shape ``(n_save+1,)``.

    ``steps_per_save = round(alpha_max * N / n_save)`` (at least 1); the last save is at
    ``n_save * steps_per_save / N``, which equals ``alpha_max`` when ``alpha_max * N / n_save``
    is an integer. ``ValueError`` when the run has more than :data:`MAX_MC_STEPS` steps (the step counter
    would wrap); every plan (single layer, committee) and the CLI's early check go through here.
    """
    per_save = float(alpha_max) * float(N) / float(n_save)  # in floats: an absurd size is refused, not overflowed
    total = n_save * max(1.0, round(per_save)) if np.isfinite(per_save) else per_save
    if not total <= MAX_MC_STEPS:  # (NaN and inf too)
        raise ValueError(
            f"alpha_max={alpha_max!r} at N={N} is {total:.3g} Monte Carlo steps, more than "
            f"the step counter's {MAX_MC_STEPS} (2**32 - 1); lower alpha_max or N"
        )
    steps = max(1, int(round(per_save)))
    return steps, np.arange(n_save + 1) * steps / N


class SaveMeasure(NamedTuple):
    """Quantities measured at save points from the states of all replicas, outside the step kernel.

    Attributes:
        fn: ``fn(k, states)``: the measurement at save point ``k`` of the replicas' ``states`` (as the driver
            holds them: padded to a multiple of the device count and sharded, :func:`jaxadv.sharding.shard_batch`);
            returns a tuple of arrays whose leading axis is that of the states. It must depend on ``k`` and the
            states only (its keys derived from ``k``), so that a resumed or re-split run measures the same bits.
        points: the save points measured (ints in ``[0, n_save]``); the others stay NaN.
        shapes: the shape of one replica's value of each array ``fn`` returns (a tuple of tuples).
    """

    fn: Callable[..., Any]
    points: tuple
    shapes: tuple


class Plan(NamedTuple):
    """A validated simulation, ready to run (see :func:`plan_simulation`).

    Attributes:
        sampler: the :class:`jaxadv.mc.full.Sampler`.
        sp: :class:`jaxadv.mc.full.SamplerParams` (arrays of ``dtype``).
        init_keys, run_keys: per-replica keys, split over the devices (padded).
        R0, b0: initial condition handed to ``sampler.init`` (``R0=None``: the sampler's random start);
            floats for the single-layer samplers, pytrees of arrays for others (the committee's
            ``(Q0, R0)`` and ``(b0, v0)``).
        replicas, N, n_save, steps: sizes; ``steps`` per save interval.
        alpha: save times, shape ``(n_save + 1,)``.
        dtype: the simulation's float dtype.
        identity: a JSON-able description of everything that determines the result (for checkpoints).
        save_steps: step counts of the save points when they are not equally spaced
            (``save="log"``, :mod:`jaxadv.mc.schedule`), shape ``(n_save + 1,)``; ``None``: every
            interval has ``steps`` steps.
        measure: a :class:`SaveMeasure` whose arrays follow the sampler's observables (``None``: none).
    """

    sampler: Sampler
    sp: SamplerParams
    init_keys: jax.Array
    run_keys: jax.Array
    R0: Any
    b0: Any
    replicas: int
    N: int
    n_save: int
    steps: int
    alpha: np.ndarray
    dtype: np.dtype
    identity: list[Any]
    save_steps: np.ndarray | None = None
    measure: SaveMeasure | None = None


def plan_simulation(
    key: jax.Array,
    params: ModelParams,
    *,
    N: int,
    alpha_max: float,
    n_save: int = N_SAVE,
    replicas: int = REPLICAS,
    rule: TrainingRule = DEFAULT_RULE,
    rule_params_: dict[str, Any] | None = None,
    loss: str | Loss | None = None,
    dtype: DTypeLike = jnp.float32,
    R0: float | None = None,
    b0: float = 0.0,
    B: str | ArrayLike | None = None,
    sampler: str = "full",
    optimizer: Callable | None = None,
    save: str = "linear",
    points_per_decade: int = 10,
    alpha_min: float | None = None,
    generator: str | Generator = "jax",
) -> Plan:
    """Validate the arguments of :func:`simulate` and prepare keys, constants and devices."""
    validate_params(params)
    if int(N) != N or N < 2:
        raise ValueError(f"N={N!r} must be an integer >= 2")
    if int(replicas) != replicas or replicas < 1:
        raise ValueError(f"replicas={replicas!r} must be an integer >= 1")
    if int(n_save) != n_save or n_save < 1:
        raise ValueError(f"n_save={n_save!r} must be an integer >= 1")
    if not (np.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    if R0 is not None and not (-1.0 <= R0 <= 1.0):
        raise ValueError(f"R0={R0!r} must lie in [-1, 1]")
    if not np.isfinite(b0):
        raise ValueError(f"b0={b0!r} must be finite")
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True)")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not one of {sorted(SAMPLERS)}")
    gen = get_generator(generator)
    if gen.name != "jax":
        if sampler != "full":
            raise ValueError(
                f"generator={gen.name!r} needs sampler='full' (the reduced sampler draws a few "
                "numbers a step with its own exact draws)"
            )
        if not threefry.is_threefry(key):
            raise ValueError(
                f"generator={gen.name!r} needs a threefry2x32 key (prng='threefry2x32'), got "
                f"impl={jax.random.key_impl(key)}"
            )
    if loss is not None:
        rule = rule._replace(loss=get_loss(loss))
    rp = rule_params(rule, dtype, **(rule_params_ or {}))
    N, replicas, n_save = int(N), int(replicas), int(n_save)
    if sampler == "full":
        kernel = full_sampler(rule, optimizer, gen)
    else:
        if optimizer is not None:
            raise ValueError("optimizer=... needs sampler='full' (the reduced sampler is the plain SGD step)")
        kernel = reduced_sampler(rule)
    B_given = B
    B_vector = None
    if sampler == "full" or B_given is not None:  # the reduced chain reads N only: no N-vector (4 GB at N = 1e9)
        if isinstance(B, str):
            B = cluster_axis(N, B, dtype)
        B_vector = unit_direction(N, dtype) if B is None else jnp.asarray(B, dtype)
    const = B_vector if sampler == "full" and B_vector is not None else jnp.asarray(N, dtype)
    steps, alpha = save_schedule(N, alpha_max, n_save)
    save_steps = None
    if save != "linear":  # log-spaced saves: intervals of different lengths (one compilation, n_steps is traced)
        save_steps = schedule.save_steps(N, alpha_max, n_save, save, points_per_decade, alpha_min)
        n_save, steps, alpha = len(save_steps) - 1, int(np.max(np.diff(save_steps))), save_steps / N
    sp = in_steps(SamplerParams(as_array_params(params, dtype), rp, const), N)  # schedules in step units

    keys = jax.random.split(key, replicas)
    pair = jax.vmap(jax.random.split)(keys)
    # replicas split over all devices (padded to a multiple of the count; no-op on one device)
    init_keys, run_keys = shard_batch((pair[:, 0], pair[:, 1]))
    identity = [
        np.asarray(jax.random.key_data(key)).tolist(),
        [describe(x) for x in params],
        N,
        float(alpha_max),
        n_save,
        replicas,
        rule.loss.name,
        str(dtype),
        R0,
        float(b0),
        None if B_given is None else hashlib.sha256(np.asarray(B_vector).tobytes()).hexdigest(),
        [
            rule.attack.name,
            rule.eps_law.name,
            rule.gate.name,
            rule.n_eps_nodes,
            {k: describe(v) if is_schedule(v) else np.asarray(v).tolist() for k, v in rp.items()},
        ],
        sampler,
        None if optimizer is None else getattr(optimizer, "__qualname__", str(optimizer)),
    ]
    if save_steps is not None:
        identity.append([save, save_steps.tolist()])
    if gen.name != "jax":  # the default adds nothing, so its checkpoints stay valid
        identity.append(["generator", gen.name])
    return Plan(
        kernel, sp, init_keys, run_keys, R0, float(b0), replicas, N, n_save, steps, alpha, dtype, identity, save_steps
    )


def _host_obs(o, replicas):
    return np.stack(observables_on_host(o, replicas))


def observables_on_host(o: Any, replicas: int) -> list[np.ndarray]:
    """The leaves of a batch of observables ``o`` (a pytree, leaves of shape ``(padded replicas, ...)``) on
    the host, gathered from every device (:func:`jaxadv.sharding.to_host`) without the padding rows:
    a list of arrays of shape ``(replicas, ...)``, in ``jax.tree.leaves`` order."""
    return [to_host(x)[:replicas] for x in jax.tree.leaves(o)]


def start_states(plan: Plan) -> tuple[Any, Any]:
    """Initial states of all replicas and their observables, both on the devices (sharded like the keys).

    ``plan.R0`` and ``plan.b0`` are pytrees (a float for the single-layer samplers); every leaf is cast to
    the plan's dtype and handed to ``sampler.init`` (``R0`` as ``None`` when ``plan.R0`` is ``None``)."""
    cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, plan.dtype), t)
    return _init(
        plan.init_keys,
        plan.sp,
        cast(0.0 if plan.R0 is None else plan.R0),
        cast(plan.b0),
        plan.R0 is not None,
        plan.sampler,
    )


def init_states(plan: Plan) -> tuple[Any, np.ndarray]:
    """Initial states of all replicas and their observables, shape ``(5, replicas)``."""
    states, o = start_states(plan)
    return states, _host_obs(o, plan.replicas)


def dispatch(plan: Plan, states: Any, k: int) -> tuple[Any, Any]:
    """Start save interval ``k`` (steps ``k * steps`` to ``(k + 1) * steps - 1``, or ``save_steps[k]`` to
    ``save_steps[k + 1] - 1``) without waiting for it; the input states are donated. Returns the new
    states and their observables as device arrays (:func:`fetch` brings the observables to the host)."""
    if plan.save_steps is None:
        start, n = k * plan.steps, plan.steps
    else:
        start, n = int(plan.save_steps[k]), int(plan.save_steps[k + 1] - plan.save_steps[k])
    return _advance(plan.run_keys, states, plan.sp, jnp.uint32(start), jnp.uint32(n), plan.sampler)


def fetch(plan: Plan, observables: Any) -> np.ndarray:
    """The observables of :func:`dispatch` on the host, shape ``(5, replicas)`` (waits for the interval)."""
    return _host_obs(observables, plan.replicas)


def advance(plan: Plan, states: Any, k: int) -> tuple[Any, np.ndarray]:
    """Run save interval ``k`` (:func:`dispatch`, then :func:`fetch`); the input states are donated.
    Returns the new states and their observables, shape ``(5, replicas)``."""
    states, o = dispatch(plan, states, k)
    return states, fetch(plan, o)


def run_plan(plan: Plan, *, with_states: bool = False) -> Any:
    """Run every save interval of ``plan`` (no checkpoint, no progress) and return the observables: one
    array per leaf of the sampler's observables, shape ``(replicas, n_save + 1, ...)`` (leaf order of
    ``jax.tree.leaves``), then one per array of the plan's :class:`SaveMeasure`
    (:func:`jaxadv.app.checkpoint.run_resumable` is the same loop with checkpoints).

    With ``with_states``, returns ``(states, observables)``: the final states of the replicas (device
    arrays, without the padding rows of the device split) as well."""
    states, o = start_states(plan)
    obs = allocate_observables(plan, observables_on_host(o, plan.replicas))
    record(plan, obs, 0, None, states)
    for k in range(plan.n_save):
        states, o = dispatch(plan, states, k)
        record(plan, obs, k + 1, o, states)
    if with_states:
        return jax.tree.map(lambda x: x[: plan.replicas], states), obs
    return obs


def allocate_observables(plan: Plan, first: list[np.ndarray]) -> list[np.ndarray]:
    """Arrays of NaN of shape ``(replicas, n_save + 1, ...)`` (the plan's dtype), one per leaf of the
    initial observables ``first`` (:func:`observables_on_host`), with save point 0 filled in, then one per
    array of the plan's :class:`SaveMeasure` (shapes from ``plan.measure.shapes``, all NaN)."""
    obs = []
    for x in first:
        a = np.full((x.shape[0], plan.n_save + 1) + x.shape[1:], np.nan, dtype=np.dtype(plan.dtype))
        a[:, 0] = x
        obs.append(a)
    if plan.measure is not None:
        for shape in plan.measure.shapes:
            obs.append(np.full((plan.replicas, plan.n_save + 1) + tuple(shape), np.nan, dtype=np.dtype(plan.dtype)))
    return obs


def record(plan: Plan, obs: list, k: int, observables: Any, states: Any) -> None:
    """Fill save point ``k`` of ``obs`` (:func:`allocate_observables`): the sampler's ``observables`` of
    :func:`dispatch` (waits for them; ``None``: already there, as at save point 0) and, when ``k`` is one of
    its points, the plan's :class:`SaveMeasure` of ``states``."""
    if observables is not None:
        for a, x in zip(obs, observables_on_host(observables, plan.replicas), strict=False):  # then the measure's
            a[:, k] = x
    m = plan.measure
    if m is not None and k in m.points:
        for a, x in zip(obs[len(obs) - len(m.shapes) :], m.fn(k, states), strict=True):
            a[:, k] = to_host(x)[: plan.replicas]


def result(plan: Plan, obs: np.ndarray | Sequence[np.ndarray]) -> MCResult:
    """The :class:`MCResult` of observables ``obs`` of shape ``(5, replicas, n_save + 1)``."""
    R, b, norm, norm1, norm_inf = obs
    full = plan.sampler.name == "full"
    return MCResult(
        alpha=plan.alpha,
        R=R,
        b=b,
        norm=norm,
        finite=np.isfinite(R) & np.isfinite(b),
        norm1=norm1 if full else None,
        norm_inf=norm_inf if full else None,
    )


def simulate(
    key: jax.Array | int,
    params: ModelParams,
    *,
    N: int,
    alpha_max: float,
    n_save: int = N_SAVE,
    replicas: int = REPLICAS,
    rule: TrainingRule = DEFAULT_RULE,
    rule_params: dict[str, Any] | None = None,
    loss: str | Loss | None = None,
    dtype: DTypeLike = jnp.float32,
    R0: float | None = None,
    b0: float = 0.0,
    B: str | ArrayLike | None = None,
    sampler: str = "full",
    optimizer: Callable | None = None,
    save: str = "linear",
    points_per_decade: int = 10,
    alpha_min: float | None = None,
    generator: str | Generator = "jax",
) -> MCResult:
    r"""Run ``replicas`` independent simulations of on-line learning under a training rule.

    Args:
        key: PRNG key (``jax.random.key(seed)``) or an int seed; replica ``r`` uses
            ``split(key, replicas)[r]``.
        params: model parameters: scalars, or arrays broadcasting to a grid shape ``G``
            (then :func:`simulate_grid`: one ``vmap`` over the grid, arrays of shape
            ``G + (replicas, n_save + 1)``).
        N: input dimension (static).
        alpha_max: final time; the run makes ``n_save * steps_per_save`` steps
            (see :func:`save_schedule`).
        n_save: number of save intervals.
        replicas: number of independent students.
        rule: the :class:`jaxadv.TrainingRule` (default: the talk's L2 adversarial training).
        rule_params: the rule's traced parameters ``{name: value}`` (see
            :func:`jaxadv.model.rule.rule_params`; missing ones take their defaults).
        loss: loss name or :class:`jaxadv.Loss`, replacing ``rule.loss`` when given.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs ``jax_enable_x64``).
        R0: initial overlap; ``None`` draws ``w`` uniformly on the sphere.
        b0: initial bias.
        B: cluster axis: a unit vector of shape ``(N,)``, ``"first"`` (the first coordinate
            vector, the default) or ``"dense"`` (:math:`(1,\dots,1)/\sqrt N`); see
            :func:`jaxadv.model.data.cluster_axis`. Only the L-infinity and L1 attacks depend on it.
        sampler: ``"full"`` (N-dimensional vectors, cost O(N) per step) or ``"reduced"``
            (the exact O(1) description of :mod:`jaxadv.mc.reduced`: same distribution of
            ``(R, b)``; ``B`` is irrelevant there by rotation invariance, ``norm`` is 1 and
            ``norm1``/``norm_inf`` are ``None``).
        optimizer: ``optimizer(params, N) -> optax.GradientTransformation`` for the full sampler
            (default: the plain projected SGD step the ODE is derived for).
        save: ``"linear"`` (``n_save`` equal intervals) or ``"log"`` (``points_per_decade`` save
            points a decade of alpha, from ``alpha_min``, default 1/N, to ``alpha_max``;
            :mod:`jaxadv.mc.schedule`). The steps, and so the bits, do not depend on it.
        generator: the random generator of the full sampler's examples and initial weights
            (:mod:`jaxadv.generators`): ``"jax"`` (``jax.random``'s numbers bit for bit, the default) or
            ``"fast"`` (:mod:`jaxadv.fast_random`: both words of every threefry block and Box--Muller
            normals; the same law, other numbers, a faster step). Keys are the same for both, so
            chunking, resumption and sharding give identical bits with either.

    Returns:
        :class:`MCResult` (NumPy arrays). Replicas that diverge keep ``finite=False``.

    Example:
        >>> import jax
        >>> from jaxadv import ModelParams, simulate
        >>> mc = simulate(jax.random.key(0), ModelParams(), N=100, alpha_max=1.0, n_save=2, replicas=4)
        >>> mc.R.shape
        (4, 3)
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    if any(np.ndim(x) for x in params):
        return simulate_grid(
            key,
            params,
            N=N,
            alpha_max=alpha_max,
            n_save=n_save,
            replicas=replicas,
            rule=rule,
            rule_params=rule_params,
            loss=loss,
            dtype=dtype,
            R0=R0,
            b0=b0,
            B=B,
            sampler=sampler,
            optimizer=optimizer,
            generator=generator,
        )
    plan = plan_simulation(
        key,
        params,
        N=N,
        alpha_max=alpha_max,
        n_save=n_save,
        replicas=replicas,
        rule=rule,
        rule_params_=rule_params,
        loss=loss,
        dtype=dtype,
        R0=R0,
        b0=b0,
        B=B,
        sampler=sampler,
        optimizer=optimizer,
        save=save,
        points_per_decade=points_per_decade,
        alpha_min=alpha_min,
        generator=generator,
    )
    return result(plan, np.stack(run_plan(plan)))


# --- a grid of parameters: one vmap over (grid point, replica) -----------------------------------

# vmap's in_axes in SamplerParams' structure: model parameters per replica; rule and constant shared (None)
_GRID_AXES = SamplerParams(0, None, None)  # type: ignore[arg-type]


@functools.partial(jax.jit, static_argnames=("R0_given", "sampler"))
def _init_grid(init_keys, sp, R0, b0, R0_given, sampler):
    states = jax.vmap(lambda k, p: sampler.init(k, p, R0 if R0_given else None, b0), (0, _GRID_AXES))(init_keys, sp)
    return states, jax.vmap(sampler.observe, (0, _GRID_AXES))(states, sp)


@functools.partial(jax.jit, static_argnames=("sampler",), donate_argnums=(1,))
def _advance_grid(run_keys, states, sp, start, n_steps, sampler):
    def body(i, st):
        keys = jax.vmap(threefry.fold_in, (0, None))(run_keys, start + i)
        return jax.vmap(lambda k, s_, p: sampler.step(k, s_, p)[0], (0, 0, _GRID_AXES))(keys, st, sp)

    states = jax.lax.fori_loop(jnp.uint32(0), n_steps, body, states)
    return states, jax.vmap(sampler.observe, (0, _GRID_AXES))(states, sp)


def simulate_grid(key: jax.Array | int, params: ModelParams, **options: Any) -> MCResult:
    """:func:`simulate` over array-valued ``params`` (leaves broadcasting to a grid shape ``G``).

    Grid point ``i`` (flat, C order) uses ``fold_in(key, i)``, the key a sweep gives it, so its
    replicas are those of ``simulate(fold_in(key, i), params_i, ...)``. Every (point, replica) pair
    is one lane of a single ``vmap`` (one compilation for the whole grid), the lanes split over all
    devices like the replicas of :func:`simulate`.

    Returns:
        :class:`MCResult` with ``R``, ``b``, ``norm``, ``finite`` (and ``norm1``, ``norm_inf``) of
        shape ``G + (replicas, n_save + 1)`` and ``alpha`` of shape ``(n_save + 1,)``.

    Example:
        >>> import jax, numpy as np
        >>> from jaxadv import ModelParams, simulate
        >>> mc = simulate(jax.random.key(0), ModelParams(eps=np.array([0.0, 1.0])), N=50, alpha_max=1.0,
        ...               n_save=2, replicas=3)
        >>> mc.R.shape
        (2, 3, 3)
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    if has_schedule((params, options.get("rule_params_"))):
        raise ValueError("params: a grid of schedules runs one point at a time (jaxadv.simulate per point)")
    leaves = [np.asarray(x, np.float64) for x in params]
    try:
        shape = np.broadcast_shapes(*(x.shape for x in leaves))
    except ValueError:
        raise ValueError(
            "params: the array-valued parameters do not broadcast to one grid shape: "
            + ", ".join(f"{n}{x.shape}" for n, x in zip(ModelParams._fields, leaves, strict=True))
        ) from None
    flat = [np.broadcast_to(x, shape).ravel() for x in leaves]
    n = int(np.prod(shape))
    replicas = int(options.get("replicas", REPLICAS))
    plans = [
        plan_simulation(
            jax.random.fold_in(key, i),
            ModelParams(*(float(x[i]) for x in flat)),
            **{("rule_params_" if k == "rule_params" else k): v for k, v in options.items()},
        )
        for i in range(n)
    ]
    plan = plans[0]
    keys = [jax.vmap(jax.random.split)(jax.random.split(jax.random.fold_in(key, i), replicas)) for i in range(n)]
    init_keys = jnp.concatenate([k[:, 0] for k in keys])
    run_keys = jnp.concatenate([k[:, 1] for k in keys])
    model = ModelParams(*(jnp.asarray(np.repeat(x, replicas), plan.dtype) for x in flat))
    lanes = n * replicas
    # the (point, replica) lanes split over all devices (padded to a multiple of the count; no-op on one)
    init_keys, run_keys, model = shard_batch((init_keys, run_keys, model))
    sp = SamplerParams(model, plan.sp.rule, plan.sp.const)
    R0 = jnp.asarray(0.0 if plan.R0 is None else plan.R0, plan.dtype)
    states, o = _init_grid(init_keys, sp, R0, jnp.asarray(plan.b0, plan.dtype), plan.R0 is not None, plan.sampler)
    obs = np.full((5, lanes, plan.n_save + 1), np.nan, dtype=np.dtype(plan.dtype))
    obs[:, :, 0] = np.stack(observables_on_host(o, lanes))
    for k in range(plan.n_save):
        states, o = _advance_grid(
            run_keys, states, sp, jnp.uint32(k * plan.steps), jnp.uint32(plan.steps), plan.sampler
        )
        obs[:, :, k + 1] = np.stack(observables_on_host(o, lanes))
    res = result(plan, obs)
    grid = lambda a: None if a is None else a.reshape(shape + (replicas, plan.n_save + 1))
    # a field that is None (norm1, norm_inf of the reduced sampler) stays None
    return res._replace(**{f: grid(getattr(res, f)) for f in MCResult._fields if f != "alpha"})  # type: ignore[arg-type]
