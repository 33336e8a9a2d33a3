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

import jax.numpy as jnp
import numpy as np

from .optimise import OptimiseResult, budget_weights, objective_of, optimise

__all__ = ["Protocol", "PROTOCOLS", "compare_protocols"]

PROTOCOLS = ("optimal", "constant", "ramp")


class Protocol(NamedTuple):
    """One protocol: its ``name``, knot ``values`` (shape ``(names, knots)``), ODE trajectory ``alpha`` and order
    parameters ``order`` (``{column: array over alpha}``: ``R``, ``b`` for the unit; ``Q_1_1``, ``R_1_1``, ...
    for a committee), the clean and robust (``eps_test``) errors and the objective along it (``test_error``,
    ``robust_error``, ``objective_path``), and the final ``objective``."""

    name: str
    values: np.ndarray
    alpha: np.ndarray
    order: dict
    test_error: np.ndarray
    robust_error: np.ndarray
    objective_path: np.ndarray
    objective: float


def _protocol(problem: Any, name: str, values: Any, evaluate: Any = None) -> Protocol:
    values = np.asarray(values, float)
    p = problem.path(values)
    J = objective_of(problem, values) if evaluate is None else evaluate(jnp.asarray(values))[0]
    return Protocol(name, values, p.alpha, p.order, p.clean, p.robust, p.objective, float(J))


def compare_protocols(problem: Any, result: OptimiseResult, **options: Any) -> dict[str, Protocol]:
    """``{name: Protocol}`` of :data:`PROTOCOLS` for an :func:`optimise` ``result`` of ``problem`` (any student's);
    ``options`` go to the optimisation of the best constant (``tied``: one value a parameter, on the result's
    compiled objective)."""
    c = problem.controls
    n = len(c.knots)
    tied = optimise(problem, tied=True, evaluate=result.evaluate, **{"starts": 2, **options})
    constant = np.repeat(tied.values, n, axis=1)
    ramp = constant.copy()
    if "eps" in c.names:
        i = c.names.index("eps")
        mean = float(budget_weights(c.knots) @ result.values[i])
        ramp[i] = np.clip(2.0 * mean * np.asarray(c.knots) / c.knots[-1], c.lower[i], c.upper[i])
    runs = {"optimal": result.values, "constant": constant, "ramp": ramp}
    return {name: _protocol(problem, name, v, result.evaluate) for name, v in runs.items()}
