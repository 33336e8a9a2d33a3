r"""K-dimensional Gaussian averages by a tensor-product composite Gauss--Legendre rule.

For :math:`x\sim\mathcal N(m, C)` with :math:`C = LL^\top` (``whitening="eigen"``:
:math:`L=U\Lambda^{1/2}` from the eigen-decomposition; ``"symmetric"``: :math:`L=C^{1/2}=U\Lambda^{1/2}U^\top`;
clipped eigenvalues give zero directions, :func:`jaxadv.committee.fields.geometry`):

.. math::
    \langle f(x)\rangle = \int f(m+Lt)\prod_{i=1}^{K}\frac{e^{-t_i^2/2}}{\sqrt{2\pi}}\,dt
    \approx\sum_{n} W_n\, f(m+Lt_n),

with nodes :math:`t_n` the tensor product of a one-dimensional composite Gauss--Legendre rule on
:math:`[-T, T]` (``panels`` panels of ``order`` nodes, weights times the standard normal
density). Composite Legendre instead of Hermite: the integrands carry :math:`g'(x)=\frac{2}{\sqrt\pi}e^{-x^2}`,
narrow when the field variance is large (``docs/theory.md``, section 5.2); measured on the committee's
averages, 60 Gauss--Hermite nodes an axis are about as far off as 48 Legendre ones (section 12.7). Nodes are
cached per ``(K, rule)``; the rule is static.

**Error control.** :func:`rule_ladder` is the sequence of rules (order 8, the symmetric whitening,
more panels at each rung) that the committee ODE climbs until two successive rungs give vector fields
within a tolerance (:func:`choose_rule`; :func:`jaxadv.committee.ode.solve_committee_ode`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

__all__ = [
    "GaussRule",
    "DEFAULT_RULE",
    "DEFAULT_TOL",
    "WHITENINGS",
    "default_rule",
    "tensor_nodes",
    "chunked_nodes",
    "gaussian_mean",
    "weighted_sums",
    "rule_ladder",
    "choose_rule",
    "RuleChoice",
]

WHITENINGS = ("eigen", "symmetric")
r"""How the nodes :math:`t` map to the fields, :math:`x = m + \sqrt{v_c}Lt` (module docstring)."""

DEFAULT_TOL = 1e-6
"""Default tolerance of the committee ODE (quadrature and time step), absolute, on the order parameters."""


class GaussRule(NamedTuple):
    """One-dimensional composite Gauss--Legendre rule (static, hashable).

    Attributes:
        panels: number of equal panels on ``[-width, width]``.
        order: Gauss--Legendre nodes per panel.
        width: truncation :math:`T` in standard deviations (mass left out per axis :math:`2\\Phi(-T)`).
        whitening: ``"eigen"`` (:math:`L=U\\Lambda^{1/2}`, the default of a rule written by hand, as
            before) or ``"symmetric"`` (:math:`L=Q^{1/2}`; the rules of :func:`rule_ladder`): how the
            committee ODE's averages map nodes to fields. Measured (XOR, K = 2, 12 x 8 on [-8, 8]), the
            symmetric root leaves the trajectory at alpha = 10 9e-10 from a converged reference against
            7e-8 for the eigenbasis, at the same cost. The measures (:mod:`jaxadv.committee.measures`)
            integrate in their own Cholesky coordinates and ignore it.
    """

    panels: int = 6
    order: int = 6
    width: float = 7.0
    whitening: str = "eigen"

    @property
    def size(self) -> int:
        return self.panels * self.order


DEFAULT_RULE = GaussRule()


def default_rule(K: int) -> GaussRule:
    """The rule fixed by K that the committee ODE used before its error control (``rule=None`` now climbs
    :func:`rule_ladder` to a tolerance); kept for callers that pass it, with the eigenbasis whitening as before.

    Nodes per axis and the largest error of the final order parameters at alpha = 10 with the fixed step 0.05
    (XOR preset data, FGM, float64, against converged references; ``docs/theory.md``, section 12.7):

    * K = 1: ``GaussRule(32, 16, 9.0)``, 512 nodes, the single-layer engine's rule (1e-16 from ``solve_ode``);
    * K = 2: ``GaussRule(12, 8, 8.0)``, 96 per axis: 7.1e-8 (8.3e-10 with ``whitening="symmetric"``; the 36
      per axis of :data:`DEFAULT_RULE` give 3.0e-5);
    * K = 3: ``GaussRule(4, 6, 7.0)``, 24 per axis: 2.6e-4 (1.0e-4 in b; 9.8e-5 symmetric);
    * K >= 4: ``GaussRule(3, 5, 6.0)``, 15 per axis (not measured).

    The default tolerance (1e-6) reaches 2.0e-7 (K = 2) and 2.4e-7 (K = 3) with 56 nodes an axis.
    """
    if K <= 1:
        return GaussRule(32, 16, 9.0)
    return GaussRule(12, 8, 8.0) if K == 2 else GaussRule(4, 6, 7.0) if K == 3 else GaussRule(3, 5, 6.0)


def _nodes_1d(rule: GaussRule):
    return _nodes_1d_cached(int(rule.panels), int(rule.order), float(rule.width))


@functools.cache
def _nodes_1d_cached(panels: int, order: int, width: float):
    rule = GaussRule(panels, order, width)
    x, w = np.polynomial.legendre.leggauss(rule.order)
    edges = np.linspace(-rule.width, rule.width, rule.panels + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    t = ((lo + hi) / 2 + (hi - lo) / 2 * x).ravel()
    wt = ((hi - lo) / 2 * w).ravel() * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    return t, wt


def tensor_nodes(K: int, rule: GaussRule = DEFAULT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product nodes ``(n**K, K)`` and weights ``(n**K,)`` (NumPy, cached; ``K = 0``: one node)."""
    return _tensor_nodes(K, int(rule.panels), int(rule.order), float(rule.width))


