r"""Protocol problems on the committee's ODE: the same controls, objectives, optimiser and protocols as the
unit's (:mod:`jaxadv.control.optimise`), with the committee's order parameters :math:`(Q, R, b, v)` as the
state and its error measures (:mod:`jaxadv.committee.measures`) in the objective

.. math::
    \Phi(Q, R, b, v) = w_\text{clean}\,\mathcal E + w_\text{robust}\,S(\epsilon_\text{test})
        + w_\text{auc}\,\frac{1}{\epsilon_\text{auc}}\int_0^{\epsilon_\text{auc}} S(\epsilon)\,d\epsilon
        + w_\text{radii}\,\frac1{|E|}\sum_{\epsilon\in E} S(\epsilon)

(:meth:`jaxadv.control.objective.Objective.combine`). Its gradient with respect to the schedules' knot values
goes through the fixed-step RK4 of :func:`jaxadv.committee.ode.committee_trajectory` (each step under
:func:`jax.checkpoint`) and through the error measures: the clean error's bisected threshold carries the
implicit-function derivative (:func:`jaxadv.committee.measures.implicit_root`), and the robust error's
maximum over the ball is differentiated at its maximiser (the envelope theorem: the ball is parametrised
on the unit sphere, a fixed set). Both are checked against central differences in ``tests/test_control.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..committee.measures import clean_error, columns, robust_error
from ..committee.ode import CommitteeState, committee_trajectory
from ..committee.params import CommitteeParams, CommitteeSpec, Mixture
from ..committee.quadrature import GaussRule
from ..ode.solve import StepPlan
from ..schedule import Schedule
from .objective import Objective
from .optimise import Controls, Path

__all__ = ["CommitteeControl", "COMMITTEE_SCHEDULABLE", "committee_objective"]

COMMITTEE_SCHEDULABLE = tuple(CommitteeParams._fields)
"""The committee's rule parameters a protocol may control (every :class:`jaxadv.committee.CommitteeParams` float)."""


def committee_objective(
    objective: Objective, state: CommitteeState, mixture: Mixture, rule: GaussRule | None = None
) -> jax.Array:
    r""":math:`\Phi` (module docstring) of one committee state; ``rule``: the measures' outer quadrature
    (default :func:`jaxadv.committee.measures.measure_rule`)."""

    def S(eps: jax.Array) -> jax.Array:
        flat = jnp.reshape(eps, (-1,))
        return jax.vmap(lambda e: robust_error(state, mixture, e, rule))(flat).reshape(jnp.shape(eps))

    return objective.combine(S, clean=lambda: clean_error(state, mixture, rule))


class CommitteeControl(NamedTuple):
    """A protocol problem on the committee's ODE: the data ``mixture``, the rule's fixed parameters ``params``,
    the static ``spec``, the fixed-step ``plan`` (:func:`jaxadv.ode.solve.plan_steps`), the ODE's quadrature
    ``rule`` (e.g. the one :func:`jaxadv.committee.solve_committee_ode` chose for the constant schedule:
    ``result.quadrature.rule``), the start ``y0``, the ``objective`` and the ``controls``; ``measure_rule``:
    the error measures' quadrature (default by K)."""

    mixture: Mixture
    params: CommitteeParams
    spec: CommitteeSpec
    plan: StepPlan
    rule: GaussRule
    y0: CommitteeState
    objective: Objective
    controls: Controls
    measure_rule: GaussRule | None = None

    @property
    def schedulable(self) -> tuple[str, ...]:
        """The parameters this student's protocol may control (:data:`COMMITTEE_SCHEDULABLE`)."""
        return COMMITTEE_SCHEDULABLE

    def scheduled(self, values: Any) -> CommitteeParams:
        """``params`` with each controlled field the schedule of its row of ``values`` (shape ``(names, knots)``)."""
        sched: dict[str, Any] = {n: Schedule(self.controls.knots, values[i]) for i, n in enumerate(self.controls.names)}
        return self.params._replace(**sched)

    def trajectory(self, values: Any) -> tuple[jax.Array, CommitteeState]:
        """``(alpha, states)`` of the ODE under the schedules ``values`` (states with a leading time axis)."""
        return committee_trajectory(self.mixture, self.scheduled(values), self.spec, self.plan, self.rule, self.y0)

    def value(self, values: Any) -> jax.Array:
        """:math:`J(v) = \\Phi(Q, R, b, v)` at the end of the run under the schedules ``values``."""
        _, ys = self.trajectory(values)
        final = CommitteeState(*(z[-1] for z in ys))
        return committee_objective(self.objective, final, self.mixture, self.measure_rule)

    def path(self, values: Any) -> Path:
        """The :class:`jaxadv.control.optimise.Path` of the ODE under the schedules ``values`` (the order
        parameters as the columns of ``ode.csv``)."""
        alpha, traj = self.trajectory(values)
        ys: Any = tuple(np.asarray(z) for z in traj)
        order = columns(_Traj(np.asarray(alpha), *ys), self.mixture, errors=False)
        order.pop("alpha")
        states = [CommitteeState(*(jnp.asarray(z[i]) for z in ys)) for i in range(len(alpha))]
        rule, eps = self.measure_rule, self.objective.eps_test
        clean = np.array([float(clean_error(s, self.mixture, rule)) for s in states])
        robust = np.array([float(robust_error(s, self.mixture, eps, rule)) for s in states])
        phi = np.array([float(committee_objective(self.objective, s, self.mixture, rule)) for s in states])
        return Path(np.asarray(alpha), order, clean, robust, phi)


class _Traj(NamedTuple):
    alpha: Any
    Q: Any
    R: Any
    b: Any
    v: Any
