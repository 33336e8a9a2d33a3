r"""Gates: which training examples update the student, each a record with two faces.

A :class:`Gate` has a **mask face** for the Monte Carlo, ``open(x, tau, eps) -> bool`` on the
clean pre-activation :math:`x = w\cdot\xi - b` (the student is left unchanged where it is
closed), and a **truncation face** for the ODE, ``margin_cut(eps) -> c``: the gate is open
exactly where the clean margin :math:`\tau x < c`, so the ODE integrates the Gaussian law of
the field on one side of the cut. ``open=None`` is the gate that is always open (every
example updates; the engines then skip the mask). A new gate is one record here, added to
:data:`GATES`.

=============  ===================================================================  ====================
name           open where                                                           ODE face
=============  ===================================================================  ====================
``none``       always                                                               (no truncation)
``nonrobust``  :math:`\tau x<\epsilon`: the example is not :math:`\epsilon`-robust  cut :math:`c=\epsilon`
=============  ===================================================================  ====================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..typing import Real
from .params import Param

__all__ = ["Gate", "ALWAYS", "NONROBUST", "GATES", "get_gate", "nonrobust_gate"]


class Gate(NamedTuple):
    """A gate (see the module docstring for the faces).

    Attributes:
        name: registry name (``gate=`` in configurations; ``nonrobust_only=true`` is ``gate="nonrobust"``).
        open: ``open(x, tau, eps) -> bool`` on the clean field, or ``None`` (always open).
        margin_cut: ``margin_cut(eps) -> c`` (open where :math:`\\tau x < c`), or ``None``
            (always open, or no ODE face when ``open`` is given).
        params: the :class:`jaxadv.model.params.Param` s it reads.
    """

    name: str
    open: Callable | None = None
    margin_cut: Callable | None = None
    params: tuple[Param, ...] = ()


def nonrobust_gate(x: jax.Array, tau: float | jax.Array, eps: Real) -> jax.Array:
    r""":math:`g=\Theta(\epsilon-\tau x)`: 1 when the clean field ``x`` is not :math:`\epsilon`-robust
    (an L2 perturbation of norm :math:`\le\epsilon` can make :math:`\tau x\le 0`), else 0."""
    return (tau * x < eps).astype(jnp.result_type(x, float))


ALWAYS = Gate(name="none")
NONROBUST = Gate(name="nonrobust", open=lambda x, tau, eps: nonrobust_gate(x, tau, eps) > 0, margin_cut=lambda eps: eps)

GATES = {g.name: g for g in (ALWAYS, NONROBUST)}


def get_gate(name_or_gate: str | Gate) -> Gate:
    """Look a gate up by name (or pass a :class:`Gate` through)."""
    if isinstance(name_or_gate, Gate):
        return name_or_gate
    try:
        return GATES[name_or_gate]
    except (KeyError, TypeError):
        raise ValueError(f"gate={name_or_gate!r} is not one of {list(GATES)}") from None
