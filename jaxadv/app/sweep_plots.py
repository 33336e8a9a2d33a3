"""Figures of a sweep: heat maps over two swept axes and the clean-vs-robust trade-off.

Both take a :class:`jaxadv.SweepResult` (from :func:`jaxadv.app.sweep` or :func:`jaxadv.load_sweep`)
and write one file per requested format (``.png`` and ``.pdf`` by default).
"""
from __future__ import annotations

import os

from matplotlib.figure import Figure
import numpy as np  # noqa: E402


__all__ = ["plot_sweep_heatmaps", "plot_tradeoff", "final_slice"]

_LABELS = {"test_error": "test error", "robust_error": "robust error", "b": "b", "R": "R"}


def final_slice(result, quantity: str, x: str, y: str, index=None):
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


def plot_sweep_heatmaps(result, x: str, y: str, path_stem: str, *, quantities=("test_error", "robust_error", "b"),
                        index=None, formats=("png", "pdf"), title: str = ""):
    """Heat maps of the final ``quantities`` over swept axes ``x`` (horizontal) and ``y``.

    Writes ``path_stem.<fmt>`` for each format and returns the list of paths.
    """
    for q in quantities:
        final_slice(result, q, x, y, index)  # validates the axes and quantities before drawing
    fig = Figure(figsize=(4.2 * len(quantities), 3.6))
    axes = fig.subplots(1, len(quantities), squeeze=False)
    xs, ys = np.asarray(result.axes[x]), np.asarray(result.axes[y])
    for ax, q in zip(axes[0], quantities):
        z = final_slice(result, q, x, y, index)
        im = ax.pcolormesh(xs, ys, z, shading="nearest", cmap="viridis" if q != "b" else "RdBu_r")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{_LABELS[q]} at alpha={result.alpha[-1]:g}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_all(fig, path_stem, formats)


def plot_tradeoff(result, path_stem: str, *, axis: str = "eps", index=None, formats=("png", "pdf"), title: str = ""):
    """Final robust error against final test error as the training ``axis`` (default ``eps``)
    varies; one curve per value of the first other swept axis. Returns the paths."""
    names = list(result.axes)
    if axis not in names:
        raise ValueError(f"axis={axis!r} is not swept; swept axes: {names}")
    others = [n for n in names if n != axis]
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    curves = range(len(result.axes[others[0]])) if others else [None]
    for j in curves:
        idx = dict(index or {})
        if others:
            idx[others[0]] = j
        sl = tuple(slice(None) if n == axis else int(idx.get(n, 0)) for n in names)
        te, re = result.test_error[..., -1][sl], result.robust_error[..., -1][sl]
        label = f"{others[0]}={result.axes[others[0]][j]:g}" if others else None
        ax.plot(te, re, "o-", ms=3, label=label)
        ax.annotate(f"{axis}={result.axes[axis][0]:g}", (te[0], re[0]), fontsize=6)
        ax.annotate(f"{axis}={result.axes[axis][-1]:g}", (te[-1], re[-1]), fontsize=6)
    ax.set_xlabel("clean test error")
    ax.set_ylabel("robust error")
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=7)
    ax.set_title(title or f"trade-off as {axis} varies (alpha={result.alpha[-1]:g})")
    return _save_all(fig, path_stem, formats)


def _save_all(fig, stem, formats):
    from .io import write_figure

    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        write_figure(path, fig)
    return paths
