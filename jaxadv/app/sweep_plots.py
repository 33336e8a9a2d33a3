"""Figures of a sweep: heat maps over two swept axes and the clean-vs-robust trade-off.

Both take a :class:`jaxadv.SweepResult` (from :func:`jaxadv.app.sweep` or :func:`jaxadv.load_sweep`)
and write one file per requested format (``.png`` and ``.pdf`` by default). With the Monte Carlo,
:func:`plot_sweep_deviations` draws the final Monte Carlo and ODE values at every grid point and the
deviation of the Monte Carlo from the bare ODE in standard errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, overload

import numpy as np  # noqa: E402
from matplotlib.figure import Figure

__all__ = ["plot_sweep_heatmaps", "plot_tradeoff", "plot_sweep_deviations", "final_slice"]


class SweepView(Protocol):
    """What the figures read: a :class:`jaxadv.SweepResult`, or a committee sweep's view of one."""

    @property
    def axes(self) -> dict[str, Any]: ...
    @property
    def alpha(self) -> np.ndarray: ...
    @property
    def params(self) -> Any: ...
    @property
    def eps_test(self) -> Any: ...
    @property
    def test_error(self) -> np.ndarray | None: ...
    @property
    def robust_error(self) -> np.ndarray | None: ...


_LABELS = {"test_error": "test error", "robust_error": "robust error", "b": "b", "R": "R"}


def final_slice(result: SweepView, quantity: str, x: str, y: str, index: Mapping[str, int] | None = None) -> np.ndarray:
    """Values of ``quantity`` at the last save point as a 2-D array ``(len(y), len(x))`` over the
    swept axes ``x`` and ``y``; other swept axes are fixed at ``index[name]`` (default 0)."""
    names = list(result.axes)
    for a in (x, y):
        if a not in names:
            raise ValueError(f"axis {a!r} is not swept; swept axes: {names}")
    if x == y:
        raise ValueError(f"x={x!r} and y={y!r} must differ")
    arr = getattr(result, quantity, None) if quantity in _LABELS else None
    if arr is None:
        raise ValueError(f"quantity={quantity!r} is not available; one of {sorted(_LABELS)} (needs ode=true)")
    arr = arr[..., -1]
    index = dict(index or {})
    sl = tuple(slice(None) if n in (x, y) else int(index.get(n, 0)) for n in names)
    arr = arr[sl]
    kept = [n for n in names if n in (x, y)]
    return arr if kept == [y, x] else arr.T


def _fmt(v) -> str:
    """A grid value for a label: 3 significant digits (0.633 rather than 0.633333)."""
    return f"{float(v):.3g}"


def _robust_label(result) -> str:
    """Plain-language name of the robust error, with the radius it is measured at."""
    et = np.asarray(result.eps_test)
    if et.size and np.allclose(et, et.flat[0]):
        return f"robust error at eps_test={_fmt(et.flat[0])}"
    if "eps" in result.axes and np.allclose(et, np.asarray(result.params.eps)):
        return "robust error at eps_test = eps (varies)"
    return "robust error at each point's eps_test"


