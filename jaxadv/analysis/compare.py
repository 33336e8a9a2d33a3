r"""Monte Carlo summaries and their comparison with the ODE.

For each save point the replicas that are still finite give a mean and a standard error
:math:`\mathrm{sem} = s/\sqrt{n}` (:math:`s` the sample standard deviation, :math:`n` the number of
finite replicas). The deviation of the Monte Carlo from the ODE is measured in standard errors,
:math:`z = (\bar X - X_\text{ODE})/\mathrm{sem}`. At finite N the mean itself differs from the
large-N ODE by :math:`O(1/N)`; :func:`compare` accepts an absolute ``allowance`` for it.

:func:`compare` is the *raw* comparison with the bare ODE. The verdict that ``jaxadv run``
prints, the ODE plus the theory's O(1/N) corrections with floors on the standard error, is
:func:`jaxadv.analysis.verdict.honest_verdict`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..mc.driver import MCResult
from ..model.params import ModelParams
from ..ode.solve import ODEResult
from ..typing import Real
from .measures import robust_error, test_error
from .stats import mean_sem

__all__ = ["mc_summary", "ode_table", "Comparison", "compare"]


def _on_grid(x: npt.ArrayLike, extra: int) -> np.ndarray:
    """A scalar or grid-shaped ``G`` value with ``extra`` trailing axes, to broadcast against
    ``G + (...)`` arrays."""
    x = np.asarray(x, np.float64)
    return x.reshape(x.shape + (1,) * extra) if x.ndim else x


def mc_summary(mc: MCResult, params: ModelParams, eps_test: Real) -> dict[str, np.ndarray]:
    """Columns of ``mc.csv``: mean and sem of R, b, test error and robust error at each save point.

    On a grid (``mc.R`` of shape ``G + (replicas, P)``, ``params`` and ``eps_test`` scalars or of
    shape ``G``) every column but ``alpha`` has shape ``G + (P,)``."""
    R = mc.R.astype(np.float64)
    b = mc.b.astype(np.float64)
    grid = R.ndim > 2
    if grid:
        params = ModelParams(*(_on_grid(x, 2) for x in params))
        eps_test = _on_grid(eps_test, 2)
    te = np.asarray(test_error(R, b, params), dtype=np.float64)
    re = np.asarray(robust_error(R, b, eps_test, params), dtype=np.float64)
    first = (lambda x: np.moveaxis(x, -2, 0)) if grid else (lambda x: x)  # replicas first for mean_sem
    fin = first(mc.finite)
    cols = {"alpha": mc.alpha}
    for name, x in (("R", R), ("b", b), ("test_error", te), ("robust_error", re)):
        cols[f"{name}_mean"], cols[f"{name}_sem"] = mean_sem(first(x), fin)
    cols["n_finite"] = fin.sum(axis=0)
    return cols


def ode_table(ode: ODEResult, params: ModelParams, eps_test: Real) -> dict[str, np.ndarray]:
    """Columns of ``ode.csv``: alpha, R, b, test error and robust error at ``eps_test``.

    On a grid (``ode.R`` of shape ``G + (P,)``, ``params`` and ``eps_test`` scalars or of shape
    ``G``) the columns but ``alpha`` have shape ``G + (P,)``."""
    if np.ndim(ode.R) > 1:
        params = ModelParams(*(_on_grid(x, 1) for x in params))
        eps_test = _on_grid(eps_test, 1)
    return {
        "alpha": np.asarray(ode.alpha),
        "R": np.asarray(ode.R),
        "b": np.asarray(ode.b),
        "test_error": np.asarray(test_error(ode.R, ode.b, params)),
        "robust_error": np.asarray(robust_error(ode.R, ode.b, eps_test, params)),
    }


class Comparison(NamedTuple):
    """MC against ODE. ``z[name]`` are deviations in standard errors at every save point;
    ``worst`` is ``(|z|, name, alpha)`` of the largest one; ``n_diverged`` counts replicas
    that are not finite at the end."""

    z: dict[str, np.ndarray]
    worst: tuple[float, str, float]
    n_diverged: int
    n_replicas: int

    def verdict(self, threshold: float = 4.0) -> str:
        zmax, name, alpha = self.worst
        div = f"; {self.n_diverged} of {self.n_replicas} replicas diverged" if self.n_diverged else ""
        if not np.isfinite(zmax):
            return f"undetermined: no standard error (fewer than 2 finite replicas){div}"
        ok = zmax <= threshold
        return (
            f"{'consistent' if ok else 'INCONSISTENT'}: largest MC-ODE deviation {zmax:.2f} standard "
            f"errors ({name} at alpha={alpha:g}; allowance {threshold:g}){div}"
        )


def compare(mc_cols: dict[str, np.ndarray], ode_cols: dict[str, np.ndarray], allowance: float = 0.0) -> Comparison:
    """Deviation of the MC means from the ODE in standard errors, at every save point after 0.

    Args:
        mc_cols: :func:`mc_summary` output.
        ode_cols: :func:`ode_table` output at the same alphas.
        allowance: absolute finite-N allowance subtracted from ``|mean - ode|`` before dividing by sem.
    """
    if not np.allclose(mc_cols["alpha"], ode_cols["alpha"]):
        raise ValueError("compare: MC and ODE save points differ")
    z = {}
    worst = (float("nan"), "", float("nan"))  # stays NaN when no save point has a standard error
    for name in ("R", "b", "test_error", "robust_error"):
        dev = np.maximum(np.abs(mc_cols[f"{name}_mean"] - ode_cols[name]) - allowance, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            zz = np.where(dev == 0, 0.0, dev / mc_cols[f"{name}_sem"])
        z[name] = zz
        idx = np.flatnonzero(np.isfinite(zz[1:])) + 1
        if idx.size:
            i = idx[np.argmax(zz[idx])]
            if not zz[i] <= worst[0]:  # also replaces the initial NaN
                worst = (float(zz[i]), name, float(mc_cols["alpha"][i]))
    n_rep = int(mc_cols["n_finite"][0]) if "n_finite" in mc_cols else 0
    n_div = n_rep - int(mc_cols["n_finite"][-1]) if "n_finite" in mc_cols else 0
    return Comparison(z=z, worst=worst, n_diverged=n_div, n_replicas=n_rep)
