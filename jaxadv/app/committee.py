"""``jaxadv committee``: a two-layer committee under adversarial training, ODE and Monte Carlo.

A configuration is a preset (``committee``: scenario 2's two clusters with K = 2; ``xor``: four
clusters, K = 4) or a TOML file (``preset = "xor"`` optional, flat keys, and for a general
mixture a ``[mixture]`` table with ``centres``, ``variances``, ``priors``, ``labels``), then
``--set KEY=VALUE`` overrides. Matrices and vectors come from TOML arrays
(``R0 = [[0.3, 0.1], [0.05, 0.25]]``) or ``--set`` strings (``v=0.5,-0.5``, rows separated by
``;``: ``R0=0.3,0.1;0.05,0.25``).

The ODE starts from the given ``R0``/``Q0`` (``ode_start = "given"``, the default when both are
given, as in the presets; the Monte Carlo then builds every replica's weights with exactly these
overlaps) or from the Monte Carlo's measured mean initial overlaps (``ode_start = "mc"``, the
default without them, so both curves share their first point; note that the mean of random
starts is close to the symmetric plateau). ``config.json`` says which.

Files (each atomically): ``ode.csv`` (``alpha``, ``Q_k_l``, ``R_k_j``, ``b_k``, ``v_k``,
``clean_error``, and at the radius ``eps_test`` (default ``eps``) the exact worst-case ``robust_error``
and the ``fgm_error`` of the attack the committee trains with), ``mc.csv`` (the same order parameters,
mean and standard error over replicas, and with ``mc_errors`` the three errors of each replica's own
order parameters, ``_mean`` and ``_sem``; ``mc_errors`` defaults to K <= 2: at K = 4 each replica and save
point costs about 4 s on a loaded 2-core machine, against about 10 ms at K = 2; ``n_finite``, the replicas
whose order parameters are all finite at each save point: the others are left out of every mean),
``config.json`` (resolved configuration, deviations in standard errors, the verdict, timings; the verdict
is :func:`jaxadv.analysis.verdict.honest_verdict` on the order parameters: within 4 standard errors of
the bare ODE "consistent", beyond them "not testable", since committees have no O(1/N) theory, with the
raw deviation beside it),
``order_parameters.png``, ``units.png`` (the hidden units' directions in the (B_1, B_2) plane as
they learn) and ``errors.png``.

The Monte Carlo runs on the project's driver (:func:`jaxadv.app.checkpoint.simulate_committee_resumable`):
replicas split over all devices, a progress bar (off with ``--quiet``) and ``mc_checkpoint.npz``, written
after the first save interval and then every minute; Ctrl-C or SIGTERM saves it and the same command
resumes from it, with the same bits as an uninterrupted run. It is removed when the Monte Carlo ends.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.stats import mean_sem
from .io import write_csv, write_figure, write_json

if TYPE_CHECKING:
    from ..committee import GaussRule

__all__ = ["PRESETS", "load_committee_config", "run_committee"]


def _orthogonal_start(R0):
    """``Q0`` of unit weights whose parts outside span{B_j} are orthonormal: Q_kl = R_k . R_l (k != l)."""
    R0 = np.asarray(R0, float)
    Q0 = R0 @ R0.T
    np.fill_diagonal(Q0, 1.0)
    return Q0.tolist()


_XOR_R0 = [[0.4, 0.1], [-0.3, 0.2], [0.1, -0.35], [-0.15, -0.25]]
PRESETS = {
    "committee": {
        "data": "two_cluster",
        "prior": 0.7,
        "rho": 2.0,
        "v1": 1.0,
        "v2": 1.0,
        "K": 2,
        "eps": 0.5,
        "R0": [[0.3], [0.1]],
        "Q0": [[1.0, 0.2], [0.2, 1.0]],
        "b0": [0.1, -0.1],
        "N": 500,
        "alpha_max": 20.0,
        "n_save": 20,
    },
    "xor": {
        "data": "xor",
        "rho": 3.0,
        "var": 0.5,
        "K": 4,
        "eps": 0.3,
        "R0": _XOR_R0,
        "Q0": _orthogonal_start(_XOR_R0),
        "b0": [0.1, -0.1, 0.05, -0.05],
        "N": 200,
        "alpha_max": 40.0,
        "n_save": 20,
        "replicas": 32,
        "dt": 0.1,
    },
    "certified": {
        "data": "two_cluster",
        "prior": 0.7,
        "rho": 2.0,
        "v1": 1.0,
        "v2": 1.0,
        "K": 2,
        "eps": 0.5,
        "R0": [[0.3], [0.1]],
        "Q0": [[1.0, 0.2], [0.2, 1.0]],
        "b0": [0.1, -0.1],
        "v": [0.7, 0.3],
        "normalise": False,
        "lipschitz": 1.0,
        "N": 500,
        "alpha_max": 10.0,
        "n_save": 10,
        "replicas": 32,
    },
}
"""The presets: ``committee`` (scenario 2's data, K = 2) and ``xor`` (K = 4), each from given,
non-symmetric overlaps (symmetric starts sit on the plateau the ODE never leaves); ``certified``
(``committee``'s data, no per-unit normalisation, Lipschitz bound 1; ``jaxadv certified`` compares
standard, adversarial and Lipschitz-normalised training on it)."""

_RULE = {"eta_w": 1.0, "eta_b": 0.5, "eta_v": 0.0, "eps": 0.5, "hinge_margin": 0.0}
_SPEC = ("K", "train_v", "normalise", "attack", "pgd_steps", "pgd_step", "pgd_random_start", "loss", "lipschitz")
_PGD = ("attack", "pgd")
_USED_WHEN = {"pgd_steps": _PGD, "pgd_step": _PGD, "pgd_random_start": _PGD, "hinge_margin": ("loss", "hinge")}
"""Keys of one rule part: read only when the rule has that part (given otherwise, they are an error)."""


def load_committee_config(spec: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A preset name or TOML path, then ``KEY=VALUE`` overrides (:func:`jaxadv.app.config.read_config`);
    returns the resolved flat dict (plus ``mixture``, a dict of arrays, for ``data = "mixture"``). Raises
    ``ValueError`` naming an unknown key or a bad value."""
    from .config import load_any  # here: the parser (--help) must not import JAX

    return load_any(spec, overrides, "committee")[1]


def build_committee_config(r) -> dict[str, Any]:
    """The committee's checks across keys on a :class:`jaxadv.app.config.Resolved` (each key's own check has
    run); returns the resolved dict."""
    from .config import check_unused

    cfg, mixture = dict(r.values), r.mixture
    if mixture is not None:
        if not isinstance(mixture, dict):
            raise ValueError(f"mixture={mixture!r} must be a table with centres, variances, priors, labels")
        cfg["data"] = "mixture"
    if cfg["data"] == "mixture" and mixture is None:
        raise ValueError("data='mixture' needs a [mixture] table (centres, variances, priors, labels) in a TOML file")
    if cfg["ode_start"] is None:
        cfg["ode_start"] = "given" if cfg["R0"] is not None and cfg["Q0"] is not None else "mc"
    if cfg["replicas"] < 2:
        raise ValueError(f"replicas={cfg['replicas']!r} must be an integer >= 2")
    if cfg["mc_errors"] is None:
        cfg["mc_errors"] = cfg["K"] <= 2
    if cfg["ode_start"] == "given" and (cfg["R0"] is None or cfg["Q0"] is None):
        raise ValueError(
            "ode_start='given' needs both R0 and Q0 (a symmetric start sits on the plateau the ODE never leaves)"
        )
    parts = {k: (p, cfg[p]) for k, (p, want) in _USED_WHEN.items() if k in r.given and cfg[p] != want}
    check_unused({k: r.given[k] for k in parts}, lambda k: False, ", ".join(f"{p}={v!r}" for p, v in parts.values()))
    cfg["mixture"] = mixture
    _records(cfg)  # every record's own validator
    if cfg["eps_test"] is None:
        cfg["eps_test"] = cfg["eps"]  # validated as eps
    return cfg


def _records(cfg):
    """``(Mixture, CommitteeParams, CommitteeSpec)`` of a resolved configuration (validated)."""
    from ..committee import from_dicts

    if cfg["data"] == "xor":
        data = {"preset": "xor", "rho": cfg["rho"], "v": cfg["var"]}
    elif cfg["data"] == "two_cluster":
        data = {"preset": "two_cluster", **{k: cfg[k] for k in ("prior", "rho", "v1", "v2")}}
    else:
        data = {k: np.asarray(v, float) for k, v in cfg["mixture"].items()}
    mixture, params, spec = from_dicts(data, {k: cfg[k] for k in _RULE}, {k: cfg[k] for k in _SPEC})
    K = spec.K
    if cfg["v"] is not None and np.shape(cfg["v"]) != (K,):
        raise ValueError(f"v={cfg['v']!r} must have length K={K}")
    if cfg["b0"] is not None and np.shape(cfg["b0"]) != (K,):
        raise ValueError(f"b0={cfg['b0']!r} must have length K={K}")
    if cfg["v"] is not None and not spec.train_v and not np.any(np.asarray(cfg["v"], float)):
        raise ValueError(
            f"v={cfg['v']!r} with train_v = false: the committee outputs 0 for every input and never learns "
            "(nothing to compare); give a nonzero v or set train_v = true"
        )
    return mixture, params, spec


def ode_rule(K: int) -> GaussRule:
    """Quadrature of the K-dimensional ODE averages: :func:`jaxadv.committee.quadrature.default_rule`."""
    from ..committee.quadrature import default_rule

    return default_rule(K)


ERRORS = ("clean_error", "robust_error", "fgm_error")
"""The error columns of ``ode.csv`` (and, as ``_mean``/``_sem``, of ``mc.csv``), all at ``eps_test``."""


def _errors(states, mixture, eps_test: float, loss: str) -> dict:
    r"""``{clean_error, robust_error, fgm_error}`` of a batch of order parameters (``Q`` ``(..., K, K)``,
    ``R``, ``b``, ``v``), each of the batch's shape: :func:`jaxadv.committee.measures.clean_error`, the
    exact worst case :func:`~jaxadv.committee.measures.robust_error` and the FGM of the training loss
    :func:`~jaxadv.committee.measures.fgm_error` at radius ``eps_test``."""
    import jax
    import jax.numpy as jnp

    from ..committee import CommitteeState

    Q = np.asarray(states[0], np.float64)
    shape, K = Q.shape[:-2], Q.shape[-1]
    flat = CommitteeState(
        *(jnp.asarray(np.asarray(z, np.float64).reshape((-1,) + np.shape(z)[len(shape) :])) for z in states)
    )
    eps = jnp.asarray(eps_test, jnp.float64)
    mix = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), mixture)
    # fixed chunks, the last padded by repeating a state: one compiled program for every batch size
    chunk, n = (16 if K <= 2 else 1), Q.reshape(-1, K, K).shape[0]  # K = 4: about 0.7 GB a state
    if n == 0:  # no state (every replica diverged): no errors
        return {name: np.full(shape, np.nan) for name in ERRORS}
    pad = jax.tree.map(lambda z: jnp.concatenate([z, jnp.repeat(z[:1], -n % chunk, axis=0)]), flat)
    parts = [_error_chunk()(_rows(pad, i, i + chunk), mix, eps, loss) for i in range(0, n, chunk)]
    out = [np.concatenate([np.asarray(p[j], np.float64) for p in parts])[:n] for j in range(len(ERRORS))]
    return {name: x.reshape(shape) for name, x in zip(ERRORS, out, strict=True)}


