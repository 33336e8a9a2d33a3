r"""Objectives of a protocol: functions of the final order parameters :math:`(R, b)` of the unit.

With :math:`S(R, b, \epsilon)` the robust error at L2 radius :math:`\epsilon`
(:func:`jaxadv.analysis.measures.robust_error`, :math:`S(\cdot, 0)` the clean error), an objective is the
weighted sum

.. math::
    \Phi(R, b) = w_\text{clean}\,S(R,b,0) + w_\text{robust}\,S(R,b,\epsilon_\text{test})
        + w_\text{auc}\,\frac{1}{\epsilon_\text{auc}}\int_0^{\epsilon_\text{auc}} S(R,b,\epsilon)\,d\epsilon
        + w_\text{radii}\,\frac1{|E|}\sum_{\epsilon\in E} S(R,b,\epsilon),

the area under the robustness curve by the trapezoid rule on 41 radii (the integrand is smooth: its error
is below :math:`10^{-4}` of the area for the test's curves). The terms with zero weight are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..analysis.measures import robust_error
from ..model.params import ModelParams

__all__ = ["Objective", "make_objective", "TERMS", "AUC_NODES"]

TERMS = ("clean", "robust", "auc", "radii")
"""The terms of an objective, in the order of :func:`make_objective`'s weights."""
AUC_NODES = 41
"""Radii of the trapezoid rule of the area under the robustness curve."""


class Objective(NamedTuple):
    """A protocol's objective (to minimise).

    Attributes:
        weights: ``{term: weight}`` of :data:`TERMS`, the nonzero ones.
        eps_test: radius of the ``robust`` term.
        auc_max: upper end of the ``auc`` term's radii.
        radii: the radii of the ``radii`` term.
        fn: ``fn(R, b, params) -> scalar``, with the data's ``params`` (:class:`jaxadv.ModelParams`).
    """

    weights: dict
    eps_test: float
    auc_max: float
    radii: tuple
    fn: Callable[[Any, Any, ModelParams], jax.Array]

    def describe(self) -> str:
        """``0.5 clean + 0.5 robust(eps=1)``-style text."""
        what = {
            "clean": "clean error",
            "robust": f"robust error(eps={self.eps_test:g})",
            "auc": f"mean robust error on [0, {self.auc_max:g}]",
            "radii": "mean robust error at eps=" + ",".join(f"{e:g}" for e in self.radii),
        }
        return " + ".join(f"{w:g} {what[k]}" for k, w in self.weights.items())


def make_objective(
    weights: dict[str, float],
    *,
    eps_test: float = 1.0,
    auc_max: float = 2.0,
    radii: Sequence[float] = (),
) -> Objective:
    """The :class:`Objective` of the given ``weights`` (``{term: weight}``, module docstring).

    Raises:
        ValueError: an unknown term, a negative or non-finite weight, all weights zero, a negative radius,
            the ``radii`` term without radii.

    Example:
        >>> from jaxadv import ModelParams
        >>> obj = make_objective({"clean": 0.5, "robust": 0.5}, eps_test=0.5)
        >>> round(float(obj.fn(0.8, 0.0, ModelParams(prior=0.5))), 4)
        0.297
    """
    import math

    for k, w in weights.items():
        if k not in TERMS:
            raise ValueError(f"objective.{k}: unknown term; one of {', '.join(TERMS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"objective.{k}={w!r} must be a finite number >= 0")
    weights = {k: float(w) for k, w in weights.items() if w != 0}
    if not weights:
        raise ValueError("objective: every weight is 0; give at least one term, e.g. objective = {robust = 1}")
    for name, x in (("eps_test", eps_test), ("auc_max", auc_max)):
        if not (isinstance(x, (int, float)) and math.isfinite(x) and x >= 0):
            raise ValueError(f"{name}={x!r} must be a finite number >= 0")
    if "auc" in weights and auc_max <= 0:
        raise ValueError(f"auc_max={auc_max!r} must be > 0 for the auc term")
    radii = tuple(float(e) for e in radii)
    if any(not (math.isfinite(e) and e >= 0) for e in radii):
        raise ValueError(f"radii={list(radii)!r} must be finite numbers >= 0")
    if "radii" in weights and not radii:
        raise ValueError("objective.radii needs radii = [...]")
    grid = jnp.linspace(0.0, auc_max, AUC_NODES)

    def fn(R: Any, b: Any, params: ModelParams) -> jax.Array:
        total = jnp.zeros(())
        if "clean" in weights:
            total = total + weights["clean"] * robust_error(R, b, 0.0, params)
        if "robust" in weights:
            total = total + weights["robust"] * robust_error(R, b, eps_test, params)
        if "auc" in weights:
            s = robust_error(R, b, grid, params)
            total = total + weights["auc"] * jnp.trapezoid(s, grid) / auc_max
        if "radii" in weights:
            total = total + weights["radii"] * jnp.mean(robust_error(R, b, jnp.asarray(radii), params))
        return total

    return Objective(weights, float(eps_test), float(auc_max), radii, fn)
