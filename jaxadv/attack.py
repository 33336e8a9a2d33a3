r"""Adversarial perturbations.

For the linear pre-activation :math:`x = w\cdot\xi - b` with :math:`\|w\|_2 = 1`, the
worst case L2 perturbation of norm at most :math:`\epsilon` moves the example
against its label along the weights,

.. math::
    \tilde\xi = \xi - \tau\,\epsilon\, w, \qquad \tilde x = w\cdot\tilde\xi - b = x - \tau\epsilon .

Both forms are given: :func:`l2_attack` acts on N-dimensional inputs (Monte Carlo),
:func:`l2_attack_field` on the scalar pre-activation (ODE, reduced descriptions).
"""
from __future__ import annotations

__all__ = ["l2_attack", "l2_attack_field"]


def l2_attack(xi, tau, w, eps):
    r"""Worst-case L2 perturbation :math:`\tilde\xi = \xi - \tau\epsilon w` (``w`` of unit norm)."""
    return xi - tau * eps * w


def l2_attack_field(x, tau, eps):
    r"""The same attack seen through the pre-activation: :math:`\tilde x = x - \tau\epsilon`."""
    return x - tau * eps
