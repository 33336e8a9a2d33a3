r"""The full Monte Carlo sampler: one replica in N dimensions, as a pure ``(init, step)`` pair.

A step :math:`\mu\to\mu+1` draws :math:`(\xi,\tau)` from the prototype model
(:func:`jaxadv.model.data.sample_example`, with ``split(key)``) and applies the training rule
(:func:`jaxadv.model.student.train_step`; the rule's random numbers use ``fold_in(key, 2)``,
a counter ``split`` does not use). The state carries the optimiser's state, so a stateful
optax transform keeps it; the default is the plain projected SGD step the ODE is derived for.

Both samplers (this one and :func:`jaxadv.mc.reduced.reduced_sampler`) share the interface

.. code-block:: python

    sampler = full_sampler(rule)
    state = sampler.init(key, sp, R0, b0)           # one replica; R0=None: w uniform on the sphere
    state, obs = sampler.step(key, state, sp)        # one on-line step, obs: Observables
    obs = sampler.observe(state, sp)

with ``sp`` a :class:`SamplerParams` (model parameters, the rule's parameter dict and the
sampler's constant: the cluster axis B for this sampler).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from .. import threefry
from ..generators import JAX, Generator, get_generator
from ..model.data import sample_example
from ..model.params import ModelParams
from ..model.rule import DEFAULT_RULE, TrainingRule
from ..model.student import Student, student_optimizer, train_step

#: the model parameters a sampler reads (ModelParams for the unit; the pair and committee samplers have theirs)
P = TypeVar("P")
#: the static rule a sampler applies (TrainingRule for the unit)
RuleT = TypeVar("RuleT")

__all__ = [
    "SamplerParams",
    "Observables",
    "Sampler",
    "FullState",
    "full_sampler",
    "init_replica",
    "observe",
    "observe_norms",
]


class SamplerParams(NamedTuple, Generic[P]):
    """The dynamic inputs of a sampler's step (a pytree; ``vmap``-able over a grid).

    Attributes:
        model: :class:`jaxadv.ModelParams` (scalars of the state's dtype).
        rule: the rule's parameter dict (:func:`jaxadv.model.rule.rule_params`).
        const: the sampler's constant: the cluster axis B, shape ``(N,)`` (full), or N as a
            scalar (reduced).
    """

    model: P
    rule: dict[str, jax.Array]
    const: jax.Array


class Observables(NamedTuple):
    """Order parameters of one replica (scalars; NaN where the sampler does not represent them).

    Attributes:
        R: :math:`w\\cdot B`. b: bias. norm: :math:`\\|w\\|`. norm1: :math:`\\|w\\|_1`.
        norm_inf: :math:`\\|w\\|_\\infty`.
    """

    R: jax.Array
    b: jax.Array
    norm: jax.Array
    norm1: jax.Array
    norm_inf: jax.Array


class Sampler(NamedTuple, Generic[RuleT]):
    """A Monte Carlo kernel for one replica (static; hashable for ``jit``).

    Attributes:
        name: ``"full"`` or ``"reduced"``.
        init: ``init(key, sp, R0, b0) -> state`` (``R0=None``: uniform ``w``).
        step: ``step(key, state, sp) -> (state, Observables)``.
        observe: ``observe(state, sp) -> Observables``.
        rule: the :class:`jaxadv.TrainingRule` it applies.
    """

    name: str
    init: Callable
    step: Callable
    observe: Callable
    rule: RuleT


class FullState(NamedTuple):
    """State of one replica: the student (``w`` of shape ``(N,)``, ``b``) and the optimiser's state."""

    student: Student
    opt_state: object


def init_replica(
    key: jax.Array,
    B: jax.Array,
    R0: float | jax.Array | None = None,
    b0: float | jax.Array = 0.0,
    generator: str | Generator = JAX,
) -> Student:
    r"""Initial student: :math:`w` uniform on the unit sphere, or with overlap :math:`R_0`
    (:math:`w = R_0 B + \sqrt{1-R_0^2}\,u_\perp`, :math:`u_\perp` uniform on the sphere orthogonal to B),
    from N normals of ``generator`` (:mod:`jaxadv.generators`)."""
    u = get_generator(generator).normal(key, B.shape, B.dtype)
    if R0 is None:
        w = u / jnp.linalg.norm(u)
    else:
        perp = u - jnp.dot(u, B) * B
        perp = perp / jnp.linalg.norm(perp)
        w = R0 * B + jnp.sqrt(1 - R0 * R0) * perp
    return Student(w=w, b=jnp.asarray(b0, B.dtype))


def observe_norms(student: Student) -> tuple[jax.Array, jax.Array]:
    """``(|w|_1, |w|_inf)`` of one student: the dual norms of the L-infinity and L1 threats."""
    return jnp.sum(jnp.abs(student.w)), jnp.max(jnp.abs(student.w))


def observe(student: Student, B: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(R, b, |w|)`` of one student."""
    return jnp.dot(student.w, B), student.b, jnp.linalg.norm(student.w)


def full_sampler(
    rule: TrainingRule = DEFAULT_RULE, optimizer: Callable | None = None, generator: str | Generator = "jax"
) -> Sampler[TrainingRule]:
    """The N-dimensional sampler of ``rule``.

    Args:
        rule: the training rule (any rule: every part has a Monte Carlo face).
        optimizer: ``optimizer(params, N) -> optax.GradientTransformation`` (static; default
            :func:`jaxadv.model.student.student_optimizer`, the plain SGD the ODE describes).
            Its state is carried in :class:`FullState`.
        generator: the random generator of the examples and the initial weights, a name of
            :data:`jaxadv.generators.GENERATORS` or a record: ``"jax"`` (``jax.random``'s numbers,
            the default) or ``"fast"`` (:mod:`jaxadv.fast_random`: same law, other numbers, cheaper).

    Equal arguments give the same (cached) sampler, so ``jit`` compiles each rule once.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxadv import ModelParams, full_sampler
        >>> from jaxadv.mc.full import SamplerParams
        >>> s = full_sampler()
        >>> sp = SamplerParams(ModelParams(), {}, jnp.zeros(50).at[0].set(1.0))
        >>> st = s.init(jax.random.key(0), sp, None, 0.0)
        >>> st, obs = s.step(jax.random.key(1), st, sp)
        >>> round(float(obs.norm), 5)
        1.0
    """
    return _full_sampler(rule, optimizer, get_generator(generator))


@functools.cache
def _full_sampler(rule: TrainingRule, optimizer: Callable | None, gen: Generator) -> Sampler[TrainingRule]:
    make_opt = student_optimizer if optimizer is None else optimizer

    def _observe(state: FullState, sp: SamplerParams[ModelParams]) -> Observables:
        B = sp.const
        return Observables(*observe(state.student, B), *observe_norms(state.student))

    def init(key: jax.Array, sp: SamplerParams[ModelParams], R0: float | None = None, b0: float = 0.0) -> FullState:
        student = init_replica(key, sp.const, R0, b0, gen)
        return FullState(student, make_opt(sp.model, sp.const.shape[-1]).init(student))

    def step(key: jax.Array, state: FullState, sp: SamplerParams[ModelParams]) -> tuple[FullState, Observables]:
        B = sp.const
        xi, tau = sample_example(key, sp.model, B, gen)
        opt = make_opt(sp.model, B.shape[-1])
        student, opt_state = train_step(
            opt, state.student, state.opt_state, xi, tau, sp.model, rule, sp.rule, threefry.fold_in(key, 2)
        )
        new = FullState(student, opt_state)
        return new, _observe(new, sp)

    return Sampler("full", init, step, _observe, rule)
