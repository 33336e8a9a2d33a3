r"""The three protocols :func:`jaxadv.control.optimise.optimise`'s result is judged against, on the same ODE:

* **optimal**: the optimised knot values;
* **constant**: the best constant schedule of the same budget (with a budget on ``eps``, ``eps`` is the
  budget; every other controlled parameter is optimised as one number);
* **ramp**: ``eps`` rising linearly from 0 at :math:`\alpha = 0` to twice the optimal schedule's mean at
  :math:`\alpha_\max` (the same mean, clipped to the box), the other controlled parameters at their best
  constants.

:func:`compare_protocols` returns each one's knot values, trajectory, final errors and objective.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..analysis.measures import robust_error
from .optimise import Controls, OptimiseResult, Problem, budget_weights, objective_of, optimise

__all__ = ["Protocol", "PROTOCOLS", "compare_protocols"]

PROTOCOLS = ("optimal", "constant", "ramp")


class Protocol(NamedTuple):
    """One protocol: its ``name``, knot ``values`` (shape ``(names, knots)``), ODE trajectory ``alpha``, ``R``,
    ``b``, the clean and robust (``eps_test``) errors along it, and the final ``objective``."""

    name: str
    values: np.ndarray
    alpha: np.ndarray
    R: np.ndarray
    b: np.ndarray
    test_error: np.ndarray
    robust_error: np.ndarray
    objective: float


def _protocol(problem: Problem, name: str, values: Any) -> Protocol:
    values = np.asarray(values, float)
    alpha, R, b = (np.asarray(x) for x in problem.trajectory(values))
    p, e = problem.params, problem.objective.eps_test
    clean, robust = (np.asarray(robust_error(R, b, x, p)) for x in (0.0, e))
    return Protocol(name, values, alpha, R, b, clean, robust, float(objective_of(problem, values)))


def compare_protocols(problem: Problem, result: OptimiseResult, **options: Any) -> dict[str, Protocol]:
    """``{name: Protocol}`` of :data:`PROTOCOLS` for an :func:`optimise` ``result`` of ``problem``; ``options``
    go to the optimisation of the best constant (one knot)."""
    c = problem.controls
    n = len(c.knots)
    one = Controls(c.names, (0.0,), c.lower, c.upper, c.budget)
    const = optimise(problem._replace(controls=one), **{"starts": 2, **options}).values  # (names, 1)
    constant = np.repeat(const, n, axis=1)
    ramp = constant.copy()
    if "eps" in c.names:
        i = c.names.index("eps")
        mean = float(budget_weights(c.knots) @ result.values[i])
        ramp[i] = np.clip(2.0 * mean * np.asarray(c.knots) / c.knots[-1], c.lower[i], c.upper[i])
    return {
        "optimal": _protocol(problem, "optimal", result.values),
        "constant": _protocol(problem, "constant", constant),
        "ramp": _protocol(problem, "ramp", ramp),
    }
