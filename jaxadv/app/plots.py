"""Figures of a run: order parameters, errors, the robustness curve and the defences.

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot (importing jaxadv leaves
the user's backend alone); it is returned, and written atomically when a path is given
(:func:`jaxadv.app.io.write_figure`).

Each Monte-Carlo-against-ODE figure has, under the curves, a panel of the deviation
:math:`z = (\\bar X_\\mathrm{MC} - X_\\mathrm{ODE})/\\mathrm{sem}` with the band :math:`|z| \\le 2`, so
the agreement is judged at the scale of the standard error, not of the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from .io import write_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.defences import DefenceResult

__all__ = ["plot_order_parameters", "plot_errors", "plot_robustness", "plot_defences", "deviation_sem", "place_labels"]


def _save(fig, path):
    """Write ``fig`` atomically when ``path`` is given; return ``fig``."""
    if path is not None:
        write_figure(path, fig)
    return fig


def deviation_sem(mean: npt.ArrayLike, sem: npt.ArrayLike, ode: npt.ArrayLike) -> np.ndarray:
    """``(mean - ode) / sem``; NaN where the standard error is 0 or not finite (e.g. at alpha = 0)."""
    mean, sem, ode = (np.asarray(a, np.float64) for a in (mean, sem, ode))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((sem > 0) & np.isfinite(sem), (mean - ode) / sem, np.nan)


def _band(ax, alpha, mean, sem, color, label):
    ax.plot(alpha, mean, color=color, lw=1, alpha=0.9, label=label)
    ax.fill_between(alpha, mean - 2 * sem, mean + 2 * sem, color=color, alpha=0.25, lw=0)


def _z_panel(ax, alpha, series, xlabel):
    """Deviation panel: one line per ``(z, color, label)`` and the |z| <= 2 band."""
    ax.axhspan(-2, 2, color="0.85", lw=0, label="|z| ≤ 2")
    ax.axhline(0, color="k", lw=0.8)
    top = 3.0
    for z, color, label in series:
        ax.plot(alpha, z, "o-", color=color, ms=2.5, lw=0.8, label=label)
        if np.isfinite(z).any():
            top = max(top, float(np.nanmax(np.abs(z))) * 1.15)
    ax.set_ylim(-top, top)
    ax.text(
        0.01,
        0.97,
        "grey: within 2 standard errors",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=7,
        color="0.3",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("(MC − ODE) / sem")
    ax.grid(alpha=0.3)


def plot_order_parameters(ode: dict, mc: dict | None, path: str, title: str = "") -> Figure:
    """R and b against alpha: ODE lines, MC mean with a +-2 sem band; under each, the deviation
    of the MC mean from the ODE in standard errors."""
    rows = 2 if mc is not None else 1
    fig = Figure(figsize=(9, 3.2 + 2.0 * (rows - 1)), layout="constrained")
    axes = fig.subplots(rows, 2, sharex="col", squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]})
    names = {"R": "R (overlap with the cluster axis)", "b": "b (bias)"}
    for j, name in enumerate(("R", "b")):
        ax = axes[0, j]
        if mc is not None:
            _band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], "C1", "Monte Carlo mean ± 2 sem")
        ax.plot(ode["alpha"], ode[name], "k--", lw=1.2, label="ODE (N → ∞)")
        ax.set_ylabel(names[name])
        ax.grid(alpha=0.3)
        if mc is not None:
            _z_panel(
                axes[1, j],
                mc["alpha"],
                [(deviation_sem(mc[f"{name}_mean"], mc[f"{name}_sem"], ode[name]), "C1", None)],
                r"$\alpha$ (examples / N)",
            )
        else:
            ax.set_xlabel(r"$\alpha$ (examples / N)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if mc is not None:
        h2, l2 = axes[1, 0].get_legend_handles_labels()
        handles, labels = handles + h2[:1], labels + ["deviation band |z| ≤ 2"]
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_errors(ode: dict, mc: dict | None, path: str, eps_test: float, title: str = "") -> Figure:
    """Test error and robust error at ``eps_test`` against alpha (axis scaled to the data), and the
    deviation of the Monte Carlo from the ODE in standard errors."""
    rows = 2 if mc is not None else 1
    fig = Figure(figsize=(9, 3.2 + 2.0 * (rows - 1)), layout="constrained")
    axes = fig.subplots(rows, 2, sharex="col", squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]})
    quantities = (
        ("test_error", "C0", "clean test error"),
        ("robust_error", "C3", f"robust error at eps_test={eps_test:g}"),
    )
    for j, (name, color, label) in enumerate(quantities):
        ax = axes[0, j]
        if mc is not None:
            _band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], color, "Monte Carlo mean ± 2 sem")
        ax.plot(ode["alpha"], ode[name], "k--", lw=1.2, label="ODE (N → ∞)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        if mc is not None:
            _z_panel(
                axes[1, j],
                mc["alpha"],
                [(deviation_sem(mc[f"{name}_mean"], mc[f"{name}_sem"], ode[name]), color, None)],
                r"$\alpha$ (examples / N)",
            )
        else:
            ax.set_xlabel(r"$\alpha$ (examples / N)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_robustness(table: dict, path: str, alpha_max: float, title: str = "") -> Figure:
    """Robust error at :math:`\\alpha_\\max` against the test radius ``eps_test``: ODE line, MC
    points, and the MC deviation from the ODE in standard errors."""
    has_mc = "robust_error_mc_mean" in table and np.isfinite(table["robust_error_mc_mean"]).any()
    rows = 2 if has_mc else 1
    fig = Figure(figsize=(5.8, 3.6 + 1.8 * (rows - 1)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]})
    ax = axes[0, 0]
    ax.plot(table["eps_test"], table["robust_error_ode"], "k-", lw=1.2, label="ODE (N → ∞)")
    xlabel = "eps_test (L2 radius of the test-time attack)"
    if has_mc:
        ax.errorbar(
            table["eps_test"],
            table["robust_error_mc_mean"],
            yerr=2 * table["robust_error_mc_sem"],
            fmt="o",
            ms=3,
            color="C1",
            label="Monte Carlo mean ± 2 sem",
        )
        _z_panel(
            axes[1, 0],
            table["eps_test"],
            [
                (
                    deviation_sem(
                        table["robust_error_mc_mean"], table["robust_error_mc_sem"], table["robust_error_ode"]
                    ),
                    "C1",
                    None,
                )
            ],
            xlabel,
        )
    else:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(f"robust error at alpha={alpha_max:g}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"robust error against the attack radius at alpha={alpha_max:g}", fontsize=10)
    return _save(fig, path)


def place_labels(
    ax: Axes,
    points: Sequence[Any],
    texts: Sequence[str],
    fontsize: float = 9,
    avoid: Sequence[Any] = (),
    bars: Sequence[tuple[float, float, float, float]] = (),
) -> list[tuple[int, int] | None]:
    """Annotate ``points`` (data coordinates) with ``texts``, each at the first of eight offsets
    whose box overlaps no label placed before, no marker (``points`` and ``avoid``) and no error
    bar (``bars``: ``(x, y, xerr, yerr)`` in data coordinates).

    Returns the offsets chosen, in points. Boxes are estimated from the text length, so the result
    does not depend on the backend.
    """
    fig = ax.figure
    ax.autoscale_view()
    to_px = ax.transData.transform
    pt = fig.dpi / 72.0
    markers = [to_px(p) for p in list(points) + list(avoid) if np.all(np.isfinite(p))]
    r = 7 * pt  # marker radius in pixels
    w_char, h = 0.6 * fontsize * pt, 1.2 * fontsize * pt
    placed: list[tuple[float, float, float, float]] = []
    chosen: list[tuple[int, int] | None] = []
    for x, y, xe, ye in bars:  # error bars as thin boxes, treated like labels already placed
        if np.all(np.isfinite([x, y, xe, ye])):
            (x0, y0), (x1, y1) = to_px((x - xe, y)), to_px((x + xe, y))
            placed.append((x0, y0 - 2, x1, y1 + 2))
            (x0, y0), (x1, y1) = to_px((x, y - ye)), to_px((x, y + ye))
            placed.append((x0 - 2, y0, x1 + 2, y1))
    n_bars = len(placed)
    candidates = [
        (8, 4),
        (8, -14),
        (-8, 4),
        (-8, -14),
        (0, 12),
        (0, -20),
        (14, -5),
        (-14, -5),
        (8, 16),
        (-8, 16),
        (8, -26),
        (-8, -26),
    ]
    for p, text in zip(points, texts, strict=True):
        if not np.all(np.isfinite(p)):
            chosen.append(None)
            continue
        x0, y0 = to_px(p)
        w = w_char * len(text)
        best = None
        for dx, dy in candidates:
            left = x0 + dx * pt - (w if dx < 0 else (w / 2 if dx == 0 else 0))
            bottom = y0 + dy * pt
            box = (left, bottom, left + w, bottom + h)
            hit = any(not (box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3]) for b in placed)
            hit = hit or any(box[0] - r < mx < box[2] + r and box[1] - r < my < box[3] + r for mx, my in markers)
            if not hit:
                best = (dx, dy, box)
                break
        if best is None:
            dx, dy = candidates[0]
            left = x0 + dx * pt
            best = (dx, dy, (left, y0 + dy * pt, left + w, y0 + dy * pt + h))
        placed.append(best[2])
        chosen.append(best[:2])
    del placed[:n_bars]
    return chosen


def plot_defences(
    results: Sequence[DefenceResult], path: str | None = None, title: str = "", eps_test: float | None = None
) -> Figure:
    """Clean error (x) against robust error (y) at :math:`\\alpha_\\max`: ODE as open markers joined
    to the MC points (filled, with error bars); labels placed so that none covers another label or
    a marker. Returns the figure; saves it when ``path`` is given."""
    import matplotlib

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    pts, mc_pts, bars = [], [], []
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        ax.plot(r.ode_clean, r.ode_robust, "o", mfc="none", mec=c, ms=11, mew=1.5)
        if np.isfinite(r.mc_clean):
            ax.errorbar(
                r.mc_clean, r.mc_robust, xerr=r.mc_clean_sem, yerr=r.mc_robust_sem, fmt="o", color=c, ms=5, capsize=2
            )
            mc_pts.append((r.mc_clean, r.mc_robust))
            bars.append((r.mc_clean, r.mc_robust, r.mc_clean_sem, r.mc_robust_sem))
        ode_ok = np.isfinite(r.ode_clean) and np.isfinite(r.ode_robust)
        pts.append((r.ode_clean, r.ode_robust) if ode_ok else (r.mc_clean, r.mc_robust))
    ax.margins(0.12)
    offsets = place_labels(ax, pts, [r.name for r in results], fontsize=9, avoid=mc_pts, bars=bars)
    for i, (r, p, off) in enumerate(zip(results, pts, offsets, strict=True)):
        if off is not None:
            ax.annotate(
                r.name,
                p,
                textcoords="offset points",
                xytext=off,
                color=colors[i % len(colors)],
                fontsize=9,
                ha="right" if off[0] < 0 else ("center" if off[0] == 0 else "left"),
            )
    ax.plot([], [], "ko", mfc="none", ms=9, label="ODE (N → ∞)")
    ax.plot([], [], "ko", ms=5, label="Monte Carlo (mean ± sem)")
    ax.set_xlabel("clean test error at alpha_max")
    ax.set_ylabel("robust error" + (f" at eps_test={eps_test:g} (L2)" if eps_test is not None else ""))
    ax.grid(alpha=0.3)
    ax.set_title(title or "defences", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
