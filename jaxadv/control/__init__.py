r"""Optimal adversarial-training protocols: the schedule of the training rule's parameters as an optimal
control problem on the order-parameter ODEs.

The controls are the knot values of piecewise-linear schedules (:class:`jaxadv.schedule.Schedule`) of
some of the rule's parameters (``eps``, ``eta_w``, ``eta_b``; a committee's ``eta_v``); the objective is a
function of the final order parameters (:mod:`jaxadv.control.objective`); its gradient comes from reverse-mode
differentiation through the RK4 solve (:func:`jaxadv.ode.solve.unit_trajectory`; a committee's,
:class:`jaxadv.control.committee.CommitteeControl`, through
:func:`jaxadv.committee.ode.committee_trajectory`), checked against the costate (Pontryagin) integration of
:mod:`jaxadv.control.adjoint`; :mod:`jaxadv.control.optimise` runs projected optimisers (spectral projected
gradient, optax's Adam) from several starts, with box constraints and an optional budget on the mean of
``eps``; :mod:`jaxadv.control.protocols` compares the optimum with the best constant and a ramp, and
:mod:`jaxadv.control.mnist` applies the model's schedule on MNIST. ``plan_steps`` (the ODE's step plan,
:func:`jaxadv.ode.solve.plan_steps`) is re-exported for building a :class:`Problem`.
Derivations: ``docs/theory.md`` §16.
"""

from ..ode.solve import plan_steps
from .adjoint import costate_gradient
from .committee import CommitteeControl, committee_objective
from .mnist import mnist_schedule
from .objective import Objective, make_objective
from .optimise import Controls, OptimiseResult, Problem, objective_of, optimise, project
from .protocols import PROTOCOLS, Protocol, compare_protocols

__all__ = [
    "Objective",
    "make_objective",
    "Controls",
    "Problem",
    "CommitteeControl",
    "committee_objective",
    "OptimiseResult",
    "optimise",
    "objective_of",
    "project",
    "costate_gradient",
    "Protocol",
    "PROTOCOLS",
    "compare_protocols",
    "mnist_schedule",
    "plan_steps",
]
