r"""Evaluation measures: test error and eps-robust error, exact at any N.

For a student with :math:`\|w\|=1`, the clean pre-activation is
:math:`x\mid\tau\sim\mathcal N(\tau\rho R/2 - b, v_\tau)` exactly. The decision is
:math:`\operatorname{sign}(x)`; the smallest L2 perturbation that reaches the decision
boundary has norm :math:`|x|`. Hence, with :math:`\Phi` the standard normal CDF,

.. math::
    \mathcal E(R,b) = p\,\Phi\Big(\frac{b-\rho R/2}{\sqrt{v_1}}\Big)
                 + (1-p)\,\Phi\Big(\frac{-b-\rho R/2}{\sqrt{v_2}}\Big),

.. math::
    S(R,b,\epsilon) = p\,\Phi\Big(\frac{\epsilon+b-\rho R/2}{\sqrt{v_1}}\Big)
                 + (1-p)\,\Phi\Big(\frac{\epsilon-b-\rho R/2}{\sqrt{v_2}}\Big),

the talk's :math:`p\langle\Theta(\epsilon-x)\rangle_1 + (1-p)\langle\Theta(x+\epsilon)\rangle_2`.
:math:`S(R,b,0)=\mathcal E(R,b)` and :math:`S` increases with :math:`\epsilon`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from ..model.params import ModelParams
from ..typing import Real

__all__ = ["test_error", "robust_error"]


def robust_error(R: Real, b: Real, eps_test: Real, params: ModelParams) -> jax.Array:
    r""":math:`S(R, b, \epsilon_\text{test})`: probability that some perturbation of L2 norm
    :math:`\le\epsilon_\text{test}` makes a clean example misclassified. Broadcasts."""
    half = params.rho * R / 2
    # a NumPy leaf times a jax.Array is a jax.Array at run time (JAX's __array_priority__), which NumPy's
    # type information does not know
    return params.prior * ndtr((eps_test + b - half) / jnp.sqrt(params.v1)) + (1 - params.prior) * ndtr(  # type: ignore[return-value]
        (eps_test - b - half) / jnp.sqrt(params.v2)
    )


def test_error(R: Real, b: Real, params: ModelParams) -> jax.Array:
    r""":math:`\mathcal E(R,b) = S(R,b,0)`, the clean classification error. Broadcasts."""
    return robust_error(R, b, 0.0, params)


# not a pytest test (a function object has no declared attributes for mypy)
test_error.__test__ = False  # type: ignore[attr-defined]
