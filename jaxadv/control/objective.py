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
        fn: the unit's objective, ``fn(R, b, params) -> scalar``, with the data's ``params``
            (:class:`jaxadv.ModelParams`); every student's is :meth:`combine` of its robust error.
    """

    weights: dict
    eps_test: float
    auc_max: float
    radii: tuple
    fn: Callable[[Any, Any, ModelParams], jax.Array]

    def combine(self, S: Callable[[jax.Array], jax.Array], clean: Callable[[], jax.Array] | None = None) -> jax.Array:
        r""":math:`\Phi` (module docstring) of any student from its robust error ``S(eps)`` (``eps`` a radius or
        an array of radii, the errors of the same shape); ``clean()``: its clean error (default ``S(0)``)."""
        w = self.weights
        total = jnp.zeros(())
        if "clean" in w:
            total = total + w["clean"] * (S(jnp.asarray(0.0)) if clean is None else clean())
        if "robust" in w:
            total = total + w["robust"] * S(jnp.asarray(self.eps_test))
        if "auc" in w:
            grid = jnp.linspace(0.0, self.auc_max, AUC_NODES)
            total = total + w["auc"] * jnp.trapezoid(S(grid), grid) / self.auc_max
        if "radii" in w:
            total = total + w["radii"] * jnp.mean(S(jnp.asarray(self.radii)))
        return total

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
    objective = Objective(weights, float(eps_test), float(auc_max), radii, None)  # type: ignore[arg-type]

    def fn(R: Any, b: Any, params: ModelParams) -> jax.Array:
        return objective.combine(lambda eps: robust_error(R, b, eps, params))

    return objective._replace(fn=fn)
