"""``jaxadv certified``: what Lipschitz normalisation buys and costs against adversarial training.

One committee configuration (``jaxadv committee``'s presets, TOML files and ``--set`` keys; default
preset ``certified``) is trained three ways at the same radius ``eps``:

* ``standard`` -- no attack, no bound;
* ``adversarial`` -- the configuration's attack (``fgm``, ``pgd`` or ``worst``; ``fgm`` when it says
  ``none``) at ``eps``;
* ``lipschitz`` -- no attack, Lipschitz normalisation at ``lipschitz`` :math:`=L_\\max` (needs
  ``normalise = false``; :mod:`jaxadv.committee.lipschitz`).

For each, against alpha, the ODE (lines) and the Monte Carlo (replica means with standard errors)
give at the test radius ``eps``: the clean error, the error PGD leaves (``pgd_test_steps`` L2 steps of
:math:`2.5\\epsilon/T`; field-space PGD equals N-dimensional PGD; estimated as the exact worst-case
error minus the fraction of ``pgd_samples`` fields drawn from the order parameters on which the
worst case errs and PGD does not, :func:`state_errors`), the exact worst-case robust error, and the
certified errors of the Lipschitz and interval certificates (:mod:`jaxadv.committee.certified`), with
the bound :math:`L`. The Monte Carlo's errors are those of each replica's order parameters (exact for
its weights at any N).

Files (atomically): ``certified_ode.csv`` and ``certified_mc.csv`` (one row per training and save
point), ``certified.png``, ``config.json`` (configuration, final errors, timings and, with the Monte Carlo,
the verdict: ``verdict``, ``verdict_status`` and ``verdicts``, one per training, from
:func:`certified_verdicts`), and while it runs ``mc_checkpoint_<training>.npz``: each training's Monte
Carlo runs on the project's driver (:func:`jaxadv.app.checkpoint.simulate_committee_resumable`), written after
the first save interval and then every minute. Ctrl-C or SIGTERM saves it; the same command resumes from it
with the same bits as an uninterrupted run. Finished trainings keep their checkpoint until every file is
written; then all are removed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.stats import mean_sem

if TYPE_CHECKING:
    import jax
    from matplotlib.figure import Figure

    from ..committee import Mixture
    from ..committee.quadrature import GaussRule

__all__ = [
    "TRAININGS",
    "MEASURES",
    "VERDICT_MEASURES",
    "trainings",
    "state_errors",
    "run_certified",
    "checkpoint_path",
    "certified_verdicts",
    "plot_certified",
    "add_parser",
]

TRAININGS = ("standard", "adversarial", "lipschitz")
MEASURES = ("clean", "pgd", "worst", "interval", "lipschitz", "L", "pgd_missed")


def trainings(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: configuration}`` of the three trainings (module docstring); ``ValueError`` naming
    ``lipschitz`` when it is missing."""
    if cfg.get("lipschitz") is None:
        raise ValueError(
            "lipschitz=None: jaxadv certified needs the bound L_max of the Lipschitz-normalised "
            "training (--set lipschitz=1.0, with normalise=false)"
        )
    attack = cfg["attack"] if cfg["attack"] != "none" else "fgm"
    return {
        "standard": {**cfg, "attack": "none", "lipschitz": None},
        "adversarial": {**cfg, "attack": attack, "lipschitz": None},
        "lipschitz": {**cfg, "attack": "none"},
    }


