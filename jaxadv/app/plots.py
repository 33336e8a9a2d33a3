"""Figures of a run: order parameters, errors, the robustness curve and the defences.

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot (importing jaxadv leaves
the user's backend alone); it is returned, and written atomically when a path is given
(:func:`jaxadv.app.io.write_figure`).

The shared style of every command's figures lives here: the Monte Carlo as a mean with a ±2 SE band
or ±2 SE bars (:func:`mc_band`, :func:`mc_errorbar`), one legend outside the data
(:func:`legend_outside`), labels in words. Each Monte-Carlo-against-ODE figure shows what the verdict
judges: where the verdict uses the ODE plus the O(1/N) theory
(:attr:`jaxadv.analysis.verdict.Verdict.corrected`), the corrected curve beside the bare ODE
(:func:`reference_curves`) and, under the curves, a panel of the deviation
:math:`z = (\\bar X_\\mathrm{MC} - X_\\mathrm{ref})/\\mathrm{SE}` from that curve; where it uses the bare
ODE (committees, rules without the theory), the deviation from the bare ODE, and the panel says which
(:func:`deviation_panel`), with the verdict's allowance as a labelled band.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from ..analysis.verdict import THRESHOLD, sem_floor
from .io import write_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.defences import DefenceResult

__all__ = [
    "plot_order_parameters",
    "plot_errors",
    "plot_robustness",
    "plot_defences",
    "deviation_sem",
    "place_labels",
    "mc_band",
    "mc_errorbar",
    "reference_curves",
    "deviation_panel",
    "legend_outside",
    "verdict_reference",
    "BAND_SE",
    "REFERENCE_CORRECTED",
    "REFERENCE_BARE",
]


def _save(fig, path):
    """Write ``fig`` atomically when ``path`` is given; return ``fig``."""
    if path is not None:
        write_figure(path, fig)
    return fig


def deviation_sem(mean: npt.ArrayLike, sem: npt.ArrayLike, ode: npt.ArrayLike, dtype: Any = None) -> np.ndarray:
    """``(mean - ode) / sem``; NaN where the standard error is 0 or not finite (e.g. at alpha = 0).

    With ``dtype`` (the Monte Carlo's float type) the standard error has the verdict's round-off floor
    (:func:`jaxadv.analysis.verdict.sem_floor`), so the panel shows the deviation the verdict judges."""
    m, s, ref = (np.asarray(a, np.float64) for a in (mean, sem, ode))
    if dtype is not None:
        s = np.sqrt(s**2 + sem_floor(ref, dtype) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((s > 0) & np.isfinite(s), (m - ref) / s, np.nan)


#: the Monte Carlo band and error bars of every figure: mean ± this many standard errors
BAND_SE = 2.0
#: the names of the two references a deviation panel can be drawn against
REFERENCE_CORRECTED = "ODE + O(1/N)"
REFERENCE_BARE = "bare ODE"
MC_LABEL = "Monte Carlo mean ± 2 SE"
ALPHA_LABEL = r"$\alpha$ (examples / N)"


def mc_band(
    ax: Axes,
    x: npt.ArrayLike,
    mean: npt.ArrayLike,
    sem: npt.ArrayLike,
    color: Any,
    label: str | None = MC_LABEL,
    mean_line: bool = True,
):
    """The Monte Carlo mean (thin line; none with ``mean_line=False``, where several curves share an
    axes and the line would pass for the ODE's) and its ±2 SE band (:data:`BAND_SE`), clearly visible."""
    x, mean, sem = (np.asarray(a, np.float64) for a in (x, mean, sem))
    if mean_line:
        ax.plot(x, mean, color=color, lw=1.0, alpha=0.95, label=label)
    ax.fill_between(
        x, mean - BAND_SE * sem, mean + BAND_SE * sem, color=color, alpha=0.3, lw=0, label=None if mean_line else label
    )


def mc_errorbar(ax: Axes, x, mean, sem, color: Any, label: str | None = MC_LABEL, **kw):
    """Monte Carlo points with ±2 SE bars (:data:`BAND_SE`)."""
    return ax.errorbar(
        x,
        mean,
        yerr=BAND_SE * np.asarray(sem, float),
        fmt=kw.pop("fmt", "o"),
        ms=kw.pop("ms", 3),
        color=color,
        capsize=kw.pop("capsize", 2),
        label=label,
        **kw,
    )


def reference_curves(ax: Axes, x, bare, corrected=None, x_corrected=None, color: Any = "k", label_suffix: str = ""):
    """The bare ODE (dashed) and, when given, the ODE + O(1/N) curve the verdict uses (solid), distinguishable."""
    ax.plot(x, bare, "--", color=color, lw=1.1, label=f"{REFERENCE_BARE} (N → ∞){label_suffix}")
    if corrected is not None:
        xc = x if x_corrected is None else x_corrected
        ax.plot(xc, corrected, "-", color=color, lw=1.4, alpha=0.8, label=f"{REFERENCE_CORRECTED}{label_suffix}")


def deviation_panel(
    ax: Axes,
    x: npt.ArrayLike,
    series: Sequence[tuple[np.ndarray, Any, str | None]],
    *,
    reference: str,
    allowance: float,
    xlabel: str = ALPHA_LABEL,
    note: str = "",
) -> Axes:
    r"""Deviation panel :math:`z = (\bar X_\mathrm{MC} - X_\mathrm{ref})/\mathrm{SE}`: one line per
    ``(z, color, label)``, the verdict's allowance :math:`|z| \le` ``allowance`` as a grey band whose
    legend label gives its value, and the reference (:data:`REFERENCE_CORRECTED` or
    :data:`REFERENCE_BARE`) named in the y label and in the axes' label (``ax.get_label()``:
    ``"deviation from <reference>"``, what tests read)."""
    ax.axhspan(-allowance, allowance, color="0.88", lw=0, label=f"verdict allowance |z| ≤ {allowance:g}")
    ax.axhline(0, color="k", lw=0.8)
    top = allowance * 1.5
    for z, color, label in series:
        z = np.asarray(z, float)
        ax.plot(x, z, "o-", color=color, ms=2.5, lw=0.8, label=label)
        if np.isfinite(z).any():
            top = max(top, float(np.nanmax(np.abs(z))) * 1.15)
    ax.set_ylim(-top, top)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"(MC − {reference}) / SE", fontsize=8)
    ax.set_label(f"deviation from {reference}")
    if note:
        ax.set_title(note, fontsize=7, loc="left")
    ax.grid(alpha=0.3)
    return ax


def legend_outside(
    fig: Figure,
    axes: Sequence[Axes] | None = None,
    ncol: int | None = None,
    fontsize: float = 8,
    handles: Sequence[Any] = (),
):
    """One legend for the whole figure, below the axes (never over the data): ``handles`` (proxy
    artists) then the distinct labelled artists of ``axes`` (default: all), in order."""
    handles, labels = list(handles), [h.get_label() for h in handles]
    for ax in fig.axes if axes is None else axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab and not lab.startswith("_") and lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=ncol or min(len(labels), 4),
            fontsize=fontsize,
            frameon=False,
        )
    return fig


