r"""The learning rule: on-line SGD on the adversarial example, with normalised weights.

For one example :math:`(\xi,\tau)` the student :math:`(w, b)` is attacked first,
:math:`\tilde\xi = \xi - \tau\epsilon w`, and then takes a gradient step *at fixed
perturbation* (the gradient does not flow through :math:`\tilde\xi`):

.. math::
    w \leftarrow \frac{w - \frac{\eta_w}{N}\nabla_w L}{\|w - \frac{\eta_w}{N}\nabla_w L\|},\qquad
    b \leftarrow b - \frac{\eta_b}{N}\,\frac{\partial L}{\partial b},\qquad
    L = L(w\cdot\tilde\xi - b,\ \tau).

The step is expressed with optax: plain SGD with one learning rate per parameter
(``optax.partition``) followed by the projection of ``w`` on the unit sphere
(``optax.projections.projection_l2_sphere``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .losses import Loss, loss_value
from .params import ModelParams
from .rule import DEFAULT_RULE, TrainingRule, perturb_example

__all__ = ["Student", "student_optimizer", "example_loss", "train_step", "sgd_step"]


class Student(NamedTuple):
    """The erf student :math:`\\sigma(\\xi)=\\operatorname{erf}(w\\cdot\\xi - b)`.

    Attributes:
        w: weights, shape ``(N,)``, unit L2 norm.
        b: bias, shape ``()``.
    """

    w: jax.Array
    b: jax.Array


def student_optimizer(params: ModelParams, N: int) -> optax.GradientTransformation:
    r"""SGD with step :math:`\eta_w/N` on ``w`` and :math:`\eta_b/N` on ``b`` (learning rates may be traced)."""
    return optax.partition(
        {"w": optax.sgd(params.eta_w / N), "b": optax.sgd(params.eta_b / N)},
        # the labels: a tree of Student's structure with a string per leaf (not a Student of arrays)
        Student(w="w", b="b"),  # type: ignore[arg-type]
    )


def example_loss(
    student: Student, xi_adv: jax.Array, tau: float | jax.Array, loss: Loss, rp: dict | None = None
) -> jax.Array:
    r""":math:`L(w\cdot\tilde\xi - b, \tau)` for one (already perturbed) example (``rp``: the rule's
    parameters, for a loss that reads some)."""
    return loss_value(loss, jnp.dot(student.w, xi_adv) - student.b, tau, rp)


def train_step(
    opt: optax.GradientTransformation,
    student: Student,
    opt_state: Any,
    xi: jax.Array,
    tau: float | jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    key: jax.Array | None = None,
) -> tuple[Student, Any]:
    r"""One step of the training rule on one example ``(xi, tau)`` with the optax transform ``opt``.

    The example is perturbed by the rule (:func:`jaxadv.model.rule.perturb_example`, gradient
    stopped at the perturbation), the loss gradient goes through ``opt`` (whose state is carried:
    a stateful optimiser keeps its state), ``w`` is projected back on the unit sphere and, where the
    rule's gate is closed, student and state stay as they were.

    Returns:
        ``(student, opt_state)``.
    """
    xi_adv, gate = perturb_example(key, student, xi, tau, params, rule, rp)
    xi_adv = jax.lax.stop_gradient(xi_adv)
    grads = jax.grad(example_loss)(student, xi_adv, tau, rule.loss, rp)
    updates, new_state = opt.update(grads, opt_state, student)
    new = optax.apply_updates(student, updates)
    new = Student(w=optax.projections.projection_l2_sphere(new.w), b=new.b)
    if gate is not None:
        keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(gate, x, y), a, b)
        new, new_state = keep(new, student), keep(new_state, opt_state)
    return new, new_state


def sgd_step(
    student: Student,
    xi: jax.Array,
    tau: float | jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    key: jax.Array | None = None,
) -> Student:
    """The plain projected SGD step the ODE is derived for (:func:`student_optimizer`, no state);
    returns the new student. Rules that draw random numbers need ``key``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxadv import ModelParams, Student, sgd_step
        >>> st = Student(w=jnp.array([1.0, 0.0]), b=jnp.asarray(0.0))
        >>> new = sgd_step(st, jnp.array([0.5, 0.2]), 1.0, ModelParams())
        >>> round(float(jnp.linalg.norm(new.w)), 6)
        1.0
    """
    opt = student_optimizer(params, xi.shape[-1])
    return train_step(opt, student, opt.init(student), xi, tau, params, rule, rp, key)[0]
