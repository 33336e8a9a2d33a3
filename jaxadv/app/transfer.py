"""``jaxadv transfer``: attack transfer from a surrogate to a target student, ODE and Monte Carlo.

A configuration is a preset (``transfer``: independent streams, a standard surrogate, a standard and
an adversarially trained target; ``blackbox``: the surrogate trains on the target's predictions on the
same stream) or a TOML file (``preset = "blackbox"`` optional, flat keys), then ``--set KEY=VALUE``.
``eps_t`` may be a list (``--set eps_t=0,0.5``): one pair per target radius.

Keys: ``stream`` (independent, same, blackbox), ``labels`` (the attack label of the headline curve:
true or surrogate; both are always written), ``eps_s``, ``eps_t`` (training radii), ``eta_w_s``,
``eta_b_s``, ``eta_w_t``, ``eta_b_t``, ``target_frozen`` (the target does not learn: its learning rates
are 0), the data ``prior``, ``rho``, ``v1``, ``v2``, the start ``R_s0``, ``R_t0``, ``Q0``, ``b_s0``,
``b_t0``, ``eps`` (the attack radius of the curves against alpha), ``eps_grid`` (the radii of the curves
against eps at the last alpha), ``N``, ``alpha_max``, ``n_save``, ``replicas``, ``n_test`` (fresh
test examples per replica and save point), ``seed``, ``dt``, ``x64``, ``name``.

The L-infinity attack uses the radius ``eps / sqrt(N)`` (so that its shift :math:`\\epsilon\\|w\\|_1/\\sqrt N`
is of order eps); the ODE has no L-infinity overlap, so its theory is the closed form at the measured
:math:`M = w_t\\cdot\\operatorname{sign}(w_s)`.

Files (each atomically): ``ode.csv`` (``eps_t, alpha``, the order parameters and the closed-form
measures at ``eps``), ``mc.csv`` (the same as mean and standard error over replicas, the measured
transfer errors and rates in N dimensions, L2 and L-inf, both labels), ``eps.csv`` (against eps at
the last alpha: ODE and measured), ``config.json`` (configuration, largest deviations in standard
errors, verdict, timings) and ``transfer.png``.

The Monte Carlo of each target radius runs on the project's driver
(:func:`jaxadv.app.checkpoint.simulate_pair_resumable`): replicas split over all devices, a progress bar
(off with ``--quiet``) and ``mc_checkpoint_<i>.npz`` (``i``: the radius's place in ``eps_t``), written after
the first save interval and then every minute. Ctrl-C or SIGTERM saves it; after a SIGKILL the last one
written is there. The same command resumes from it with the same bits as an uninterrupted run; another
configuration in that folder is refused (``--overwrite`` replaces it). Finished radii keep their checkpoint
until every file is written; then all are removed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.stats import mean_sem
from .io import write_csv, write_figure, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PRESETS", "load_transfer_config", "run_transfer", "checkpoint_path", "plot_transfer"]

_COMMON = {
    "prior": 0.7,
    "eps_s": 0.0,
    "eps_t": [0.0, 1.0],
    "eta_w_s": 0.5,
    "eta_b_s": 0.5,
    "eta_w_t": 0.5,
    "eta_b_t": 0.5,
    "eps": 0.5,
    "N": 500,
    "alpha_max": 20.0,
    "n_save": 10,
    "replicas": 32,
}
PRESETS = {
    "transfer": {**_COMMON, "stream": "independent", "labels": "true"},
    "blackbox": {**_COMMON, "stream": "blackbox", "labels": "surrogate"},
}
"""The presets (every other key takes its default: :data:`jaxadv.app.config.KEYS`)."""


#: the largest target radius ``eps_t`` in millionths: it keys the radius's Monte Carlo (``fold_in``, 32 bits)
MAX_KEYED_RADIUS = 2**32 - 1


def measurement_memory_bytes(cfg: dict[str, Any]) -> tuple:
    """``(bytes, how)`` of the transfer measurement's test examples at one save point (every replica's
    ``n_test`` examples, their keys and their counts at each radius), for the memory check before a run."""
    from .resources import table_memory_bytes

    return table_memory_bytes(cfg["replicas"] * cfg["n_test"], 2 * len(cfg["eps_grid"]) + 16, "replicas x n_test")


def load_transfer_config(spec: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A preset name or TOML path, then ``KEY=VALUE`` overrides (:func:`jaxadv.app.config.read_config`);
    returns the resolved, validated flat dict. ``ValueError`` names an unknown key or a bad value."""
    from .config import load_any  # here: the parser (--help) must not import JAX

    return load_any(spec, overrides, "pair")[1]