def _edges(v):
    """Cell edges around the grid values ``v`` (midpoints; the outer cells as wide as their neighbour)."""
    v = np.asarray(v, float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _ticks(ax, xs, ys):
    """Ticks at the grid values (thinned to at most 8 per axis)."""
    for vals, set_t, set_l in ((xs, ax.set_xticks, ax.set_xticklabels), (ys, ax.set_yticks, ax.set_yticklabels)):
        step = max(1, -(-len(vals) // 8))
        sel = np.asarray(vals)[::step]
        set_t(sel)
        set_l([_fmt(v) for v in sel], fontsize=7)


@overload
def plot_sweep_heatmaps(
    result: SweepView,
    x: str,
    y: str,
    path_stem: None = None,
    *,
    quantities: Sequence[str] = ...,
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> Figure: ...
@overload
def plot_sweep_heatmaps(
    result: SweepView,
    x: str,
    y: str,
    path_stem: str,
    *,
    quantities: Sequence[str] = ...,
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> list[str]: ...
def plot_sweep_heatmaps(
    result: SweepView,
    x: str,
    y: str,
    path_stem: str | None = None,
    *,
    quantities: Sequence[str] = ("test_error", "robust_error", "b"),
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    title: str = "",
) -> Figure | list[str]:
    """Heat maps of the final ``quantities`` over swept axes ``x`` (horizontal) and ``y``.

    One cell per grid point, centred on its value, ticks at the grid values; ``b`` uses a
    diverging map centred at 0. Writes ``path_stem.<fmt>`` for each format when ``path_stem`` is
    given and returns the list of paths; with ``path_stem=None`` returns the
    :class:`~matplotlib.figure.Figure`.
    """
    for q in quantities:
        final_slice(result, q, x, y, index)  # validates the axes and quantities before drawing
    fig = Figure(figsize=(4.0 * len(quantities), 3.6), layout="constrained")
    axes = fig.subplots(1, len(quantities), squeeze=False)
    xs, ys = np.asarray(result.axes[x]), np.asarray(result.axes[y])
    for ax, q in zip(axes[0], quantities, strict=True):
        z = final_slice(result, q, x, y, index)
        if q == "b":
            m = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
            m = m if m > 0 else 1.0
            kw = dict(cmap="RdBu_r", vmin=-m, vmax=m)  # centred at b = 0
        else:
            kw = dict(cmap="viridis")
        im = ax.pcolormesh(_edges(xs), _edges(ys), z, **kw)
        fig.colorbar(im, ax=ax, label="b (0 at the centre)" if q == "b" else None)
        _ticks(ax, xs, ys)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(_robust_label(result) if q == "robust_error" else _LABELS[q], fontsize=9)
    fixed = [f"{n}={_fmt(result.axes[n][int(dict(index or {}).get(n, 0))])}" for n in result.axes if n not in (x, y)]
    fig.suptitle(
        (title + ": " if title else "")
        + f"at alpha={result.alpha[-1]:g}"
        + (" (" + ", ".join(fixed) + ")" if fixed else ""),
        fontsize=10,
    )
    return fig if path_stem is None else _save_all(fig, path_stem, formats)


@overload
def plot_tradeoff(
    result: SweepView,
    path_stem: None = None,
    *,
    axis: str = "eps",
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> Figure: ...
@overload
def plot_tradeoff(
    result: SweepView,
    path_stem: str,
    *,
    axis: str = "eps",
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> list[str]: ...
def plot_tradeoff(
    result: SweepView,
    path_stem: str | None = None,
    *,
    axis: str = "eps",
    index: Mapping[str, int] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    title: str = "",
) -> Figure | list[str]:
    """Final robust error against final test error as the training ``axis`` (default ``eps``)
    varies; one curve per value of the first other swept axis. Returns the paths written, or the
    :class:`~matplotlib.figure.Figure` when ``path_stem`` is ``None``."""
    names = list(result.axes)
    if axis not in names:
        raise ValueError(f"axis={axis!r} is not swept; swept axes: {names}")
    if result.test_error is None or result.robust_error is None:
        raise ValueError("plot_tradeoff needs the ODE columns (a sweep with ode=true)")
    others = [n for n in names if n != axis]
    fig = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = fig.subplots()
    curves = range(len(result.axes[others[0]])) if others else [None]
    for j in curves:
        idx: dict[str, Any] = dict(index or {})
        if others:
            idx[others[0]] = j
        sl = tuple(slice(None) if n == axis else int(idx.get(n, 0)) for n in names)
        te, re = result.test_error[..., -1][sl], result.robust_error[..., -1][sl]
        label = f"{others[0]}={_fmt(result.axes[others[0]][j])}" if others else None
        (line,) = ax.plot(te, re, "o-", ms=3, label=label)
        ax.plot(te[:1], re[:1], "s", ms=6, mfc="none", color=line.get_color())
    ax.plot([], [], "ks", mfc="none", label=f"start: {axis}={_fmt(result.axes[axis][0])}")
    ax.set_xlabel("clean test error")
    ax.set_ylabel(_robust_label(result))
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7, title=f"{axis}: {_fmt(result.axes[axis][0])} to {_fmt(result.axes[axis][-1])}", title_fontsize=7
    )
    ax.set_title(title or f"trade-off as {axis} varies (alpha={result.alpha[-1]:g})", fontsize=10)
    return fig if path_stem is None else _save_all(fig, path_stem, formats)


def _point_labels(axes: Mapping[str, Any]) -> list[str]:
    """``"eps=0.5, prior=0.7"`` for every grid point, point-major (the last axis fastest)."""
    names = list(axes)
    grids = np.meshgrid(*(np.asarray(axes[n]) for n in names), indexing="ij")
    flat = [g.reshape(-1) for g in grids]
    return [", ".join(f"{n}={_fmt(f[i])}" for n, f in zip(names, flat, strict=True)) for i in range(flat[0].size)]


@overload
def plot_sweep_deviations(
    axes: Mapping[str, Any],
    series: Sequence[tuple[str, Any, Any, Any]],
    path_stem: None = None,
    *,
    alpha: float,
    note: str = "",
    dtype: Any = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> Figure: ...
@overload
def plot_sweep_deviations(
    axes: Mapping[str, Any],
    series: Sequence[tuple[str, Any, Any, Any]],
    path_stem: str,
    *,
    alpha: float,
    note: str = "",
    dtype: Any = None,
    formats: Sequence[str] = ...,
    title: str = "",
) -> list[str]: ...
def plot_sweep_deviations(
    axes: Mapping[str, Any],
    series: Sequence[tuple[str, Any, Any, Any]],
    path_stem: str | None = None,
    *,
    alpha: float,
    note: str = "",
    dtype: Any = None,
    formats: Sequence[str] = ("png", "pdf"),
    title: str = "",
) -> Figure | list[str]:
    """Monte Carlo against ODE at the last save point of every grid point: for each ``(label, mc_mean,
    mc_sem, ode)`` (arrays over the grid, any shape, flattened point-major) the values (ODE crosses,
    Monte Carlo points with ±2 SE bars) and, under them, the deviation from the bare ODE in standard
    errors with the allowance :data:`jaxadv.analysis.verdict.THRESHOLD` (a sweep has no O(1/N)
    verdict; ``note`` says so in the figure). Returns the figure, or the paths written."""
    from ..analysis.verdict import THRESHOLD
    from .plots import REFERENCE_BARE, deviation_panel, deviation_sem, legend_outside, mc_errorbar

    labels = _point_labels(axes)
    x = np.arange(len(labels))
    step = max(1, -(-len(labels) // 12))
    ncol = min(4, len(series))
    nrow = -(-len(series) // ncol)
    fig = Figure(figsize=(max(6.0, 3.4 * ncol), 5.2 * nrow + 0.4), layout="constrained")
    grid = fig.subplots(2 * nrow, ncol, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 2] * nrow})
    for i in range(len(series), nrow * ncol):  # empty cells of the last row
        grid[2 * (i // ncol), i % ncol].set_visible(False)
        grid[2 * (i // ncol) + 1, i % ncol].set_visible(False)
    for i, (label, mean, sem, ode) in enumerate(series):
        mean, sem, ode = (np.asarray(a, float).reshape(-1) for a in (mean, sem, ode))
        r, j = 2 * (i // ncol), i % ncol
        ax = grid[r, j]
        ax.plot(x, ode, "kx", ms=6, label=f"{REFERENCE_BARE} (N → ∞)")
        mc_errorbar(ax, x, mean, sem, f"C{i % 10}", label=None)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        deviation_panel(
            grid[r + 1, j],
            x,
            [(deviation_sem(mean, sem, ode, dtype), f"C{i % 10}", None)],
            reference=REFERENCE_BARE,
            allowance=THRESHOLD,
            xlabel="grid point",
        )
        grid[r + 1, j].set_xticks(x[::step])
        grid[r + 1, j].set_xticklabels(labels[::step], rotation=90, fontsize=6)
        grid[r + 1, j].tick_params(labelbottom=True)
    from matplotlib.lines import Line2D

    proxy = Line2D([], [], color="0.3", marker="o", ls="none", ms=3, label="Monte Carlo mean ± 2 SE")
    legend_outside(fig, [grid[0, 0], grid[1, 0]], ncol=3, handles=[proxy])
    fig.suptitle(
        (title + ": " if title else "") + f"Monte Carlo against ODE at alpha={alpha:g}" + (f"\n{note}" if note else ""),
        fontsize=9,
    )
    return fig if path_stem is None else _save_all(fig, path_stem, formats)


def _save_all(fig, stem, formats):
    from .io import write_figure

    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        write_figure(path, fig)
    return paths
