"""Figures of a run: order parameters, errors and the robustness curve (matplotlib, Agg)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_order_parameters", "plot_errors", "plot_robustness"]


def _save(fig, path, close: bool = True):
    """Write ``fig`` to ``path`` atomically (format from the extension)."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), ".tmp-" + os.path.basename(path))
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format=os.path.splitext(path)[1][1:])
    os.replace(tmp, path)
    if close:
        plt.close(fig)


def _band(ax, alpha, mean, sem, color, label):
    ax.plot(alpha, mean, color=color, lw=1, alpha=0.9, label=label)
    ax.fill_between(alpha, mean - 2 * sem, mean + 2 * sem, color=color, alpha=0.25, lw=0)


def plot_order_parameters(ode: dict, mc: dict | None, path: str, title: str = "") -> None:
    """R and b against alpha: ODE lines, MC mean with a +-2 sem band."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, name in zip(axes, ("R", "b")):
        if mc is not None:
            _band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], "C1", "MC mean ± 2 sem")
        ax.plot(ode["alpha"], ode[name], "k--", lw=1.2, label="ODE")
        ax.set_xlabel(r"$\alpha$")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def plot_errors(ode: dict, mc: dict | None, path: str, eps_test: float, title: str = "") -> None:
    """Test error and eps-robust error against alpha."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
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
    _save(fig, path)


def plot_robustness(table: dict, path: str, alpha_max: float, title: str = "") -> None:
    """Robust error S(R, b, eps_test) at alpha_max against eps_test."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
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
    _save(fig, path)
