r"""The gradient of a protocol's objective by the costate (Pontryagin's adjoint) equations.

For :math:`\dot y = F(y, \theta(\alpha; v))` on :math:`[0, T]` and :math:`J = \Phi(y(T))`, the costate
:math:`\lambda(\alpha)` solves

.. math::
    \dot\lambda = -\Big(\frac{\partial F}{\partial y}\Big)^{\!\top}\lambda,\qquad \lambda(T) = \nabla\Phi(y(T)),
    \qquad \frac{dJ}{dv} = \int_0^T \lambda^\top\,\frac{\partial F}{\partial v}\,d\alpha .

:func:`costate_gradient` integrates :math:`(y, \lambda, g)` backwards from :math:`T` with RK4 on the
forward solve's step (:math:`\dot g = -\lambda^\top\partial F/\partial v`, :math:`g(T) = 0`, so
:math:`g(0) = dJ/dv`), the two products :math:`\lambda^\top\partial F/\partial(y, v)` from one
:func:`jax.vjp`. It is the continuous adjoint, independent of the reverse-mode differentiation of the
discrete solve (:func:`jax.grad` through :func:`jaxadv.ode.solve.unit_trajectory`): the two agree to the
RK4 discretisation error.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..model.rule import rule_params as make_rule_params
from ..ode.rk4 import integrate
from ..ode.vector_field import vector_field
from ..schedule import at

__all__ = ["costate_gradient"]


def costate_gradient(problem: Any, values: Any) -> jax.Array:
    """:math:`dJ/dv` of :func:`jaxadv.control.optimise.objective_of` by the costate equations (module
    docstring), shape of ``values``. ``problem.plan`` must be a fixed step with equal save intervals."""
    plan = problem.plan
    if plan.adaptive or plan.save_alpha is not None:
        raise ValueError("costate_gradient needs a fixed step with equal save intervals (plan_steps without rtol)")
    values = jnp.asarray(values, jnp.float64)
    _, R, b = problem.trajectory(values)
    yT = jnp.stack([R[-1], b[-1]])
    lamT = jax.grad(lambda y: problem.objective.fn(y[0], y[1], problem.params))(yT)
    field = vector_field(problem.rule)
    rp = make_rule_params(problem.rule, jnp.float64, **(problem.rule_params or {}))
    T = plan.alpha_max

    def F(t, y, v):
        params = at(problem.scheduled(v), t)
        return field(t, y, (params, rp))

    def backward(s, state, _):
        # time runs backwards: t = T - s
        y, lam, g = state
        t = T - s
        f, vjp = jax.vjp(lambda yy, vv: F(t, yy, vv), y, values)
        lam_J, lam_Fv = vjp(lam)
        return (-f, lam_J, lam_Fv)

    g0 = jnp.zeros_like(values)
    steps = plan.steps_per_save * plan.n_save
    _, states = integrate(backward, (yT, lamT, g0), 0.0, plan.h, steps, 1, None)
    return states[2][-1]
