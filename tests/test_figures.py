"""Every Monte-Carlo-against-ODE figure of every command has a deviation panel against the curve its
verdict uses (issue 22), read through the matplotlib Figure objects (axes labels, artists' labels and
data), never pixels.

``jaxadv run`` runs once, tiny, through the command line, with its figure functions and its verdict
wrapped to keep what they return; the other commands' figure functions are called in-process on
small tables of the shape their command builds. A deviation panel is an axes whose label is
``"deviation from <reference>"`` (:func:`jaxadv.app.plots.deviation_panel`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jaxadv.app.plots import REFERENCE_BARE, REFERENCE_CORRECTED, deviation_sem

ALLOWANCE = 4.0


def deviation_axes(fig):
    return [ax for ax in fig.axes if ax.get_label().startswith("deviation from ")]


def reference(ax):
    return ax.get_label().removeprefix("deviation from ")


def check_allowance(ax):
    """The verdict's allowance is drawn as a band labelled with its value."""
    bands = [p for p in ax.patches if p.get_label().startswith("verdict allowance")]
    assert len(bands) == 1 and bands[0].get_label().endswith(f"≤ {ALLOWANCE:g}"), ax.get_label()
    band = bands[0]  # axhspan: a rectangle (a polygon in older matplotlib) from -allowance to +allowance
    if hasattr(band, "get_height"):
        lo, hi = band.get_y(), band.get_y() + band.get_height()
    else:
        y = np.asarray(band.get_xy())[:, 1]
        lo, hi = y.min(), y.max()
    assert lo == pytest.approx(-ALLOWANCE) and hi == pytest.approx(ALLOWANCE)


def z_lines(ax, n):
    """The deviation lines of a panel (``n`` points each), the zero line left out."""
    zero = ax.get_yaxis_transform()
    return [
        np.asarray(line.get_ydata(), float)
        for line in ax.get_lines()
        if len(line.get_xdata()) == n and line.get_transform() != zero
    ]


class Columns(dict):
    """A table whose every missing column is a smooth curve of ``n`` rows (means) or 0.01 (``_sem``)."""

    def __init__(self, n, **cols):
        super().__init__(**cols)
        self.n = n

    def __missing__(self, key):
        x = np.linspace(0.0, 1.0, self.n)
        value = np.full(self.n, 0.01) if key.endswith("_sem") else 0.3 + 0.1 * x + 0.01 * (len(key) % 7)
        self[key] = value
        return value


@pytest.fixture(scope="module")
def run_result(tmp_path_factory):
    """One tiny ``jaxadv run scenario1`` (N large enough for the O(1/N) theory to apply), keeping its
    figures, the keyword arguments they were drawn with, and its verdict."""
    import jaxadv.app.figures as run_mod
    import jaxadv.students.unit as unit_mod
    from jaxadv.app.cli import main

    kept: dict = {"figures": {}}
    mp = pytest.MonkeyPatch()

    def keep(name):
        fn = getattr(run_mod, name)

        def wrapped(*args, **kwargs):
            fig = fn(*args, **kwargs)
            kept["figures"][name] = (fig, args, kwargs)
            return fig

        mp.setattr(run_mod, name, wrapped)

    for name in ("plot_order_parameters", "plot_errors", "plot_robustness"):
        keep(name)
    verdict = unit_mod.verdict

    def keep_verdict(*args, **kwargs):
        kept["verdict"] = v = verdict(*args, **kwargs)
        return v

    mp.setattr(unit_mod, "verdict", keep_verdict)
    out = tmp_path_factory.mktemp("figures_run") / "run"
    sizes = ["N=200", "alpha_max=1", "n_save=2", "replicas=16"]
    try:
        assert main(["run", "scenario1", "--out", str(out), "--quiet", *sum((["--set", s] for s in sizes), [])]) == 0
    finally:
        mp.undo()
    kept["info"] = json.loads((out / "config.json").read_text())
    return kept


