"""The figures of each student's run, ``{name: Figure}`` from what its ``compute`` returns
(:attr:`jaxadv.students.Outcome.figures`): :data:`STUDENT_FIGURES`.

* the unit (:func:`unit_figures`): ``order_parameters``, ``errors``, ``robustness``: where the verdict uses
  the O(1/N) theory, the ODE + O(1/N) curves (:attr:`~jaxadv.analysis.verdict.Verdict.corrected`; for the
  robustness curve :func:`jaxadv.students.unit.robustness_corrected`) beside the bare ODE, and the deviation
  panels against them; otherwise against the bare ODE, with the verdict's reason in the title;
* the committee (:func:`committee_figures`): ``order_parameters``, ``units``, ``errors``;
* the pair (:func:`plot_transfer`): ``transfer``.

The building blocks (bands, deviation panels, legends) are :mod:`jaxadv.app.plots`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .config import _fmt
from .plots import plot_errors, plot_order_parameters, plot_robustness

__all__ = ["STUDENT_FIGURES", "unit_figures", "committee_figures", "plot_transfer", "committee_words"]


def unit_figures(drawn: Any) -> dict[str, Figure]:
    """The unit's figures from ``(ode_cols, mc_cols, robustness, verdict, corrected robustness, alpha_end, cfg)``
    (none for a run without an ODE)."""
    if drawn is None:
        return {}
    ode_cols, mc_cols, rob, v, rob_corrected, alpha_end, cfg = drawn
    mc = mc_cols is not None
    title = f"{cfg.name}: p={cfg.prior:g}, rho={cfg.rho:g}, eps={_fmt(cfg.eps)}" + (
        f", N={cfg.N}, {cfg.replicas} replicas" if mc else " (ODE only)"
    )
    corrected = v.corrected if mc else {}
    style: dict[str, Any] = {"corrected": corrected, "mc_dtype": np.float64 if cfg.x64 else np.float32}
    if mc and not corrected:  # the verdict did not use the theory: say why; the panels show the bare ODE
        style["note"] = f"verdict {v.status}: {v.reason}"[:160]
    out = {
        "order_parameters": plot_order_parameters(ode_cols, mc_cols, None, title, **style),
        "errors": plot_errors(ode_cols, mc_cols, None, cfg.eps_test_value, title, **style),
    }
    style.pop("note", None)
    style["corrected"] = rob_corrected if corrected else None
    out["robustness"] = plot_robustness(rob, None, alpha_end, f"{title}: robust error at alpha={alpha_end:g}", **style)
    return out


def _committee(drawn: Any) -> dict[str, Figure]:
    ode, mc, K, D, cfg = drawn
    return committee_figures(ode, mc, K, D, cfg)


def _pair(drawn: Any) -> dict[str, Figure]:
    ode, mc, eps_cols, cfg = drawn
    return {"transfer": plot_transfer(ode, mc, eps_cols, cfg)}


def committee_words(c: str, D: int) -> str:
    """A column name in words: ``R_2_1`` -> ``unit 2 · B_1``, ``Q_1_2`` -> ``units 1, 2``, ``b_1`` -> ``unit 1``."""
    kind, *idx = c.split("_")
    if kind == "R":
        return f"unit {idx[0]}" + (f" · B_{idx[1]}" if D > 1 else "")
    if kind == "Q":
        return f"|w_{idx[0]}|²/N" if idx[0] == idx[1] else f"units {idx[0]}, {idx[1]}"
    return f"unit {idx[0]}"


def _style(c: str, i: int, K: int) -> tuple[str, str]:
    """Colour and line style of the ``i``-th column of its group: colour by unit (R, b, v, the diagonal of
    Q, dotted), the off-diagonal overlaps of Q in the colours after the units'; R_k2 dash-dotted."""
    kind, *idx = c.split("_")
    if kind == "Q" and idx[0] != idx[1]:
        return f"C{(K + i) % 10}", "-"
    style = ":" if kind == "Q" else ("-." if kind == "R" and idx[1] != "1" else "-")
    return f"C{(int(idx[0]) - 1) % 10}", style