def verdict_reference(corrected: dict | None, quantity: str) -> tuple[str, np.ndarray | None]:
    """The reference a verdict judges ``quantity`` against: the ODE + O(1/N) curve when the verdict
    holds one (:attr:`jaxadv.analysis.verdict.Verdict.corrected`), else the bare ODE (``None``)."""
    if corrected and quantity in corrected:
        return REFERENCE_CORRECTED, np.asarray(corrected[quantity], float)
    return REFERENCE_BARE, None


def _panels(ode, mc, quantities, title, corrected, allowance, mc_dtype, note=""):
    """Curves over alpha (top) and, with a Monte Carlo, the deviation from the verdict's reference (below)."""
    rows = 2 if mc is not None else 1
    fig = Figure(figsize=(9, 3.3 + 2.1 * (rows - 1)), layout="constrained")
    axes = fig.subplots(
        rows, len(quantities), sharex="col", squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]}
    )
    for j, (name, color, ylabel) in enumerate(quantities):
        ax = axes[0, j]
        reference, corr = verdict_reference(corrected, name) if mc is not None else (REFERENCE_BARE, None)
        if mc is not None:
            mc_band(ax, mc["alpha"], mc[f"{name}_mean"], mc[f"{name}_sem"], color)
        reference_curves(ax, ode["alpha"], ode[name], corr)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if mc is not None:
            ref = ode[name] if corr is None else corr
            deviation_panel(
                axes[1, j],
                mc["alpha"],
                [(deviation_sem(mc[f"{name}_mean"], mc[f"{name}_sem"], ref, mc_dtype), color, None)],
                reference=reference,
                allowance=allowance,
            )
        else:
            ax.set_xlabel(ALPHA_LABEL)
    legend_outside(fig)
    fig.suptitle(title + (f"\n{note}" if note and mc is not None else ""), fontsize=10)
    return fig