def build_transfer_config(r) -> dict[str, Any]:
    """The pair's checks across keys on a :class:`jaxadv.app.config.Resolved`; returns the resolved dict."""
    from ..analysis.transfer import LABEL_MODES
    from ..model.pair import STREAMS

    cfg = dict(r.values)
    for key, allowed in (("stream", STREAMS), ("labels", LABEL_MODES)):
        if cfg[key] not in allowed:
            raise ValueError(f"{key}={cfg[key]!r} must be one of {list(allowed)}")
    if cfg["replicas"] < 2:
        raise ValueError(f"replicas={cfg['replicas']!r} must be an integer >= 2")
    for e in cfg["eps_t"]:  # each target radius, in millionths, keys its Monte Carlo (run_transfer): 32 bits
        if e * 1e6 > MAX_KEYED_RADIUS:
            raise ValueError(f"eps_t={e!r} is more than {MAX_KEYED_RADIUS / 1e6:.6g}, the largest target radius")
    _records(cfg)  # every record's own validator
    return cfg


def _records(cfg):
    """``[(eps_t, PairParams)]``, the :class:`PairSpec`, ``R0``, ``b0`` of a configuration (validated)."""
    from ..model.pair import PairSpec, check_pair_overlaps, pair_params
    from ..model.params import ModelParams

    spec = PairSpec(cfg["stream"])
    data = ModelParams(prior=cfg["prior"], rho=cfg["rho"], v1=cfg["v1"], v2=cfg["v2"])
    frozen = cfg["target_frozen"]
    pairs = [
        (
            e,
            pair_params(
                data,
                eps_s=cfg["eps_s"],
                eps_t=e,
                eta_w_s=cfg["eta_w_s"],
                eta_b_s=cfg["eta_b_s"],
                eta_w_t=0.0 if frozen else cfg["eta_w_t"],
                eta_b_t=0.0 if frozen else cfg["eta_b_t"],
                spec=spec,
            ),
        )
        for e in cfg["eps_t"]
    ]
    R0, b0 = (cfg["R_s0"], cfg["R_t0"], cfg["Q0"]), (cfg["b_s0"], cfg["b_t0"])
    check_pair_overlaps(*R0)
    return pairs, spec, R0, b0


#: the keys that drive the pair's order parameters (named when the ODE or the Monte Carlo leaves its domain)
_DRIVERS = ("prior", "rho", "v1", "v2", "eps_s", "eta_w_s", "eta_b_s", "eta_w_t", "eta_b_t", "b_s0", "b_t0")


def _check_ode(sol: Any, cfg: dict[str, Any], e_t: float) -> None:
    """``ValueError`` (before any Monte Carlo) when the pair ODE of target radius ``e_t`` leaves its domain:
    overlaps outside [-1, 1] or non-finite values, naming the keys that drive it (as ``jaxadv run`` refuses an
    untrustworthy ODE)."""
    overlaps = np.stack([np.asarray(getattr(sol, f), np.float64) for f in ("R_s", "R_t", "Q")])
    biases = np.stack([np.asarray(getattr(sol, f), np.float64) for f in ("b_s", "b_t")])
    bad = ~(np.all(np.abs(overlaps) <= 1.0, 0) & np.all(np.isfinite(biases), 0))
    if bad.any():
        raise ValueError(
            f"the pair ODE of eps_t={e_t:g} leaves its domain from "
            f"alpha={float(np.asarray(sol.alpha)[np.argmax(bad)]):g} "
            f"({', '.join(f'{k}={cfg[k]:g}' for k in _DRIVERS)}); lower the extreme value or dt={cfg['dt']:g}"
        )


