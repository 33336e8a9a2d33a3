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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .attack import l2_attack
from .losses import Loss
from .params import ModelParams

__all__ = ["Student", "student_optimizer", "example_loss", "sgd_step"]


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
        Student(w="w", b="b"),
    )


def example_loss(student: Student, xi_adv, tau, loss: Loss):
    r""":math:`L(w\cdot\tilde\xi - b, \tau)` for one (already perturbed) example."""
    return loss.value(jnp.dot(student.w, xi_adv) - student.b, tau)


def sgd_step(student: Student, xi, tau, params: ModelParams, loss: Loss, options=None, key=None) -> Student:
    """One adversarial-training step on one example ``(xi, tau)``; returns the new student.

    ``options`` (a :class:`jaxadv.variants.TrainingOptions`, default ``None``: L2 attack at
    ``params.eps``) selects a training variant; variants that draw random numbers (randomised
    eps, noise) need ``key``. With ``nonrobust_only`` the student is returned unchanged on
    examples that are eps-robust.
    """
    N = xi.shape[-1]
    gate = None
    if options is None:
        xi_adv = jax.lax.stop_gradient(l2_attack(xi, tau, student.w, params.eps))
    else:
        from .variants import perturb_example

        xi_adv, gate = perturb_example(key, student, xi, tau, params, options)
        xi_adv = jax.lax.stop_gradient(xi_adv)
    grads = jax.grad(example_loss)(student, xi_adv, tau, loss)
    opt = student_optimizer(params, N)
    updates, _ = opt.update(grads, opt.init(student), student)
    new = optax.apply_updates(student, updates)
    new = Student(w=optax.projections.projection_l2_sphere(new.w), b=new.b)
    if gate is not None:
        new = Student(w=jnp.where(gate, new.w, student.w), b=jnp.where(gate, new.b, student.b))
    return new