def plot_order_parameters(
    ode: dict,
    mc: dict | None,
    path: str | None,
    title: str = "",
    *,
    corrected: dict | None = None,
    allowance: float = THRESHOLD,
    mc_dtype: Any = None,
    note: str = "",
) -> Figure:
    """R and b against alpha: the bare ODE (dashed), the ODE + O(1/N) curve the verdict uses (solid, when
    ``corrected``, :attr:`jaxadv.analysis.verdict.Verdict.corrected`, holds it), the Monte Carlo mean with
    a ±2 SE band; under each, the deviation of the Monte Carlo from the verdict's reference in standard
    errors with the verdict's allowance; ``note`` (e.g. why the verdict is not testable) under the title."""
    quantities = (("R", "C1", "R (overlap with the cluster axis)"), ("b", "C2", "b (bias)"))
    return _save(_panels(ode, mc, quantities, title, corrected, allowance, mc_dtype, note), path)


def plot_errors(
    ode: dict,
    mc: dict | None,
    path: str | None,
    eps_test: float,
    title: str = "",
    *,
    corrected: dict | None = None,
    allowance: float = THRESHOLD,
    mc_dtype: Any = None,
    note: str = "",
) -> Figure:
    """Clean test error and robust error at ``eps_test`` against alpha, as :func:`plot_order_parameters`."""
    quantities = (
        ("test_error", "C0", "clean test error"),
        ("robust_error", "C3", f"robust error (L2 attack of radius {eps_test:g})"),
    )
    return _save(_panels(ode, mc, quantities, title, corrected, allowance, mc_dtype, note), path)