def _table(cols: dict) -> dict:
    """The accumulated lists as arrays (``write_csv`` refuses columns of unequal length)."""
    return {k: np.asarray(v) for k, v in cols.items()}


def _closed(R_s, b_s, R_t, b_t, Q, eps, data, M=None):
    from ..analysis.transfer import transfer_table

    out = {k: np.asarray(v, np.float64) for k, v in transfer_table(R_s, b_s, R_t, b_t, Q, eps, data, M=M).items()}
    shape = np.broadcast_shapes(*(v.shape for v in out.values()))
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}


def checkpoint_path(out_dir: str, i: int) -> str:
    """The Monte Carlo checkpoint of the ``i``-th target radius (``eps_t``) in ``out_dir``."""
    return os.path.join(out_dir, f"mc_checkpoint_{i}.npz")


def run_transfer(
    cfg: dict[str, Any], out_dir: str, mc: bool = True, log: Callable[[str], Any] = print, progress: bool = False
) -> dict[str, Any]:
    """Run the pair ODE and (unless ``mc`` is false) the pair Monte Carlo of every target radius; write every
    file of the module docstring. Returns the dict written to ``config.json``.

    The Monte Carlo of target radius ``i`` runs on the driver with the checkpoint :func:`checkpoint_path`
    (:func:`jaxadv.app.checkpoint.simulate_pair_resumable`; a progress bar with ``progress``): an interrupted
    call saves it and the next call with the same configuration resumes from it, with the same bits; finished
    radii keep their checkpoint until every file is written, then all are removed: an interrupt after a finished
    Monte Carlo (during a later radius's ODE, the measures or the figures) raises
    :class:`jaxadv.app.errors.Interrupted` with it, and the rerun reads it back instead of simulating again."""
    from .checkpoint import finished_checkpoints

    with finished_checkpoints() as finished:
        return _run_transfer(cfg, out_dir, mc, log, progress, finished)