@functools.cache
def _tensor_nodes(K: int, panels: int, order: int, width: float):
    t, w = _nodes_1d(GaussRule(panels, order, width))
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
    t_np, w_np = tensor_nodes(K, rule)
    dtype = jnp.result_type(float) if dtype is None else dtype
    t = jnp.asarray(t_np, dtype)
    vals = jax.vmap(f)(t) if t.shape[0] <= batch else jax.lax.map(f, t, batch_size=batch)
    w = jnp.asarray(w_np, dtype)
    return jax.tree.map(lambda z: jnp.tensordot(w, z, axes=1), vals)


@functools.cache
def chunked_nodes(K: int, rule: GaussRule, batch: int) -> Any:
    """:func:`tensor_nodes` as the fewest equal chunks of at most ``batch`` nodes, each held units-first:
    nodes ``(C, K, b)`` and weights ``(C, b)`` (NumPy, cached; ``b`` a multiple of 8 when there are several
    chunks, the last padded with zero-weight nodes at the origin). The form :func:`weighted_sums` maps."""
    t, w = tensor_nodes(K, rule)
    n = t.shape[0]
    chunks = max(1, -(-n // batch))
    size = n if chunks == 1 else 8 * -(-n // (8 * chunks))
    pad = chunks * size - n
    t = np.concatenate([t, np.zeros((pad, K))]).reshape(chunks, size, K).transpose(0, 2, 1)
    return np.ascontiguousarray(t), np.concatenate([w, np.zeros(pad)]).reshape(chunks, size)


def weighted_sums(f: Any, t: Any, w: Any) -> Any:
    r""":math:`\sum_n w_n f(t_n)` over chunked nodes ``t`` ``(C, K, b)`` and weights ``w`` ``(C, b)``
    (:func:`chunked_nodes`; may be traced), ``f`` mapping one chunk ``(K, b)`` and its weights ``(b,)`` to a
    pytree of weighted sums. Several chunks are summed in a ``lax.scan``, which bounds memory and keeps each
    chunk in cache (measured, K = 3 and 256 000 nodes: 2048 nodes a chunk about 2x faster than 65 536)."""
    if t.shape[0] == 1:
        return f(t[0], w[0])

    def body(acc, c):
        return jax.tree.map(jnp.add, acc, f(*c)), None

    return jax.lax.scan(body, f(t[0], w[0]), (t[1:], w[1:]))[0]


#: panels of the ladder's rungs (order 8 each: 16, 24, ..., 512 nodes an axis)
LADDER_PANELS = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64)
LADDER_ORDER = 8
#: largest tensor rule of the ladder, nodes per cluster (2^21: 128 an axis at K = 3, 32 at K = 4)
LADDER_MAX_NODES = 2**21


def rule_ladder(K: int, tol: float, max_nodes: int = LADDER_MAX_NODES) -> tuple:
    """The rules the error control climbs, coarsest first: ``GaussRule(p, 8, T, "symmetric")`` for ``p`` in
    :data:`LADDER_PANELS` with at most ``max_nodes`` tensor nodes. The width is set by the field
    tolerance ``tol``: ``T = 7`` (mass left out per axis :math:`2\\Phi(-7)=2.6\\times10^{-12}`) for
    ``tol >= 1e-10``, 8 down to ``1e-13`` and 9 below; the rungs then differ only in their resolution,
    which is what the difference of two rungs measures."""
    width = 7.0 if tol >= 1e-10 else 8.0 if tol >= 1e-13 else 9.0
    return tuple(
        GaussRule(p, LADDER_ORDER, width, "symmetric")
        for p in LADDER_PANELS
        if (p * LADDER_ORDER) ** max(K, 1) <= max_nodes
    )


class RuleChoice(NamedTuple):
    """What :func:`choose_rule` found.

    Attributes:
        rule: the rule chosen.
        error: estimated largest error of the integrand's average with ``rule``: the largest difference
            from the next rung (NaN when there is no next rung to compare with).
        met: ``error <= tol``.
        tol: the tolerance asked.
    """

    rule: GaussRule
    error: float
    met: bool
    tol: float


def choose_rule(evaluate: Any, ladder: Any, tol: float, start: int = 0) -> RuleChoice:
    """Climb ``ladder`` from rung ``start``: the first rule whose averages differ from the next rung's by at most
    ``tol`` (largest absolute difference over every entry of ``evaluate(rule)``, a NumPy array). The
    difference estimates the coarser rule's error when the errors fall fast from rung to rung (measured
    on the committee: 2 to 30 times a rung). When no pair agrees the last but one rung is returned with
    ``met=False``. Runs outside ``jit`` (the rule is static)."""
    if len(ladder) - start < 2:
        raise ValueError(f"the ladder has {len(ladder) - start} rule(s) from rung {start}; two are needed to compare")
    prev = np.asarray(evaluate(ladder[start]))
    err = math.inf
    for i in range(start, len(ladder) - 1):
        nxt = np.asarray(evaluate(ladder[i + 1]))
        err = float(np.max(np.abs(nxt - prev))) if np.all(np.isfinite(nxt)) else math.inf
        if err <= tol:
            return RuleChoice(ladder[i], err, True, tol)
        prev = nxt
    return RuleChoice(ladder[-2], err, False, tol)