def plot_robustness(
    table: dict,
    path: str | None,
    alpha_max: float,
    title: str = "",
    *,
    corrected: npt.ArrayLike | None = None,
    allowance: float = THRESHOLD,
    mc_dtype: Any = None,
) -> Figure:
    r"""Robust error at :math:`\alpha_\max` against the test radius ``eps_test``: the bare ODE (dashed),
    the ODE + O(1/N) curve (solid, ``corrected``, one value per radius, when the verdict uses the theory),
    Monte Carlo points with ±2 SE bars, and the deviation from the verdict's reference in standard errors."""
    has_mc = "robust_error_mc_mean" in table and np.isfinite(table["robust_error_mc_mean"]).any()
    rows = 2 if has_mc else 1
    fig = Figure(figsize=(6.0, 3.6 + 2.0 * (rows - 1)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]})
    ax = axes[0, 0]
    corr = None if corrected is None or not has_mc else np.asarray(corrected, float)
    reference_curves(ax, table["eps_test"], table["robust_error_ode"], corr)
    xlabel = "test radius eps_test (L2 attack)"
    if has_mc:
        mc_errorbar(ax, table["eps_test"], table["robust_error_mc_mean"], table["robust_error_mc_sem"], "C1")
        ref = table["robust_error_ode"] if corr is None else corr
        deviation_panel(
            axes[1, 0],
            table["eps_test"],
            [(deviation_sem(table["robust_error_mc_mean"], table["robust_error_mc_sem"], ref, mc_dtype), "C1", None)],
            reference=REFERENCE_BARE if corr is None else REFERENCE_CORRECTED,
            allowance=allowance,
            xlabel=xlabel,
        )
    else:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(f"robust error at alpha={alpha_max:g}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    legend_outside(fig, ncol=2)
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
    """Clean error (x) against robust error (y) at :math:`\\alpha_\\max`: ODE as open markers, the MC
    points filled with ±2 SE bars; labels placed so that none covers another label or
    a marker. With the Monte Carlo, a panel under it gives each defence's largest deviation from the
    curve its verdict uses (:class:`~jaxadv.analysis.defences.DefenceResult`: ``deviation_sem`` from the
    ODE + O(1/N), or ``raw_deviation_sem`` from the bare ODE where it is not testable). Returns the
    figure; saves it when ``path`` is given."""
    import matplotlib

    judged = [r for r in results if r.verdict]
    if judged:
        fig = Figure(figsize=(6.6, 7.0), layout="constrained")
        ax, dev_ax = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1.6]})
    else:
        fig = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax, dev_ax = fig.subplots(), None
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    pts, mc_pts, bars = [], [], []
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        ax.plot(r.ode_clean, r.ode_robust, "o", mfc="none", mec=c, ms=11, mew=1.5)
        if np.isfinite(r.mc_clean):
            ax.errorbar(
                r.mc_clean,
                r.mc_robust,
                xerr=BAND_SE * r.mc_clean_sem,
                yerr=BAND_SE * r.mc_robust_sem,
                fmt="o",
                color=c,
                ms=5,
                capsize=2,
            )
            mc_pts.append((r.mc_clean, r.mc_robust))
            bars.append((r.mc_clean, r.mc_robust, BAND_SE * r.mc_clean_sem, BAND_SE * r.mc_robust_sem))
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
    ax.plot([], [], "ko", ms=5, label=MC_LABEL)
    ax.set_xlabel("clean test error at alpha_max")
    ax.set_ylabel("robust error" + (f" at eps_test={eps_test:g} (L2)" if eps_test is not None else ""))
    ax.grid(alpha=0.3)
    ax.set_title(title or "defences", fontsize=10)
    if dev_ax is not None:
        _defence_deviations(dev_ax, results, colors)
    legend_outside(fig, ncol=2)
    return _save(fig, path)


def _defence_deviations(ax: Axes, results: Sequence[DefenceResult], colors: Sequence[Any]) -> None:
    """Each defence's largest deviation over the trajectory, in standard errors, from the curve its
    verdict uses: the ODE + O(1/N) (filled) where the theory applies, else the bare ODE (open, not judged)."""
    deviation_panel(
        ax, [], [], reference="the verdict's reference", allowance=THRESHOLD, xlabel="defence (training rule)"
    )
    top = 1.5 * THRESHOLD
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        if np.isfinite(r.deviation_sem):
            ax.plot([i], [r.deviation_sem], "o", color=c, ms=7, label=f"_from {REFERENCE_CORRECTED}")
            top = max(top, 1.15 * r.deviation_sem)
        elif np.isfinite(r.raw_deviation_sem):
            ax.plot(
                [i],
                [r.raw_deviation_sem],
                "o",
                mfc="white",
                mec=c,
                ms=7,
                label=f"_from {REFERENCE_BARE}",
            )
            top = max(top, 1.15 * r.raw_deviation_sem)
    ax.plot([], [], "o", color="0.3", ms=7, label=f"largest |z| from {REFERENCE_CORRECTED} (judged)")
    ax.plot([], [], "o", mfc="white", mec="0.3", ms=7, label=f"largest |z| from the {REFERENCE_BARE} (not testable)")
    ax.set_ylim(0, top)
    ax.set_xticks(range(len(results)), [r.name for r in results], fontsize=8)
    ax.set_xlim(-0.5, len(results) - 0.5)
    ax.set_ylabel("largest |MC − reference| / SE", fontsize=8)