def _run_transfer(
    cfg: dict[str, Any], out_dir: str, mc: bool, log: Callable[[str], Any], progress: bool, finished: list[str]
) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from ..mc.pair import TRANSFER_KINDS
    from ..ode.pair import solve_pair_ode
    from .checkpoint import simulate_pair_resumable

    pairs, spec, R0, b0 = _records(cfg)
    dtype = jnp.float64 if cfg["x64"] else jnp.float32
    eps, grid = float(cfg["eps"]), np.asarray(cfg["eps_grid"], np.float64)
    radii = np.concatenate([[eps], grid])
    scale = 1.0 / math.sqrt(cfg["N"])
    ode_cols: dict[str, Any] = {}
    mc_cols: Any = {}  # the columns, or None without the Monte Carlo
    eps_cols: dict[str, Any] = {}
    add = lambda cols, name, v: cols.setdefault(name, []).extend(np.atleast_1d(np.asarray(v, np.float64)).tolist())
    timings, worst = {"ode_s": 0.0, "mc_s": 0.0}, (0.0, "", float("nan"), float("nan"))
    data = pairs[0][1].s
    for i_t, (e_t, pp) in enumerate(pairs):
        t = time.perf_counter()
        sol = solve_pair_ode(pp, spec, cfg["alpha_max"], cfg["n_save"], dt=cfg["dt"], R0=R0, b0=b0)
        timings["ode_s"] += time.perf_counter() - t
        _check_ode(sol, cfg, e_t)
        th = _closed(sol.R_s, sol.b_s, sol.R_t, sol.b_t, sol.Q, eps, data)
        P = sol.alpha.size
        add(ode_cols, "eps_t", np.full(P, e_t))
        add(ode_cols, "alpha", sol.alpha)
        for f in ("R_s", "R_t", "Q", "b_s", "b_t"):
            add(ode_cols, f, getattr(sol, f))
        for k, v in th.items():
            add(ode_cols, k, v)
        ex = lambda a: np.asarray(a)[-1:, None] if np.ndim(a) else a
        end = _closed(ex(sol.R_s), ex(sol.b_s), ex(sol.R_t), ex(sol.b_t), ex(sol.Q), grid[None, :], data)
        add(eps_cols, "eps_t", np.full(grid.size, e_t))
        add(eps_cols, "eps", grid)
        add(eps_cols, "eps_linf", grid * scale)
        for k, v in end.items():
            add(eps_cols, f"ode_{k}", v[0])
        log(
            f"ode eps_t={e_t:g}: alpha={sol.alpha[-1]:g} R_s={sol.R_s[-1]:.4f} R_t={sol.R_t[-1]:.4f} "
            f"Q={sol.Q[-1]:.4f}; "
            f"transfer({cfg['labels']}) at eps={eps:g}: {th['transfer_' + cfg['labels']][-1]:.4f}, white-box "
            f"{th['robust_t'][-1]:.4f}"
        )
        if not mc:
            continue
        t = time.perf_counter()
        stats: dict[str, Any] = {}
        # on the driver with a checkpoint: a rerun after Ctrl-C / SIGTERM / SIGKILL resumes bit for bit
        run = simulate_pair_resumable(
            jax.random.fold_in(jax.random.key(cfg["seed"]), int(round(e_t * 1e6))),
            pp,
            spec,
            N=cfg["N"],
            alpha_max=cfg["alpha_max"],
            n_save=cfg["n_save"],
            replicas=cfg["replicas"],
            R0=R0,
            b0=b0,
            eps_grid=radii,
            n_test=cfg["n_test"],
            dtype=dtype,
            linf_scale=scale,
            checkpoint=checkpoint_path(out_dir, i_t),
            remove_checkpoint=False,
            progress=progress,
            stats=stats,
            label=f"monte carlo eps_t={e_t:g}",
        )
        finished.append(checkpoint_path(out_dir, i_t))
        timings["mc_s"] += time.perf_counter() - t
        if stats["resumed_from"] == cfg["n_save"]:
            log(f"monte carlo eps_t={e_t:g}: read from its finished checkpoint")
        elif stats["resumed_from"]:
            log(f"monte carlo eps_t={e_t:g}: resumed at save interval {stats['resumed_from']} of {cfg['n_save']}")
        o = run.obs
        # the closed forms take the replicas that stayed finite (a diverged pair is reported, not an error)
        fin = np.all([np.isfinite(np.asarray(getattr(o, f))).all(axis=1) for f in o._fields], axis=0)
        if not fin.any():
            from .errors import RunFailed

            raise RunFailed(
                f"all {cfg['replicas']} pairs of eps_t={e_t:g} diverged in the Monte Carlo ("
                + ", ".join(f"{k}={cfg[k]:g}" for k in _DRIVERS)
                + "); lower the extreme value"
            )
        of = o._replace(**{f: np.asarray(getattr(o, f))[fin] for f in o._fields})
        add(mc_cols, "eps_t", np.full(P, e_t))
        add(mc_cols, "alpha", run.alpha)
        for f in o._fields:
            m, s = mean_sem(getattr(o, f))
            add(mc_cols, f"{f}_mean", m)
            add(mc_cols, f"{f}_sem", s)
            if f in ("R_s", "R_t", "Q", "b_s", "b_t"):
                # a standard error at the simulation's round-off (a frozen target) resolves nothing
                floor = 10 * np.finfo(np.dtype(dtype)).eps * np.maximum(1.0, np.abs(m[1:]))
                z = np.abs(m[1:] - getattr(sol, f)[1:]) / np.where(s[1:] > floor, s[1:], np.inf)
                i = int(np.argmax(z))
                if z[i] > worst[0]:
                    worst = (float(z[i]), f, float(run.alpha[1:][i]), e_t)
        for i, kind in enumerate(TRANSFER_KINDS):
            for what, arr in (("transfer", run.wrong[:, :, i, 0]), ("rate", run.flipped[:, :, i, 0] / run.right)):
                m, s = mean_sem(arr)
                add(mc_cols, f"{what}_{kind}_mean", m)
                add(mc_cols, f"{what}_{kind}_sem", s)
        # the closed form at each replica's measured weights (L2 and L-inf), averaged over replicas
        for norm, M in (("l2", None), ("linf", of.M * scale)):
            at = _closed(of.R_s, of.b_s, of.R_t, of.b_t, of.Q, eps, data, M=M)
            for lab in ("true", "surrogate"):
                m, s = mean_sem(at[f"transfer_{lab}"])
                add(mc_cols, f"theory_{norm}_{lab}_mean", m)
                add(mc_cols, f"theory_{norm}_{lab}_sem", s)
            if norm == "l2":  # the target's own clean and robust errors do not depend on the threat's M
                for name in ("clean_t", "robust_t"):
                    m, s = mean_sem(at[name])
                    add(mc_cols, f"{name}_mean", m)
                    add(mc_cols, f"{name}_sem", s)
        last = lambda a: np.asarray(a)[:, -1:, None]
        for i, kind in enumerate(TRANSFER_KINDS):
            m, s = mean_sem(run.wrong[:, -1, i, 1:])
            add(eps_cols, f"mc_{kind}_mean", m)
            add(eps_cols, f"mc_{kind}_sem", s)
        at = _closed(
            last(of.R_s),
            last(of.b_s),
            last(of.R_t),
            last(of.b_t),
            last(of.Q),
            grid[None, None, :],
            data,
            M=last(of.M) * scale,
        )
        for lab in ("true", "surrogate"):
            m, s = mean_sem(at[f"transfer_{lab}"][:, 0])
            add(eps_cols, f"theory_linf_{lab}_mean", m)
            add(eps_cols, f"theory_linf_{lab}_sem", s)
        k = TRANSFER_KINDS.index(f"l2_{cfg['labels']}")
        log(
            f"monte carlo eps_t={e_t:g}: {cfg['replicas']} pairs at N={cfg['N']}: Q={o.Q[:, -1].mean():.4f}, "
            f"measured transfer ({cfg['labels']}, L2) {run.wrong[:, -1, k, 0].mean():.4f} in {timings['mc_s']:.1f}s"
        )
    ode_cols = _table(ode_cols)
    write_csv(os.path.join(out_dir, "ode.csv"), ode_cols)
    info: dict[str, Any] = {}
    if mc:
        mc_cols, eps_cols = _table(mc_cols), _table(eps_cols)
        write_csv(os.path.join(out_dir, "mc.csv"), mc_cols)
        verdict = (
            ("consistent" if worst[0] <= 4.0 else "inconsistent")
            + f": largest |MC - ODE| {worst[0]:.2f} standard errors ({worst[1]} at alpha={worst[2]:g}, "
            f"eps_t={worst[3]:g}); allowance 4"
        )
        log(verdict)
        info.update(max_deviation_sem=worst[0], worst_quantity=worst[1], worst_alpha=worst[2], verdict=verdict)
    else:
        mc_cols, eps_cols = None, _table(eps_cols)
    write_csv(os.path.join(out_dir, "eps.csv"), eps_cols)
    info.update(config=cfg, linf_radius="eps / sqrt(N)", timings_s=timings)
    write_json(os.path.join(out_dir, "config.json"), info)  # before the figure too: a failure there keeps it
    t = time.perf_counter()
    write_figure(os.path.join(out_dir, "transfer.png"), plot_transfer(ode_cols, mc_cols, eps_cols, cfg))
    timings["plots_s"] = time.perf_counter() - t
    write_json(os.path.join(out_dir, "config.json"), info)
    return info


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
    from matplotlib.figure import Figure

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
