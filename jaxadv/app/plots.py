"""Figures of a run: order parameters, errors, the robustness curve and the defences.

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot (importing jaxadv leaves
the user's backend alone); it is returned, and written atomically when a path is given
(:func:`jaxadv.app.io.write_figure`)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from .io import write_figure

__all__ = ["plot_order_parameters", "plot_errors", "plot_robustness", "plot_defences"]


def _save(fig, path):
    """Write ``fig`` atomically when ``path`` is given; return ``fig``."""
    if path is not None:
        write_figure(path, fig)
    return fig


def _band(ax, alpha, mean, sem, color, label):
    ax.plot(alpha, mean, color=color, lw=1, alpha=0.9, label=label)
    ax.fill_between(alpha, mean - 2 * sem, mean + 2 * sem, color=color, alpha=0.25, lw=0)


def plot_order_parameters(ode: dict, mc: dict | None, path: str, title: str = "") -> Figure:
    """R and b against alpha: ODE lines, MC mean with a +-2 sem band."""
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("R", "b")):
        if mc is not None:
            _band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], "C1", "MC mean ± 2 sem")
        ax.plot(ode["alpha"], ode[name], "k--", lw=1.2, label="ODE")
        ax.set_xlabel(r"$\alpha$")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_errors(ode: dict, mc: dict | None, path: str, eps_test: float, title: str = "") -> Figure:
    """Test error and eps-robust error against alpha."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for name, color, label in (("test_error", "C0", "test error"),
                               ("robust_error", "C3", rf"robust error ($\epsilon_{{test}}={eps_test:g}$)")):
        if mc is not None:
            _band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], color, f"MC {label}")
        ax.plot(ode["alpha"], ode[name], "--", color=color, lw=1.2, label=f"ODE {label}")
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel("error")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, path)


def plot_robustness(table: dict, path: str, alpha_max: float, title: str = "") -> Figure:
    """Robust error S(R, b, eps_test) at alpha_max against eps_test."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    ax.plot(table["eps_test"], table["robust_error_ode"], "k-", lw=1.2, label="ODE")
    if "robust_error_mc_mean" in table and np.isfinite(table["robust_error_mc_mean"]).any():
        ax.errorbar(table["eps_test"], table["robust_error_mc_mean"], yerr=2 * table["robust_error_mc_sem"],
                    fmt="o", ms=3, color="C1", label="MC mean ± 2 sem")
    ax.set_xlabel(r"$\epsilon_{test}$")
    ax.set_ylabel(r"$S(R, b, \epsilon_{test})$")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or rf"robustness at $\alpha={alpha_max:g}$")
    return _save(fig, path)


def plot_defences(results, path: Optional[str] = None, title: str = "", eps_test: Optional[float] = None):
    """Clean error (x) against robust error (y) at :math:`\\alpha_\\max`: ODE as open markers joined
    to the MC points (filled, with error bars). Returns the figure; saves it when ``path`` is given."""
    import matplotlib

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        ax.plot(r.ode_clean, r.ode_robust, "o", mfc="none", mec=c, ms=11, mew=1.5)
        if np.isfinite(r.mc_clean):
            ax.errorbar(r.mc_clean, r.mc_robust, xerr=r.mc_clean_sem, yerr=r.mc_robust_sem, fmt="o", color=c,
                        ms=5, capsize=2)
        ax.annotate(r.name, (r.ode_clean, r.ode_robust), textcoords="offset points", xytext=(8, 4), color=c)
    ax.plot([], [], "ko", mfc="none", label="ODE")
    ax.plot([], [], "ko", ms=5, label="Monte Carlo (mean ± sem)")
    ax.set_xlabel("clean error at α_max")
    ax.set_ylabel("robust error" + (f" (L2, ε_test={eps_test:g})" if eps_test is not None else ""))
    ax.set_title(title or "defences")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