def committee_figures(ode: dict, mc: dict | None, K: int, D: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The figures of a committee run, ``{name: matplotlib Figure}``: ``order_parameters`` (ODE lines and
    Monte Carlo ±2 SE bands of R, Q, b (and v when trained), each with the deviation of the Monte Carlo
    from the bare ODE in standard errors: committees have no O(1/N) theory, so the verdict judges against
    the bare ODE), ``units`` (each unit's path as it learns) and ``errors`` (the clean, worst-case and FGM
    errors at ``eps_test``, with the Monte Carlo and its deviation when measured)."""
    from ..analysis.verdict import THRESHOLD
    from .plots import ALPHA_LABEL, REFERENCE_BARE, deviation_panel, deviation_sem, legend_outside, mc_band

    dtype = np.float64 if cfg["x64"] else np.float32
    note = "no O(1/N) theory for committees: the verdict judges against the bare ODE"
    title = f"{cfg['name']}: K={K}, eps={_fmt(cfg['eps'])}, attack={cfg['attack']}" + (
        f", N={cfg['N']}, {cfg['replicas']} replicas" if mc is not None else " (ODE only)"
    )

    def constant(c):
        x = np.asarray(ode[c], float)
        return bool(np.all(np.abs(x - x[0]) < 1e-9))

    q_diag = [c for c in ode if c.startswith("Q_") and c.split("_")[1] == c.split("_")[2]]
    frozen_diag = bool(q_diag) and all(constant(c) for c in q_diag)
    groups = [
        ("R", "R: overlap with the cluster direction" + ("s" if D > 1 else ""), [c for c in ode if c.startswith("R_")]),
        (
            "Q",
            "Q: overlaps between the units" + (" (|w_k|²/N = 1, normalised)" if frozen_diag else ""),
            [c for c in ode if c.startswith("Q_") and not (frozen_diag and c in q_diag)],
        ),
        ("b", "b: biases", [c for c in ode if c.startswith("b_")]),
        ("v", "v: second-layer weights", [c for c in ode if c.startswith("v_")]),
    ]
    groups = [g for g in groups if g[2] and not (g[0] == "v" and not cfg["train_v"])]

    def panels(groups, fig_title, width):
        rows = 2 if mc is not None else 1
        fig = Figure(figsize=(width * len(groups), 3.0 + 2.0 * (rows - 1) + 0.5), layout="constrained")
        axes = fig.subplots(
            rows, len(groups), sharex="col", squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]}
        )
        for j, (_, gtitle, cols) in enumerate(groups):
            ax = axes[0, j]
            zs = []
            for i, c in enumerate(cols):
                color, ls = _style(c, i, K)
                ax.plot(ode["alpha"], ode[c], ls, color=color, lw=1.3, label=committee_words(c, D))
                if mc is not None and f"{c}_mean" in mc:
                    mc_band(ax, mc["alpha"], mc[f"{c}_mean"], mc[f"{c}_sem"], color, label=None, mean_line=False)
                    zs.append((deviation_sem(mc[f"{c}_mean"], mc[f"{c}_sem"], ode[c], dtype), color, None))
            ax.set_title(gtitle, fontsize=8)
            ax.grid(alpha=0.3)
            bottom = axes[-1, j]
            if mc is not None:
                deviation_panel(bottom, mc["alpha"], zs, reference=REFERENCE_BARE, allowance=THRESHOLD)
            else:
                bottom.set_xlabel(ALPHA_LABEL)
            handles, labels = ax.get_legend_handles_labels()
            bottom.legend(
                handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, fontsize=7, frameon=False
            )
        # the style: proxies for the ODE line and the Monte Carlo band, and the allowance band
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        proxies: list[Any] = [Line2D([], [], color="0.3", lw=1.3, label="lines: bare ODE (N → ∞)")]
        if mc is not None:
            proxies.append(Patch(color="0.3", alpha=0.3, lw=0, label="bands: Monte Carlo mean ± 2 SE"))
        legend_outside(fig, [axes[1, 0]] if mc is not None else [], ncol=3, handles=proxies)
        fig.suptitle(fig_title + (f"\n{note}" if mc is not None else ""), fontsize=9)
        return fig

    figs = {}
    figs["order_parameters"] = panels(groups, title, 3.6)

    # units: each unit's path, a hollow circle at the start and an arrow at the end; Monte Carlo means as dots
    fig = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = fig.subplots()
    if D >= 2:
        xs, ys, xlabel, ylabel = "R_{k}_1", "R_{k}_2", "R_k1 (overlap with B_1)", "R_k2 (overlap with B_2)"
    else:
        xs, ys, xlabel, ylabel = "R_{k}_1", "b_{k}", "R_k (overlap with the cluster direction)", "b_k (bias)"
    for k in range(1, K + 1):
        color = f"C{(k - 1) % 10}"
        x, y = np.asarray(ode[xs.format(k=k)]), np.asarray(ode[ys.format(k=k)])
        ax.plot(x, y, "-", color=color, lw=1.2, label=f"unit {k}")
        ax.plot(x[0], y[0], "o", mfc="white", mec=color, mew=1.5, ms=7, zorder=5)
        if len(x) > 1:
            ax.annotate(
                "",
                xy=(x[-1], y[-1]),
                xytext=(x[-2], y[-2]),
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.2},
            )
        if mc is not None:
            mx, my = mc[f"{xs.format(k=k)}_mean"], mc[f"{ys.format(k=k)}_mean"]
            ax.plot(mx, my, ".", color=color, ms=4, zorder=4)
    ax.plot([], [], "o", mfc="white", mec="0.3", ms=7, label="start")
    ax.plot([], [], "-", color="0.3", label="ODE path (arrow: end)")
    if mc is not None:
        ax.plot([], [], ".", color="0.3", ms=5, label="Monte Carlo mean at each save")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)
    if D >= 2:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    legend_outside(fig, ncol=3, fontsize=7)
    ax.set_title("hidden units as they learn", fontsize=9)
    figs["units"] = fig

    # errors: the three errors of the committee at eps_test
    eps_test = cfg["eps_test"] if cfg.get("eps_test") is not None else cfg["eps"]
    err_groups = [
        ("clean_error", "clean test error", ["clean_error"]),
        ("robust_error", f"worst-case error at radius {float(eps_test):g}", ["robust_error"]),
        ("fgm_error", f"error under the FGM attack at radius {float(eps_test):g}", ["fgm_error"]),
    ]
    err_groups = [g for g in err_groups if g[0] in ode]
    mc_err = mc if mc is not None and all(f"{g[0]}_mean" in mc for g in err_groups) else None
    has_mc_errors = mc_err is not None
    fig = Figure(figsize=(3.6 * len(err_groups), 3.2 + (2.0 if has_mc_errors else 0) + 0.4), layout="constrained")
    rows = 2 if has_mc_errors else 1
    axes = fig.subplots(
        rows, len(err_groups), sharex="col", squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]}
    )
    for j, (c, label, _) in enumerate(err_groups):
        ax = axes[0, j]
        color = f"C{j}"
        if mc_err is not None:
            mc_band(ax, mc_err["alpha"], mc_err[f"{c}_mean"], mc_err[f"{c}_sem"], color)
        ax.plot(ode["alpha"], ode[c], "--", color="k", lw=1.1, label=f"{REFERENCE_BARE} (N → ∞)")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if mc_err is not None:
            deviation_panel(
                axes[1, j],
                mc_err["alpha"],
                [(deviation_sem(mc_err[f"{c}_mean"], mc_err[f"{c}_sem"], ode[c], dtype), color, None)],
                reference=REFERENCE_BARE,
                allowance=THRESHOLD,
            )
        else:
            ax.set_xlabel(ALPHA_LABEL)
    legend_outside(fig, ncol=3)
    fig.suptitle(
        title
        + (f"\n{note}" if has_mc_errors else ("\nno Monte Carlo errors (mc_errors=false)" if mc is not None else "")),
        fontsize=9,
    )
    figs["errors"] = fig
    return figs


#: the order parameters the transfer verdict compares with the bare pair ODE, in words
VERDICT_QUANTITIES = (
    ("R_s", "C0", "surrogate's overlap R_s"),
    ("R_t", "C3", "target's overlap R_t"),
    ("Q", "k", "overlap of the two students Q"),
    ("b_s", "C2", "surrogate's bias b_s"),
    ("b_t", "C4", "target's bias b_t"),
)


def plot_transfer(
    ode: dict[str, Any], mc: dict[str, Any] | None, eps_cols: dict[str, Any], cfg: dict[str, Any]
) -> Figure:
    """One column per target radius: the target's errors against alpha (bare ODE dashed, Monte Carlo ±2 SE
    bands); the deviation of the Monte Carlo order parameters from the bare pair ODE in standard errors (what
    the verdict compares: the pair has no O(1/N) theory), with the verdict's allowance; and the errors against
    the attack radius at the last alpha. One legend per row, right of the data."""
    from .plots import BAND_SE, MC_LABEL, REFERENCE_BARE, deviation_panel, mc_band, mc_errorbar

    targets = sorted(set(np.asarray(ode["eps_t"]).tolist()))
    rows = 3 if mc is not None else 2
    fig = Figure(figsize=(3.6 * len(targets) + 2.6, 2.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, len(targets), squeeze=False, gridspec_kw={"height_ratios": [3, 2, 3][:rows]})
    lab = cfg["labels"]
    words = {"true": "true labels", "surrogate": "the surrogate's labels"}
    curves = (
        ("clean_t", "C0", "target's clean error"),
        ("robust_t", "C3", "target's white-box robust error (L2)"),
        (f"transfer_{lab}", "C2", f"transfer error (L2, {words[lab]})"),
        (f"rate_{lab}", "C4", "transfer rate (L2)"),
    )
    mc_name = {
        "clean_t": "clean_t",
        "robust_t": "robust_t",
        f"transfer_{lab}": f"transfer_l2_{lab}",
        f"rate_{lab}": f"rate_l2_{lab}",
    }
    floor_eps = np.finfo(np.float64 if cfg.get("x64") else np.float32).eps
    for j, e_t in enumerate(targets):
        so = np.asarray(ode["eps_t"]) == e_t
        ax = axes[0, j]
        sm = np.asarray(mc["eps_t"]) == e_t if mc is not None else None
        for name, color, label in curves:
            if mc is not None:
                m, s = np.asarray(mc[f"{mc_name[name]}_mean"])[sm], np.asarray(mc[f"{mc_name[name]}_sem"])[sm]
                mc_band(ax, np.asarray(mc["alpha"])[sm], m, s, color, None, mean_line=False)
            ax.plot(np.asarray(ode["alpha"])[so], np.asarray(ode[name])[so], "--", color=color, lw=1.3, label=label)
        if mc is not None:
            m = np.asarray(mc[f"transfer_linf_{lab}_mean"])[sm]
            ax.plot(
                np.asarray(mc["alpha"])[sm], m, ":", color="C1", lw=1.2, label=f"transfer error (L∞, {words[lab]}; MC)"
            )
            ax.fill_between([], [], [], color="0.5", alpha=0.3, lw=0, label=f"bands: {MC_LABEL}")
        ax.set_title(f"target trained at eps_t={e_t:g} (surrogate eps_s={cfg['eps_s']:g})", fontsize=8)
        ax.set_xlabel(r"$\alpha$ (examples / N)")
        ax.set_ylabel(f"error under attacks of radius {cfg['eps']:g}", fontsize=8)
        ax.grid(alpha=0.3)
        if mc is not None:
            zs = []
            for name, color, label in VERDICT_QUANTITIES:
                m, s = np.asarray(mc[f"{name}_mean"])[sm], np.asarray(mc[f"{name}_sem"])[sm]
                # as the verdict: a standard error at the simulation's round-off (a frozen target) resolves nothing
                floor = 10 * floor_eps * np.maximum(1.0, np.abs(m))
                with np.errstate(invalid="ignore", divide="ignore"):
                    z = np.where(s > floor, (m - np.asarray(ode[name])[so]) / s, np.nan)
                zs.append((z, color, label))
            deviation_panel(axes[1, j], np.asarray(mc["alpha"])[sm], zs, reference=REFERENCE_BARE, allowance=4.0)
        ax = axes[rows - 1, j]
        se = np.asarray(eps_cols["eps_t"]) == e_t
        x = np.asarray(eps_cols["eps"])[se]
        for name, color, label in (
            ("robust_t", "C3", "white-box L2 (ODE)"),
            ("transfer_true", "C2", "transfer L2, true labels (ODE)"),
            ("transfer_surrogate", "C9", "transfer L2, surrogate's labels (ODE)"),
        ):
            ax.plot(x, np.asarray(eps_cols[f"ode_{name}"])[se], "--", color=color, lw=1.3, label=label)
        if mc is not None:
            for kind, color, marker, label in (
                ("l2_true", "C2", "o", "transfer L2, true labels"),
                ("l2_surrogate", "C9", "s", "transfer L2, surrogate's labels"),
                ("linf_true", "C1", "^", "transfer L∞, true labels"),
                ("linf_surrogate", "C5", "v", "transfer L∞, surrogate's labels"),
            ):
                m, s = np.asarray(eps_cols[f"mc_{kind}_mean"])[se], np.asarray(eps_cols[f"mc_{kind}_sem"])[se]
                mc_errorbar(ax, x, m, s, color, label=f"{label} (MC ± {BAND_SE:g} SE)", fmt=marker, ms=3.5, lw=0.8)
            for lab2, color in (("true", "C1"), ("surrogate", "C5")):
                ax.plot(
                    x,
                    np.asarray(eps_cols[f"theory_linf_{lab2}_mean"])[se],
                    ":",
                    color=color,
                    lw=1.0,
                    label=f"transfer L∞, {words[lab2]}: closed form at the measured M = w_t·sign(w_s)",
                )
        ax.set_xlabel("attack radius eps (L∞ attack: eps/√N)", fontsize=8)
        ax.set_ylabel(f"error at alpha={cfg['alpha_max']:g}", fontsize=8)
        ax.grid(alpha=0.3)
    for r in range(rows):  # one legend per row, right of its last panel
        handles, labels = axes[r, 0].get_legend_handles_labels()
        axes[r, -1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=6.5, frameon=False)
    fig.suptitle(
        f"{cfg['name']}: stream={cfg['stream']}"
        + (
            f", N={cfg['N']}, {cfg['replicas']} replicas; the pair has no O(1/N) theory: the verdict judges "
            "against the bare ODE"
            if mc is not None
            else " (ODE only)"
        ),
        fontsize=9,
    )
    return fig


STUDENT_FIGURES: dict[str, Callable[[Any], dict[str, Figure]]] = {
    "unit": unit_figures,
    "committee": _committee,
    "pair": _pair,
}
"""Each student's figures, by the name of its record, from :attr:`jaxadv.students.Outcome.figures`."""