def test_run_figures_deviate_from_the_ode_plus_the_o1n_theory(run_result):
    v = run_result["verdict"]
    assert v.status == "consistent" and v.corrected, v.text  # the theory applies at this size
    assert run_result["info"]["verdict"] == v.text
    for name, quantities in (("plot_order_parameters", ("R", "b")), ("plot_errors", ("test_error", "robust_error"))):
        fig, (ode, mc, *_), _ = run_result["figures"][name]
        panels = deviation_axes(fig)
        assert [reference(ax) for ax in panels] == [REFERENCE_CORRECTED] * 2, name
        for ax, q in zip(panels, quantities, strict=True):
            check_allowance(ax)
            (z,) = z_lines(ax, len(mc["alpha"]))
            want = deviation_sem(mc[f"{q}_mean"], mc[f"{q}_sem"], v.corrected[q], np.float32)
            np.testing.assert_allclose(z, want, rtol=1e-12, equal_nan=True)
            # the curves above draw both references, distinguishable
            top = fig.axes[list(fig.axes).index(ax) - 2]
            labels = {line.get_label(): line for line in top.get_lines()}
            corr = labels[REFERENCE_CORRECTED]
            bare = next(line for lab, line in labels.items() if lab.startswith(REFERENCE_BARE))
            assert corr.get_linestyle() != bare.get_linestyle()
            np.testing.assert_allclose(corr.get_ydata(), v.corrected[q])
            np.testing.assert_allclose(bare.get_ydata(), ode[q])
    fig, (table, *_), kwargs = run_result["figures"]["plot_robustness"]
    (ax,) = deviation_axes(fig)
    assert reference(ax) == REFERENCE_CORRECTED
    check_allowance(ax)
    (z,) = z_lines(ax, len(table["eps_test"]))
    want = deviation_sem(table["robust_error_mc_mean"], table["robust_error_mc_sem"], kwargs["corrected"], np.float32)
    np.testing.assert_allclose(z, want, rtol=1e-12, equal_nan=True)
    # at the verdict's own radius the robustness curve's correction is the verdict's, at the last save point
    eps_test = run_result["info"]["resolved"]["eps_test"]
    i = int(np.argmin(np.abs(np.asarray(table["eps_test"]) - eps_test)))
    if math.isclose(table["eps_test"][i], eps_test, abs_tol=1e-12):
        assert kwargs["corrected"][i] == pytest.approx(v.corrected["robust_error"][-1], rel=1e-9)


def test_run_figures_without_the_theory_deviate_from_the_bare_ode():
    from jaxadv import plot_errors, plot_order_parameters

    a = np.linspace(0, 2, 5)
    ode = {"alpha": a, "R": 0.1 * a, "b": -0.1 * a, "test_error": 0.5 - 0.02 * a, "robust_error": 0.8 - 0.02 * a}
    mc = {"alpha": a}
    for q in ("R", "b", "test_error", "robust_error"):
        mc[f"{q}_mean"], mc[f"{q}_sem"] = ode[q] + 0.02, np.full(5, 0.01)
    for fig in (plot_order_parameters(ode, mc, None, corrected={}), plot_errors(ode, mc, None, 1.0, corrected={})):
        panels = deviation_axes(fig)
        assert [reference(ax) for ax in panels] == [REFERENCE_BARE] * 2
        for ax in panels:
            check_allowance(ax)
            np.testing.assert_allclose(z_lines(ax, 5)[0], 2.0)
    assert deviation_axes(plot_order_parameters(ode, None, None)) == []  # ODE only: no Monte Carlo, no panel


def _committee_tables(K=2, D=2, P=4):
    a = np.linspace(0, 1, P)
    names = [f"Q_{k}_{m}" for k in range(1, K + 1) for m in range(k, K + 1)]
    names += [f"R_{k}_{j}" for k in range(1, K + 1) for j in range(1, D + 1)]
    names += [f"b_{k}" for k in range(1, K + 1)] + [f"v_{k}" for k in range(1, K + 1)]
    ode = {"alpha": a}
    for i, c in enumerate(names):
        ode[c] = np.ones(P) if c in ("Q_1_1", "Q_2_2") else 0.1 * i + 0.05 * a
    for c in ("clean_error", "robust_error", "fgm_error"):
        ode[c] = 0.4 - 0.1 * a
    mc = {"alpha": a}
    for c in ode:
        if c != "alpha":
            mc[f"{c}_mean"], mc[f"{c}_sem"] = ode[c] + 0.01, np.full(P, 0.01)
    cfg = {"name": "t", "eps": 0.5, "eps_test": None, "attack": "fgm", "train_v": False, "x64": False}
    return ode, mc, {**cfg, "N": 60, "replicas": 8}


def test_committee_figures_deviate_from_the_bare_ode():
    from jaxadv.app.figures import committee_figures

    ode, mc, cfg = _committee_tables()
    figs = committee_figures(ode, mc, 2, 2, cfg)
    for name in ("order_parameters", "errors"):
        panels = deviation_axes(figs[name])
        assert panels and all(reference(ax) == REFERENCE_BARE for ax in panels), name
        for ax in panels:
            check_allowance(ax)
            for z in z_lines(ax, 4):
                np.testing.assert_allclose(z, 1.0, atol=1e-5)  # (0.01 above the ODE) / 0.01
    # R, Q (off-diagonal only: the normalised diagonal does not move) and b; v is not trained
    assert len(deviation_axes(figs["order_parameters"])) == 3
    labels = [t.get_text() for leg in figs["order_parameters"].legends for t in leg.get_texts()]
    labels += [
        t.get_text() for ax in figs["order_parameters"].axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]
    assert "units 1, 2" in labels and not any("_" in lab.split(" ")[0] for lab in labels)  # words, no Q_1_2
    # units: a start marker for every unit, as the title promises
    units = figs["units"].axes[0]
    starts = [line for line in units.get_lines() if line.get_marker() == "o" and len(line.get_xdata()) == 1]
    assert len(starts) == 2
    no_mc = committee_figures(ode, None, 2, 2, cfg)
    assert all(deviation_axes(f) == [] for f in no_mc.values())


