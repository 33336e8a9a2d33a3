r"""K-dimensional Gaussian averages by a tensor-product composite Gauss--Legendre rule.

For :math:`x\sim\mathcal N(m, C)` with :math:`C = LL^\top` (:math:`L=U\Lambda^{1/2}` from the
eigen-decomposition, clipped eigenvalues giving zero columns, :func:`jaxadv.committee.fields.geometry`):

.. math::
    \langle f(x)\rangle = \int f(m+Lt)\prod_{i=1}^{K}\frac{e^{-t_i^2/2}}{\sqrt{2\pi}}\,dt
    \approx\sum_{n} W_n\, f(m+Lt_n),

with nodes :math:`t_n` the tensor product of a one-dimensional composite Gauss--Legendre rule on
:math:`[-T, T]` (``panels`` panels of ``order`` nodes, weights times the standard normal
density). Composite Legendre instead of Hermite: the integrands carry :math:`g'(x)=\frac{2}{\sqrt\pi}e^{-x^2}`,
narrow when the field variance is large (``docs/theory.md``, section 5.2). Nodes are cached
per ``(K, rule)``; the rule is static.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

__all__ = ["GaussRule", "DEFAULT_RULE", "default_rule", "tensor_nodes", "gaussian_mean"]


class GaussRule(NamedTuple):
    """One-dimensional composite Gauss--Legendre rule (static, hashable).

    Attributes:
        panels: number of equal panels on ``[-width, width]``.
        order: Gauss--Legendre nodes per panel.
        width: truncation :math:`T` in standard deviations (mass left out per axis :math:`2\\Phi(-T)`).
    """

    panels: int = 6
    order: int = 6
    width: float = 7.0

    @property
    def size(self) -> int:
        return self.panels * self.order


DEFAULT_RULE = GaussRule()


def default_rule(K: int) -> GaussRule:
    """The ODE's quadrature for K units, chosen for accuracy where it is cheap.

    Nodes per axis and the largest deviation of an integrated trajectory from a much finer rule
    (``docs/theory.md``, section 12.5; FGM on XOR, alpha up to 10):

    * K = 1: ``GaussRule(32, 16, 9.0)``, 512 nodes, the single-layer engine's rule (1e-16);
    * K = 2: ``GaussRule(12, 8, 8.0)``, 96 per axis (5e-6 in R; the 36 per axis of
      :data:`DEFAULT_RULE` gives 3.5e-4);
    * K = 3: ``GaussRule(4, 6, 7.0)``, 24 per axis (7e-5);
    * K >= 4: ``GaussRule(3, 5, 6.0)``, 15 per axis (36^4 nodes would cost minutes per run).
    """
    if K <= 1:
        return GaussRule(32, 16, 9.0)
    return GaussRule(12, 8, 8.0) if K == 2 else GaussRule(4, 6, 7.0) if K == 3 else GaussRule(3, 5, 6.0)


@functools.cache
def _nodes_1d(rule: GaussRule):
    x, w = np.polynomial.legendre.leggauss(rule.order)
    edges = np.linspace(-rule.width, rule.width, rule.panels + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    t = ((lo + hi) / 2 + (hi - lo) / 2 * x).ravel()
    wt = ((hi - lo) / 2 * w).ravel() * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    return t, wt


@functools.cache
def tensor_nodes(K: int, rule: GaussRule = DEFAULT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product nodes ``(n**K, K)`` and weights ``(n**K,)`` (NumPy, cached; ``K = 0``: one node)."""
    t, w = _nodes_1d(rule)
    if K == 0:
        return np.zeros((1, 0)), np.ones((1,))
    grids = np.meshgrid(*([t] * K), indexing="ij")
    wgrids = np.meshgrid(*([w] * K), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    return nodes, weights


def gaussian_mean(
    f: Callable[[jax.Array], Any],
    K: int,
    rule: GaussRule = DEFAULT_RULE,
    dtype: DTypeLike | None = None,
    batch: int = 8192,
) -> Any:
    r""":math:`\sum_n W_n f(t_n)` for ``f`` a function of one standard-normal node ``t`` (shape ``(K,)``)
    returning a pytree. The map over nodes is a ``vmap`` in chunks of at most ``batch`` nodes
    (``lax.map``), which bounds memory for large ``K``. Callers map ``t`` to :math:`m+Lt` themselves."""
    nodes, weights = tensor_nodes(K, rule)
    dtype = jnp.result_type(float) if dtype is None else dtype
    t = jnp.asarray(nodes, dtype)
    vals = jax.vmap(f)(t) if t.shape[0] <= batch else jax.lax.map(f, t, batch_size=batch)
    w = jnp.asarray(weights, dtype)
    return jax.tree.map(lambda z: jnp.tensordot(w, z, axes=1), vals)
