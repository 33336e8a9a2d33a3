r"""Save points of a run: equally spaced (``save="linear"``) or log-spaced (``save="log"``).

A Monte Carlo run saves after whole steps, so a schedule is an increasing integer array of step
counts :math:`0 = s_0 < s_1 < \dots < s_P`; the save times are :math:`\alpha_k = s_k / N`. The ODE
is integrated to the same times (:func:`jaxadv.solve_ode` with ``save_alpha``), so both curves
share every point.

* ``linear``: :math:`s_k = k\,\mathrm{round}(\alpha_\max N / n_\mathrm{save})` (the default, as before);
* ``log``: ``points_per_decade`` points in each decade of :math:`\alpha`, from
  :math:`\alpha_\max` down to ``alpha_min`` (default :math:`1/N`, one step):
  :math:`s = \mathrm{round}(N \alpha_\max 10^{-j/k})`, duplicates removed, plus :math:`s_0 = 0`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SAVE_KINDS", "save_steps", "log_save_steps"]

SAVE_KINDS = ("linear", "log")


def log_save_steps(N: int, alpha_max: float, points_per_decade: int, alpha_min: float | None = None) -> np.ndarray:
    """Log-spaced step counts ``[0, s_1, ..., s_P]`` with ``s_P = round(alpha_max N)``; see the module.

    Example:
        >>> log_save_steps(100, 10.0, 2).tolist()
        [0, 1, 3, 10, 32, 100, 316, 1000]
    """
    if int(points_per_decade) != points_per_decade or points_per_decade < 1:
        raise ValueError(f"points_per_decade={points_per_decade!r} must be an integer >= 1")
    if not (math.isfinite(alpha_max) and alpha_max > 0):
        raise ValueError(f"alpha_max={alpha_max!r} must be finite and > 0")
    alpha_min = 1.0 / N if alpha_min is None else float(alpha_min)
    if not (0 < alpha_min <= alpha_max):
        raise ValueError(f"alpha_min={alpha_min!r} must lie in (0, alpha_max={alpha_max!r}]")
    end = max(1, int(round(alpha_max * N)))
    n = int(math.floor(points_per_decade * math.log10(alpha_max / alpha_min) + 1e-9))
    steps = np.round(end * 10.0 ** (-np.arange(n + 1) / points_per_decade)).astype(np.int64)
    steps = np.unique(steps[steps >= 1])
    return np.concatenate([[0], steps])


def save_steps(
    N: int,
    alpha_max: float,
    n_save: int,
    save: str = "linear",
    points_per_decade: int = 10,
    alpha_min: float | None = None,
) -> np.ndarray:
    """Step counts of the save points (``n_save`` is used by ``save="linear"`` only)."""
    if save == "linear":
        steps = max(1, int(round(alpha_max * N / n_save)))
        return np.arange(n_save + 1, dtype=np.int64) * steps
    if save == "log":
        return log_save_steps(N, alpha_max, points_per_decade, alpha_min)
    raise ValueError(f"save={save!r} is not one of {list(SAVE_KINDS)}")