def test_transfer_figure_deviates_from_the_bare_pair_ode():
    from jaxadv.app.figures import VERDICT_QUANTITIES, plot_transfer

    P, G = 4, 3
    rows = lambda n, **c: Columns(n, eps_t=np.repeat([0.0, 1.0], n // 2), **c)
    ode = rows(2 * P, alpha=np.tile(np.linspace(0, 1, P), 2))
    mc = rows(2 * P, alpha=np.tile(np.linspace(0, 1, P), 2))
    for q, *_ in VERDICT_QUANTITIES:
        mc[f"{q}_mean"] = ode[q] + 0.02
    eps_cols = rows(2 * G, eps=np.tile(np.linspace(0, 1, G), 2))
    cfg = {"labels": "true", "eps_s": 0.0, "eps": 0.5, "alpha_max": 1.0, "name": "t", "stream": "s", "N": 60}
    fig = plot_transfer(ode, mc, eps_cols, {**cfg, "replicas": 5})
    panels = deviation_axes(fig)
    assert len(panels) == 2 and all(reference(ax) == REFERENCE_BARE for ax in panels)
    for ax in panels:
        check_allowance(ax)
        zs = z_lines(ax, P)
        assert len(zs) == len(VERDICT_QUANTITIES)
        np.testing.assert_allclose(zs, 2.0)
    legends = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 3  # one per row, anchored right of the row's last panel: outside the data
    for ax in legends:
        assert ax.get_legend().get_bbox_to_anchor().x0 >= ax.bbox.x1
    assert deviation_axes(plot_transfer(ode, None, eps_cols, {**cfg, "replicas": 5})) == []


def test_certified_figure_and_verdict_against_the_bare_ode():
    from jaxadv.app.certified import MEASURES, TRAININGS, certified_verdicts, plot_certified

    P = 4
    a = np.tile(np.linspace(0, 1, P), 3)
    training = np.repeat(np.array(TRAININGS), P)
    ode = {"training": training, "alpha": a, **{m: 0.3 + 0.05 * a for m in MEASURES}}
    mc = {"training": training, "alpha": a}
    for m in MEASURES:
        mc[f"{m}_mean"], mc[f"{m}_sem"] = ode[m] + 0.01, np.full(3 * P, 0.01)
    cfg = {"name": "c", "K": 2, "eps": 0.5, "attack": "fgm", "lipschitz": 1.0, "N": 60, "replicas": 3, "x64": False}
    v = certified_verdicts(ode, mc, cfg)
    assert v["status"] == "consistent" and set(v["trainings"]) == set(TRAININGS)
    assert all(t.raw_z_max == pytest.approx(1.0, abs=1e-4) for t in v["trainings"].values())
    fig = plot_certified(ode, mc, cfg)
    panels = deviation_axes(fig)
    assert len(panels) == 6 and all(reference(ax) == REFERENCE_BARE for ax in panels)
    for ax in panels:
        check_allowance(ax)
        np.testing.assert_allclose(z_lines(ax, P), 1.0, atol=1e-4)


def test_sweep_figures_deviate_from_the_bare_ode(monkeypatch, tmp_path):
    import jaxadv.app.sweep_plots as sp
    from jaxadv import ModelParams
    from jaxadv.app.committee_sweep import CommitteeSweepResult, write_committee_sweep_figures
    from jaxadv.app.sweep import SweepResult, write_sweep_figures

    kept = []
    plot = sp.plot_sweep_deviations

    def keep(axes, series, path_stem=None, **kw):
        kept.append((plot(axes, series, None, **kw), series))
        return plot(axes, series, path_stem, **kw)

    monkeypatch.setattr(sp, "plot_sweep_deviations", keep)
    G, P = (2, 2), 3
    axes = {"eps": np.array([0.0, 0.5]), "prior": np.array([0.5, 0.7])}
    curve = np.broadcast_to(np.linspace(0.1, 0.3, P), G + (P,)).copy()
    mc = {}
    for q in ("R", "b", "test_error", "robust_error"):
        mc[f"{q}_mean"], mc[f"{q}_sem"] = curve + 0.03, np.full(G + (P,), 0.01)
    p = ModelParams(*(np.full(G, x, float) for x in ModelParams()))
    res = SweepResult(axes, np.linspace(0, 1, P), p, np.full(G, 1.0), curve, curve, curve, curve, mc)
    write_sweep_figures(res, str(tmp_path / "u"), "u")
    # the committee sweep: final values, the frozen diagonal of Q left out
    K, D, n = 2, 1, 4
    traj = lambda *s: np.broadcast_to(np.linspace(0.1, 0.2, P)[(...,) + (None,) * len(s)], G + (P, *s)).copy()
    Q = traj(K, K)
    Q[..., 0, 0] = Q[..., 1, 1] = 1.0
    table = {"max_dev_sem": np.zeros(n)}
    for c, x in (("Q_1_1", 1.0), ("Q_1_2", 0.2), ("Q_2_2", 1.0), ("R_1_1", 0.2), ("R_2_1", 0.2), ("b_1", 0.2)):
        table[c], table[f"{c}_mean"], table[f"{c}_sem"] = np.full(n, x), np.full(n, x + 0.03), np.full(n, 0.01)
    cres = CommitteeSweepResult(
        axes, np.linspace(0, 1, P), np.zeros(G), np.zeros(G), Q, traj(K, D), traj(K), None,
        np.full(G, 0.3), np.full(G, 0.4), {"n_finite": np.full(G, 4)}, table,
    )  # fmt: skip
    write_committee_sweep_figures(cres, str(tmp_path / "c"), "c")
    assert len(kept) == 2
    (unit_fig, unit_series), (com_fig, com_series) = kept
    assert len(com_series) == 4 and not any("|w_" in s[0] for s in com_series)  # Q_1_1, Q_2_2 frozen
    for fig, k in ((unit_fig, 4), (com_fig, 4)):
        panels = deviation_axes(fig)
        assert len(panels) == k and all(reference(ax) == REFERENCE_BARE for ax in panels)
        for ax in panels:
            check_allowance(ax)
            np.testing.assert_allclose(z_lines(ax, n), 3.0, rtol=1e-9)


def test_verify_figure_deviates_from_the_ode_plus_the_o1n_theory(tmp_path):
    from jaxadv.app.verify import _plot

    rows = []
    for N, sampler in ((20, "reduced"), (40, "reduced"), (20, "full")):
        row = {"N": N, "sampler": sampler}
        for q in ("R", "b"):
            row.update({
                f"std_{q}": 0.1 / N**0.5, f"std_{q}_pred": 0.1 / N**0.5, f"mean_dev_{q}": 1e-3,
                f"mean_dev_{q}_sem": 1.0, f"shift_pred_{q}": 1e-2 / N, f"resid_{q}_sem": 1.5, f"std_{q}_dev_se": 0.5,
            })  # fmt: skip
        rows.append(row)
    slopes = {f"{k}_{q}_{m}": -0.5 for q in ("R", "b") for k, m in (("std", "measured"), ("shift", "predicted"))}
    slopes.update({f"mean_dev_{q}_measured": float("nan") for q in ("R", "b")})
    fig = _plot(rows, slopes, str(tmp_path / "v.png"), "t")
    panels = deviation_axes(fig)
    assert len(panels) == 2 and all(reference(ax) == REFERENCE_CORRECTED for ax in panels)
    for ax in panels:
        check_allowance(ax)
        np.testing.assert_allclose(z_lines(ax, 2), [[1.5, 1.5], [0.5, 0.5]])  # the reduced ladder: mean, spread


def test_defences_figure_deviates_from_each_verdicts_reference():
    from jaxadv.analysis.defences import DefenceResult
    from jaxadv.app.plots import plot_defences

    nan = float("nan")
    base = (0.29, 0.63, 0.291, 0.003, 0.62, 0.004, 0.5, 0.1, 0.5, 0.01, 0.1, 0.01)
    res = [
        DefenceResult("none", *base, "consistent", 1.2, 1.3, ""),
        DefenceResult("noise", *base, "not testable", nan, 2.5, "no theory"),
    ]
    fig = plot_defences(res)
    (ax,) = deviation_axes(fig)
    check_allowance(ax)
    points = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 1}
    assert points == {f"_from {REFERENCE_CORRECTED}": 1.2, f"_from {REFERENCE_BARE}": 2.5}
    # ±2 SE bars: the error bar of the first defence spans 4 standard errors of its robust error
    segs = [c for c in fig.axes[0].collections if hasattr(c, "get_segments")]
    spans = sorted(abs(s[1][1] - s[0][1]) for c in segs for s in c.get_segments())
    assert spans[-1] == pytest.approx(4 * 0.004)
    assert deviation_axes(plot_defences([r._replace(verdict="") for r in res])) == []  # no Monte Carlo
