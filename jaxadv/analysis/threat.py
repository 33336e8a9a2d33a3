r"""Robust error under the L2, L-infinity and L1 threat models.

For a fixed linear student (:math:`\|w\|_2=1`, bias :math:`b`) the smallest decrease of the
margin :math:`\tau x` that a perturbation :math:`\|\Delta\|_q\le\epsilon` can achieve is, by
Hölder's inequality (with equality at the worst cases of :mod:`jaxadv.model.perturbations`),

.. math::
    \min_{\|\Delta\|_q\le\epsilon}\tau\,w\cdot(\xi+\Delta) = \tau w\cdot\xi - \epsilon\|w\|_{q^*},
    \qquad \tfrac1q+\tfrac1{q^*}=1,

so the robust error is the L2 one (:func:`jaxadv.analysis.measures.robust_error`) at the radius
:math:`\epsilon\|w\|_{q^*}`:

.. math::
    S_q = p\,\Phi\Big(\frac{\epsilon\|w\|_{q^*} + b-\rho R/2}{\sqrt{v_1}}\Big)
        + (1-p)\,\Phi\Big(\frac{\epsilon\|w\|_{q^*} - b-\rho R/2}{\sqrt{v_2}}\Big).

:math:`\|w\|_{q^*}` is 1 for L2, :math:`\|w\|_1\in[1,\sqrt N]` for L-infinity and
:math:`\|w\|_\infty\in[1/\sqrt N, 1]` for L1; the Monte Carlo records both at save points
(:class:`jaxadv.mc.driver.MCResult`). Comparable radii therefore scale with N: an L-infinity
radius :math:`\epsilon_\infty\sim\epsilon_2/\sqrt N` for a dense :math:`w`
(``docs/theory.md (section 11)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import numpy as np

from ..model.params import ModelParams
from ..model.perturbations import ATTACKS
from ..typing import Real
from .measures import robust_error

if TYPE_CHECKING:
    from ..mc.driver import MCResult

__all__ = ["THREATS", "dual_norm", "robust_error_threat", "mc_threat_summary"]

THREATS = tuple(a.name for a in ATTACKS.values() if a.name != "noise")
r"""The worst-case attacks of :mod:`jaxadv.model.perturbations`: each is a threat model whose
field shift is :math:`\epsilon` times the dual norm named by the attack's ``threat`` face."""


def dual_norm(threat: str, norm1: Real | None = None, norm_inf: Real | None = None) -> Real:
    r""":math:`\|w\|_{q^*}` of a unit-L2 student for the threat ``'l2'`` (1), ``'linf'``
    (``norm1`` :math:`=\|w\|_1`) or ``'l1'`` (``norm_inf`` :math:`=\|w\|_\infty`)."""
    if threat not in THREATS:
        raise ValueError(f"threat={threat!r} is not one of {list(THREATS)}")
    which = ATTACKS[threat].threat
    if which is None:
        return 1.0
    value = {"norm1": norm1, "norm_inf": norm_inf}[which]
    if value is None:
        raise ValueError(f"threat={threat!r} needs {which} = ||w||_{'1' if which == 'norm1' else 'inf'}")
    return value


def robust_error_threat(
    R: Real,
    b: Real,
    eps_test: Real,
    params: ModelParams,
    threat: str = "l2",
    norm1: Real | None = None,
    norm_inf: Real | None = None,
) -> jax.Array:
    r""":math:`S_q(R,b,\epsilon)`, the robust error under the threat ``threat`` (broadcasts)."""
    return robust_error(R, b, eps_test * dual_norm(threat, norm1, norm_inf), params)


def mc_threat_summary(mc: MCResult, params: ModelParams, eps_test: dict[str, float]) -> dict[str, np.ndarray]:
    """Mean and sem over replicas of the robust error under each threat at every save point.

    Args:
        mc: :class:`jaxadv.mc.driver.MCResult` (with ``norm1``/``norm_inf``).
        eps_test: ``{threat: radius}``, e.g. ``{"l2": 1.0, "linf": 0.05, "l1": 1.0}``.

    Returns:
        ``{f"robust_error_{threat}_mean": (P,), f"robust_error_{threat}_sem": (P,)}``.
    """
    from .stats import mean_sem

    R, b = mc.R.astype(np.float64), mc.b.astype(np.float64)
    out = {}
    for threat, eps in eps_test.items():
        S = np.asarray(robust_error_threat(R, b, eps, params, threat, mc.norm1, mc.norm_inf), np.float64)
        out[f"robust_error_{threat}_mean"], out[f"robust_error_{threat}_sem"] = mean_sem(S, mc.finite)
    return out