def state_errors(
    key: jax.Array,
    states: Any,
    mixture: Mixture,
    eps: float,
    n_samples: int = 2000,
    pgd_steps: int = 20,
    rule: GaussRule | None = None,
) -> dict[str, np.ndarray]:
    """Every measure of :data:`MEASURES` for a batch of order parameters (``Q`` ``(P, K, K)``, ...):
    ``{name: (P,)}`` (NumPy). ``clean``, ``worst``, ``interval``, ``lipschitz`` by quadrature; the PGD
    error by a control variate: on ``n_samples`` fields per point (key ``fold_in(key, p)``) PGD's errors
    are a subset of the worst case's, so :math:`P_{PGD}=S-P(\text{worst-case error missed by PGD})`,
    the last term (``pgd_missed``) estimated on the samples."""
    import jax
    import jax.numpy as jnp

    from ..committee import CommitteeState
    from ..committee.certified import certified_error, sampled_errors
    from ..committee.lipschitz import lipschitz_bound
    from ..committee.measures import clean_error, robust_error

    Q, R, b, v = (np.asarray(z, np.float64) for z in states)
    out = {m: np.zeros(len(Q)) for m in MEASURES}
    for p in range(len(Q)):
        s = CommitteeState(*(jnp.asarray(z[p]) for z in (Q, R, b, v)))
        out["clean"][p] = float(clean_error(s, mixture, rule))
        out["worst"][p] = float(robust_error(s, mixture, eps, rule))
        out["interval"][p] = float(certified_error(s, mixture, eps, "interval", rule))
        out["lipschitz"][p] = float(certified_error(s, mixture, eps, "lipschitz", rule))
        smp = sampled_errors(jax.random.fold_in(key, p), s, mixture, eps, n_samples, pgd_steps)
        # control variate: PGD's misses are a subset of the worst case's errors, sample by sample, so
        # P_PGD = S - P(worst-case error that PGD misses), the last term from the samples (small variance)
        out["pgd_missed"][p] = float(np.mean(smp["worst"] & ~smp["pgd"]))
        out["pgd"][p] = out["worst"][p] - out["pgd_missed"][p]
        out["L"][p] = float(lipschitz_bound(s.Q, s.v))
    return out


#: the keys that drive the committees' order parameters (named when every replica diverges)
_DRIVERS = ("prior", "rho", "v1", "v2", "eps", "eta_w", "eta_b", "lipschitz")


def checkpoint_path(out_dir: str, training: str) -> str:
    """The Monte Carlo checkpoint of ``training`` (one of :data:`TRAININGS`) in ``out_dir``."""
    return os.path.join(out_dir, f"mc_checkpoint_{training}.npz")


