"""Type aliases of jaxadv's public API, for annotations (the JAX ones come from :mod:`jax.typing`).

``jax.typing.ArrayLike`` is what a function that converts its input first (``jnp.asarray``) accepts;
a function that computes with its inputs directly (``params.rho * R / 2``) takes :data:`Real`, the
values whose arithmetic stays real (``ArrayLike`` also admits ``bool`` and ``complex``).
"""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np

__all__ = ["Real", "Norm"]

Real: TypeAlias = float | jax.Array | np.ndarray
"""A real number or an array of them: a Python float (or int), a JAX array (traced or concrete) or a
NumPy array (the Monte Carlo's results). Functions that take it broadcast over its shape."""

Norm: TypeAlias = float | str
"""The norm of a threat model: 1, 2 or inf, as a number (``np.inf``) or a name (``"inf"``, ``"l2"``, ...);
:func:`jaxadv.attacks.canonical_norm` reads it."""