def _rows(tree, lo: int, hi: int):
    import jax

    return jax.tree.map(lambda z: z[lo:hi], tree)


@functools.cache
def _error_chunk():
    """The jitted function ``(states, mixture, eps, loss) ->`` the three errors of every state of the batch
    ``states`` (``vmap``), compiled once per chunk shape (a closure mapped outside ``jit`` was traced and
    compiled again at every call, 12 s each). Built at first use: importing the CLI imports no JAX."""
    import jax

    from ..committee.measures import clean_error, fgm_error, robust_error

    def errors(states, mixture, eps, loss: str):
        def one(s):
            return clean_error(s, mixture), robust_error(s, mixture, eps), fgm_error(s, mixture, eps, loss)

        return jax.vmap(one)(states)

    return jax.jit(errors, static_argnames=("loss",))


def run_committee(
    cfg: dict[str, Any], out_dir: str, progress: bool = True, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run the Monte Carlo (unless ``mc`` is false) and the ODE of a committee configuration and
    write every output (module docstring). Returns the dict written to ``config.json``.

    The finished Monte Carlo stays in ``mc_checkpoint.npz`` until every file is written: a Ctrl-C or
    SIGTERM during the ODE or the figures raises :class:`jaxadv.app.errors.Interrupted` with all save
    intervals saved, and the rerun reads them back instead of simulating again."""
    from .checkpoint import finished_checkpoints

    with finished_checkpoints() as finished:
        return _run_committee(cfg, out_dir, progress, log, finished)


def _run_committee(cfg, out_dir, progress, log, finished):
    import jax
    import jax.numpy as jnp

    from .. import committee as cm
    from .checkpoint import simulate_committee_resumable

    mixture, params, spec = _records(cfg)
    K, D = spec.K, mixture.n_directions
    dtype = jnp.float64 if cfg["x64"] else jnp.float32
    v0 = None if cfg["v"] is None else np.asarray(cfg["v"], float)
    b0 = None if cfg["b0"] is None else np.asarray(cfg["b0"], float)
    given = {"Q0": cfg["Q0"], "R0": cfg["R0"]} if cfg["ode_start"] == "given" else {}
    timings: dict[str, Any] = {}
    info: dict[str, Any] = {}
    mc = None
    if cfg["mc"]:
        t = time.perf_counter()
        # on the driver with a checkpoint: a rerun after Ctrl-C / SIGTERM resumes bit for bit
        mc = simulate_committee_resumable(
            jax.random.key(cfg["seed"]),
            mixture,
            params,
            spec,
            N=cfg["N"],
            alpha_max=cfg["alpha_max"],
            n_save=cfg["n_save"],
            replicas=cfg["replicas"],
            b0=b0,
            v0=v0,
            dtype=dtype,
            progress=progress,
            checkpoint=os.path.join(out_dir, "mc_checkpoint.npz"),
            remove_checkpoint=False,  # kept until every file is written (run_committee)
            **given,
        )
        finished.append(os.path.join(out_dir, "mc_checkpoint.npz"))
        timings["mc_s"] = time.perf_counter() - t
        log(f"monte carlo: {cfg['replicas']} committees of K={K} at N={cfg['N']} in {timings['mc_s']:.1f}s")
    if cfg["ode_start"] == "mc":
        if mc is None:
            raise ValueError(
                "ode_start='mc' needs the Monte Carlo; use ode_start='given' with R0 and Q0 for the ODE alone"
            )
        start = {n: mean_sem(getattr(mc, n)[:, 0])[0] for n in ("Q", "R", "b", "v")}
        if spec.normalise:  # |w_k| = 1 exactly (the float32 mean is 1 to 1e-7)
            np.fill_diagonal(start["Q"], 1.0)
        start_from = "the Monte Carlo's mean initial overlaps"
    else:
        start = {"Q": np.asarray(cfg["Q0"]), "R": np.asarray(cfg["R0"]), "b": b0, "v": v0}
        start_from = "the given R0 and Q0"
    alpha_end = float(mc.alpha[-1]) if mc is not None else cfg["alpha_max"]
    t = time.perf_counter()
    ode = cm.solve_committee_ode(
        mixture,
        params,
        spec,
        alpha_end,
        cfg["n_save"],
        dt=cfg["dt"],
        Q0=start["Q"],
        R0=start["R"],
        b0=start["b"],
        v0=start["v"],
        rule=ode_rule(K),
    )
    timings["ode_s"] = time.perf_counter() - t
    eps_test = float(cfg["eps_test"])
    t = time.perf_counter()
    ode_cols = cm.columns(ode, mixture, errors=False)
    ode_cols.update(_errors((ode.Q, ode.R, ode.b, ode.v), mixture, eps_test, spec.loss))
    timings["ode_errors_s"] = time.perf_counter() - t
    write_csv(os.path.join(out_dir, "ode.csv"), ode_cols)
    log(
        f"ode (from {start_from}): {len(ode_cols['alpha'])} points to alpha={alpha_end:g} in {timings['ode_s']:.1f}s, "
        f"clean error {ode_cols['clean_error'][-1]:.4f}, at eps_test={eps_test:g}: robust error "
        f"{ode_cols['robust_error'][-1]:.4f}, FGM error {ode_cols['fgm_error'][-1]:.4f}"
    )
    if mc is not None:
        from ..analysis.verdict import honest_verdict

        mc_cols = {"alpha": mc.alpha}
        names = [c for c in ode_cols if c not in ("alpha",) + ERRORS]
        per = {n: np.asarray(getattr(mc, n), np.float64) for n in ("Q", "R", "b", "v")}
        # a replica counts at a save point where all its order parameters are finite (as the unit's mc.finite)
        fin = np.all([np.isfinite(z.reshape(z.shape[:2] + (-1,))).all(-1) for z in per.values()], axis=0)
        for c in names:
            kind, *idx = c.split("_")
            x = per[kind][tuple([slice(None), slice(None)] + [int(i) - 1 for i in idx])]
            mc_cols[f"{c}_mean"], mc_cols[f"{c}_sem"] = mean_sem(x, fin)
        n_ok = int(fin[:, -1].sum())
        if cfg["mc_errors"]:
            t = time.perf_counter()
            # each replica's errors from its own order parameters (exact for its weights), then mean and sem
            ok = fin.all(axis=1)  # the replicas finite at every save point
            states = tuple(z[ok] for z in (per["Q"], per["R"], per["b"], per["v"]))
            for name, x in _errors(states, mixture, eps_test, spec.loss).items():
                mc_cols[f"{name}_mean"], mc_cols[f"{name}_sem"] = mean_sem(x)
            timings["mc_errors_s"] = time.perf_counter() - t
        mc_cols["n_finite"] = fin.sum(axis=0)  # the verdict's count: all diverged is "undetermined"
        write_csv(os.path.join(out_dir, "mc.csv"), mc_cols)
        # order parameters only: no O(1/N) theory for committees, so the bare ODE with the allowance
        v = honest_verdict(
            mc_cols,
            ode_cols,
            params=None,
            N=cfg["N"],
            eps_test=eps_test,
            mc_dtype=np.dtype(dtype),
            theory=False,
            why_no_theory="no O(1/N) theory for committees",
            quantities=names,
            bare_allowance=True,
        )
        log(v.text)
        info.update(
            max_deviation_sem=v.raw_z_max,
            worst_quantity=v.raw_quantity,
            worst_alpha=v.raw_alpha,
            verdict=v.text,
            verdict_status=v.status,
            replicas_finite=n_ok,
        )
    info.update(
        config={k: v for k, v in cfg.items() if k != "mixture"},
        mixture={k: np.asarray(v).tolist() for k, v in mixture._asdict().items()},
        ode_start=cfg["ode_start"],
        ode_started_from=start_from,
        timings_s=timings,
    )
    write_json(os.path.join(out_dir, "config.json"), info)  # before the figures too: a failure there keeps it
    t = time.perf_counter()
    _figures(out_dir, ode_cols, mc_cols if mc is not None else None, K, D, cfg)
    timings["plots_s"] = time.perf_counter() - t
    write_json(os.path.join(out_dir, "config.json"), info)
    return info


def _figures(out_dir, ode, mc, K, D, cfg):
    for name, fig in committee_figures(ode, mc, K, D, cfg).items():
        write_figure(os.path.join(out_dir, f"{name}.png"), fig)


def _words(c: str, D: int) -> str:
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
    from matplotlib.figure import Figure

    from ..analysis.verdict import THRESHOLD
    from .plots import ALPHA_LABEL, REFERENCE_BARE, deviation_panel, deviation_sem, legend_outside, mc_band

    dtype = np.float64 if cfg["x64"] else np.float32
    note = "no O(1/N) theory for committees: the verdict judges against the bare ODE"
    title = f"{cfg['name']}: K={K}, eps={cfg['eps']:g}, attack={cfg['attack']}" + (
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
                ax.plot(ode["alpha"], ode[c], ls, color=color, lw=1.3, label=_words(c, D))
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