def run_certified(
    cfg: dict[str, Any],
    out_dir: str,
    *,
    pgd_samples: int = 4000,
    pgd_test_steps: int = 20,
    mc_samples: int = 500,
    log: Callable[[str], Any] = print,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the three ways (ODE, and Monte Carlo unless ``cfg['mc']`` is false), measure, write every file.

    Each training's Monte Carlo runs on the driver with the checkpoint :func:`checkpoint_path`
    (:func:`jaxadv.app.checkpoint.simulate_committee_resumable`; a progress bar with ``progress``): Ctrl-C or
    SIGTERM saves it and the same call resumes from it with the same bits. A finished Monte Carlo stays in its
    checkpoint until every file is written (then all go): an interrupt during the measures, the ODE of a later
    training or the figures raises :class:`jaxadv.app.errors.Interrupted` with it, and the rerun reads it back
    instead of simulating again."""
    from .checkpoint import finished_checkpoints
    from .errors import RunFailed

    with finished_checkpoints() as finished:
        res, diverged = _run_certified(cfg, out_dir, pgd_samples, pgd_test_steps, mc_samples, log, progress, finished)
    if diverged:  # every file written (and the checkpoints gone): the Monte Carlo results are not usable
        raise RunFailed(
            f"all {cfg['replicas']} replicas of the {', '.join(diverged)} training{'s' * (len(diverged) > 1)} "
            f"diverged ({', '.join(f'{k}={cfg[k]:g}' for k in _DRIVERS)}); the Monte Carlo results written to "
            f"{out_dir} are not usable"
        )
    return res


def _run_certified(
    cfg: dict[str, Any],
    out_dir: str,
    pgd_samples: int,
    pgd_test_steps: int,
    mc_samples: int,
    log: Callable[[str], Any],
    progress: bool,
    finished: list[str],
) -> tuple[dict[str, Any], list[str]]:
    import jax
    import jax.numpy as jnp

    from .. import committee as cm
    from ..committee.quadrature import default_rule
    from ..students.committee import resolve
    from .checkpoint import simulate_committee_resumable
    from .io import write_csv, write_figure, write_json

    runs = trainings(cfg)
    for c in runs.values():
        resolve(c)  # every training validated before any work
    eps = float(cfg["eps"])
    key = jax.random.key(cfg["seed"])
    ode_cols: dict[str, Any] = {"training": [], "alpha": [], **{m: [] for m in MEASURES}}
    mc_cols: dict[str, Any] = {
        "training": [],
        "alpha": [],
        **{f"{m}_{s}": [] for m in MEASURES for s in ("mean", "sem")},
        "n_finite": [],
    }
    diverged: list[str] = []  # the trainings whose every replica diverged
    timings: dict[str, Any] = {}
    final: dict[str, Any] = {}
    for i, (name, c) in enumerate(runs.items()):
        _, mixture, params, spec = resolve(c)
        K = spec.K
        v0 = None if c["v"] is None else np.asarray(c["v"], float)
        b0 = None if c["b0"] is None else np.asarray(c["b0"], float)
        if c["R0"] is None or c["Q0"] is None:
            raise ValueError(
                "R0=None or Q0=None: jaxadv certified starts the ODE and the Monte Carlo from given overlaps R0 and Q0"
            )
        t = time.perf_counter()
        ode = cm.solve_committee_ode(
            mixture,
            params,
            spec,
            c["alpha_max"],
            c["n_save"],
            dt=c["dt"],
            Q0=c["Q0"],
            R0=c["R0"],
            b0=b0,
            v0=v0,
            rule=default_rule(K),
        )
        e = state_errors(
            jax.random.fold_in(key, 10 * i), (ode.Q, ode.R, ode.b, ode.v), mixture, eps, pgd_samples, pgd_test_steps
        )
        timings[f"{name}_ode_s"] = time.perf_counter() - t
        n = len(ode.alpha)
        ode_cols["training"] += [name] * n
        ode_cols["alpha"] += list(np.asarray(ode.alpha))
        for m in MEASURES:
            ode_cols[m] += list(e[m])
        final[name] = {"ode": {m: float(e[m][-1]) for m in MEASURES}}
        log(f"{name}: ODE at alpha={float(ode.alpha[-1]):g}: " + ", ".join(f"{m} {e[m][-1]:.4f}" for m in MEASURES))
        if not c["mc"]:
            continue
        t = time.perf_counter()
        # on the driver with a checkpoint: a rerun after Ctrl-C / SIGTERM resumes bit for bit
        mc = simulate_committee_resumable(
            jax.random.fold_in(key, 10 * i + 1),
            mixture,
            params,
            spec,
            N=c["N"],
            alpha_max=c["alpha_max"],
            n_save=c["n_save"],
            replicas=c["replicas"],
            Q0=c["Q0"],
            R0=c["R0"],
            b0=b0,
            v0=v0,
            dtype=jnp.float64 if c["x64"] else jnp.float32,
            checkpoint=checkpoint_path(out_dir, name),
            remove_checkpoint=False,  # kept until every file is written (run_certified)
            progress=progress,
            label=f"monte carlo ({name})",
        )
        finished.append(checkpoint_path(out_dir, name))
        reps = [r for r in range(c["replicas"]) if mc.finite[r].all()]
        per = [
            state_errors(
                jax.random.fold_in(key, 1000 * (i + 1) + r),
                (mc.Q[r], mc.R[r], mc.b[r], mc.v[r]),
                mixture,
                eps,
                mc_samples,
                pgd_test_steps,
            )
            for r in reps
        ]
        timings[f"{name}_mc_s"] = time.perf_counter() - t
        P = len(mc.alpha)
        mc_cols["training"] += [name] * P
        mc_cols["alpha"] += list(mc.alpha)
        final[name]["mc"] = {}
        # the replicas finite at every save point; the start counts them all (the verdict's diverged count)
        mc_cols["n_finite"] += [c["replicas"]] + [len(reps)] * (P - 1)
        if not reps:
            diverged.append(name)
        for m in MEASURES:
            x = np.stack([d[m] for d in per]) if per else np.full((0, P), np.nan)  # (replicas, P)
            mean, sem = mean_sem(x)
            mc_cols[f"{m}_mean"] += list(mean)
            mc_cols[f"{m}_sem"] += list(sem)
            final[name]["mc"][m] = [float(mean[-1]), float(sem[-1])]
        log(
            f"{name}: Monte Carlo ({len(reps)} replicas, N={c['N']}): "
            + ", ".join(f"{m} {final[name]['mc'][m][0]:.4f}±{final[name]['mc'][m][1]:.4f}" for m in MEASURES)
        )
    ode_cols = {k: np.asarray(v) for k, v in ode_cols.items()}
    write_csv(os.path.join(out_dir, "certified_ode.csv"), ode_cols)
    mc_table = None
    if mc_cols["alpha"]:
        mc_table = {k: np.asarray(v) for k, v in mc_cols.items()}
        write_csv(os.path.join(out_dir, "certified_mc.csv"), mc_table)
    verdict: dict[str, Any] = {}
    if mc_table is not None:
        v = certified_verdicts(ode_cols, mc_table, cfg)
        for tr, vt in v["trainings"].items():
            log(f"{tr}: {vt.text}")
        verdict = {
            "verdict": v["text"],
            "verdict_status": v["status"],
            "verdicts": {tr: vt.as_dict() for tr, vt in v["trainings"].items()},
        }
    info = {
        "config": {k: v for k, v in cfg.items() if k != "mixture"},
        "eps_test": eps,
        "trainings": {k: {"attack": r["attack"], "lipschitz": r["lipschitz"]} for k, r in runs.items()},
        "pgd_test": {
            "steps": pgd_test_steps,
            "step": "2.5 eps / steps",
            "ode_samples": pgd_samples,
            "mc_samples_per_replica": mc_samples,
        },
        "final": final,
        "timings_s": timings,
        **verdict,
    }
    write_json(os.path.join(out_dir, "config.json"), info)  # before the figure too: a failure there keeps it
    write_figure(os.path.join(out_dir, "certified.png"), plot_certified(ode_cols, mc_table, cfg))
    write_json(os.path.join(out_dir, "config.json"), info)
    return {"ode": ode_cols, "mc": mc_table, "info": info}, diverged


#: the measures the verdict compares with the bare ODE (PGD's error is sampled, with a noise of its own in
#: the ODE's column that the Monte Carlo's standard error does not hold: drawn, not judged)
VERDICT_MEASURES = ("clean", "worst", "interval", "lipschitz", "L")
_SEVERITY = ("INCONSISTENT", "undetermined", "not testable", "consistent")


def certified_verdicts(ode: dict[str, np.ndarray], mc: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
    """One :func:`jaxadv.analysis.verdict.honest_verdict` per training, as ``jaxadv committee`` calls it
    (committees have no O(1/N) theory: the bare ODE with the allowance), on :data:`VERDICT_MEASURES`;
    and the overall verdict, the most severe of the three. Returns ``{"trainings": {name: Verdict},
    "status": str, "text": str}``."""
    from ..analysis.verdict import honest_verdict

    out: dict[str, Any] = {}
    for tr in TRAININGS:
        so, sm = ode["training"] == tr, mc["training"] == tr
        if not sm.any():
            continue
        mc_cols = {"alpha": np.asarray(mc["alpha"][sm], float)}
        ode_cols = {"alpha": np.asarray(ode["alpha"][so], float)}
        for m in VERDICT_MEASURES:
            mc_cols[f"{m}_mean"], mc_cols[f"{m}_sem"] = mc[f"{m}_mean"][sm], mc[f"{m}_sem"][sm]
            ode_cols[m] = ode[m][so]
        if "n_finite" in mc:
            mc_cols["n_finite"] = np.asarray(mc["n_finite"][sm])
        out[tr] = honest_verdict(
            mc_cols,
            ode_cols,
            params=None,
            N=cfg["N"],
            eps_test=float(cfg["eps"]),
            mc_dtype=np.float64 if cfg["x64"] else np.float32,
            theory=False,
            why_no_theory="no O(1/N) theory for committees",
            quantities=VERDICT_MEASURES,
            bare_allowance=True,
        )
    status = min((v.status for v in out.values()), key=_SEVERITY.index, default="undetermined")
    text = f"{status}: " + "; ".join(f"{tr}: {v.text}" for tr, v in out.items())
    return {"trainings": out, "status": status, "text": text}


def plot_certified(ode: dict[str, np.ndarray], mc: dict[str, np.ndarray] | None, cfg: dict[str, Any]) -> Figure:
    """Clean, PGD, exact worst-case and certified errors and the bound L against alpha for the three
    trainings, one panel each (ODE lines, Monte Carlo points with ±2 standard errors) and, with the Monte
    Carlo, under each the deviation from the bare ODE in standard errors (the verdict's reference:
    committees have no O(1/N) theory) with the verdict's allowance."""
    from matplotlib.figure import Figure

    from ..analysis.verdict import THRESHOLD
    from .plots import (
        ALPHA_LABEL,
        MC_LABEL,
        REFERENCE_BARE,
        deviation_panel,
        deviation_sem,
        legend_outside,
        mc_errorbar,
    )

    panels = (
        ("clean", "clean test error"),
        ("pgd", "error under PGD (L2)"),
        ("worst", "exact worst-case error"),
        ("interval", "certified error (interval bound)"),
        ("lipschitz", "certified error (Lipschitz bound)"),
        ("L", "Lipschitz bound L of the committee"),
    )
    has_mc = mc is not None
    rows = 4 if has_mc else 2
    fig = Figure(figsize=(12, 9.5 if has_mc else 6.2), layout="constrained")
    ratios = [3, 1.8, 3, 1.8] if has_mc else [1, 1]
    axes = fig.subplots(rows, 3, squeeze=False, gridspec_kw={"height_ratios": ratios})
    colors = {"standard": "C0", "adversarial": "C3", "lipschitz": "C2"}
    attack = cfg["attack"] if cfg["attack"] != "none" else "fgm"
    names = {
        "standard": "standard training",
        "adversarial": f"adversarial training ({attack} attack)",
        "lipschitz": f"Lipschitz-normalised training (L_max={cfg['lipschitz']:g})",
    }
    dtype = np.float64 if cfg.get("x64") else np.float32
    for i, (m, title) in enumerate(panels):
        r, j = (i // 3) * (2 if has_mc else 1), i % 3
        ax = axes[r, j]
        zs = []
        for tr, col in colors.items():
            sel = ode["training"] == tr
            if not sel.any():
                continue
            ax.plot(ode["alpha"][sel], ode[m][sel], "-", color=col, lw=1.3, label=names[tr])
            if mc is not None:
                s = mc["training"] == tr
                if s.any():
                    mc_errorbar(
                        ax, mc["alpha"][s], mc[f"{m}_mean"][s], mc[f"{m}_sem"][s], col, label=None, ms=3.5, lw=0.8
                    )
                    zs.append((deviation_sem(mc[f"{m}_mean"][s], mc[f"{m}_sem"][s], ode[m][sel], dtype), col, None))
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if mc is not None:
            deviation_panel(
                axes[r + 1, j],
                mc["alpha"][mc["training"] == "standard"] if (mc["training"] == "standard").any() else mc["alpha"],
                zs,
                reference=REFERENCE_BARE,
                allowance=THRESHOLD,
                note="" if m in VERDICT_MEASURES else "not judged: PGD's error is sampled",
            )
        else:
            ax.set_xlabel(ALPHA_LABEL)
    from matplotlib.lines import Line2D

    proxies = [Line2D([], [], color="0.3", lw=1.3, label="lines: bare ODE (N → ∞)")]
    if has_mc:
        proxies.append(Line2D([], [], color="0.3", marker="o", ls="none", ms=3.5, label=f"points: {MC_LABEL}"))
    legend_outside(fig, [axes[0, 0]] + ([axes[1, 0]] if has_mc else []), ncol=3, handles=proxies)
    fig.suptitle(
        f"{cfg['name']}: K={cfg['K']}, test and training radius eps={cfg['eps']:g} (L2)"
        + (
            f"; Monte Carlo N={cfg['N']}, {cfg['replicas']} replicas; no O(1/N) theory for committees: the verdict "
            "judges against the bare ODE"
            if has_mc
            else " (ODE only)"
        ),
        fontsize=9,
    )
    return fig


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``jaxadv certified [PRESET_OR_TOML] [--set KEY=VALUE ...]``."""
    c = subparsers.add_parser(
        "certified",
        help="certified robustness of committees: standard, adversarial and "
        "Lipschitz-normalised training at the same eps (default preset certified)",
    )
    from .arguments import add_config_arguments

    add_config_arguments(
        c,
        "committee preset (default certified) or path to a .toml file",
        "results/certified",
        "--set lipschitz=0.8 --set attack=pgd",
        "ODE only",
        config_default="certified",
    )
    c.add_argument("--pgd-samples", type=int, default=4000, help="fields per ODE point for the PGD error")
    c.add_argument("--mc-samples", type=int, default=500, help="fields per replica and point for the PGD error")
    c.add_argument("--pgd-test-steps", type=int, default=20, help="PGD steps of the test attack (step 2.5 eps/steps)")
    c.set_defaults(func=certified_command)


def certified_command(args: argparse.Namespace) -> int:
    from .cli import check_run
    from .config import MAX_ATTACK_STEPS, check_count, load_any
    from .outputs import claim_output
    from .resources import check_fits, table_memory_bytes

    for name in ("pgd_samples", "mc_samples"):
        check_count(f"--{name.replace('_', '-')}", getattr(args, name))
    check_count("--pgd-test-steps", args.pgd_test_steps, 1, MAX_ATTACK_STEPS, " steps of a test attack: a typo")
    cfg = load_any(args.config, args.overrides, "committee")[1]
    if args.no_mc:
        cfg["mc"] = False
    trainings(cfg)
    for name in ("pgd_samples", "mc_samples"):  # the fields of one point's sampled attack, with its temporaries
        n = getattr(args, name)
        check_fits(table_memory_bytes(n, 16 * (cfg["K"] + 4), name), f"--{name.replace('_', '-')}={n}")
    if cfg["mc"]:  # before any computation: the memory and the step counter of each training's Monte Carlo
        check_run(cfg["N"], cfg["replicas"] * cfg["K"], cfg["n_save"], cfg["x64"], cfg["alpha_max"])
    out = args.out or os.path.join("results", "certified" if cfg["name"] == "certified" else f"{cfg['name']}_certified")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    ident = {k: v for k, v in cfg.items() if k != "mixture"}
    ident.update(
        mixture=cfg["mixture"],
        pgd_samples=args.pgd_samples,
        mc_samples=args.mc_samples,
        pgd_test_steps=args.pgd_test_steps,
    )
    with claim_output(out, {"config": ident}, overwrite=args.overwrite, command="certified"):
        log(f"jaxadv certified {cfg['name']} -> {out}")
        run_certified(
            cfg,
            out,
            pgd_samples=args.pgd_samples,
            pgd_test_steps=args.pgd_test_steps,
            mc_samples=args.mc_samples,
            log=log,
            progress=not args.quiet,
        )
    log(f"wrote {out}")
    return 0
