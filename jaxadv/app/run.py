"""``jaxadv run``: ODE and Monte Carlo for one configuration, written to a directory.

Files written (each atomically):

* ``ode.csv`` -- ``alpha,R,b,test_error,robust_error``
* ``mc.csv`` -- ``alpha,R_mean,R_sem,b_mean,b_sem,test_error_mean,test_error_sem,robust_error_mean,robust_error_sem``
* ``mc_replicas.npz`` -- ``alpha`` ``(P,)``, ``R`` and ``b`` ``(replicas, P)``
* ``robustness.csv`` -- ``eps_test,robust_error_ode,robust_error_mc_mean,robust_error_mc_sem`` at alpha_max
* ``config.json`` -- resolved parameters, versions, device, timings, ``ode_status`` and the verdict
  (:func:`jaxadv.analysis.verdict.honest_verdict`: ``verdict``, ``verdict_status``,
  ``max_deviation_sem`` against the ODE + O(1/N) theory, ``raw_max_deviation_sem`` against the bare
  ODE); strict JSON, ``null`` for a missing number
* ``order_parameters.png``, ``errors.png``, ``robustness.png``: where the verdict uses the O(1/N) theory,
  the ODE + O(1/N) curves (:attr:`~jaxadv.analysis.verdict.Verdict.corrected`; for the robustness curve
  :func:`robustness_corrected`) beside the bare ODE, and the deviation panels against them; otherwise
  against the bare ODE, with the verdict's reason in the title
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..analysis.compare import mc_summary, mean_sem, ode_table
from ..analysis.measures import robust_error
from ..analysis.verdict import honest_verdict
from ..mc import schedule
from ..mc.driver import save_schedule
from ..ode.solve import solve_ode
from .checkpoint import simulate_resumable
from .config import RunConfig, config_dict
from .errors import RunFailed
from .io import write_csv, write_json, write_npz
from .plots import plot_defences, plot_errors, plot_order_parameters, plot_robustness

if TYPE_CHECKING:
    from ..analysis.defences import DefenceResult
    from ..analysis.verdict import Verdict
    from ..ode.solve import ODEResult

__all__ = ["run", "run_mc_only", "run_defences", "run_verdict", "robustness_corrected", "check_ode", "RunFailed"]

MC_COLUMNS = (
    "alpha",
    "R_mean",
    "R_sem",
    "b_mean",
    "b_sem",
    "test_error_mean",
    "test_error_sem",
    "robust_error_mean",
    "robust_error_sem",
    "n_finite",
)


def run(cfg: RunConfig, out_dir: str, progress: bool = True, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the ODE (and the Monte Carlo unless ``cfg.mc`` is false) and write all outputs.

    Returns:
        The dictionary written to ``config.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    if cfg.rule.attack.field is None:
        return run_mc_only(cfg, out_dir, progress=progress, log=log)
    t_start = time.perf_counter()
    params = cfg.params
    eps_test = cfg.eps_test_value
    timings = {}
    steps, alpha = save_schedule(cfg.N, cfg.alpha_max, cfg.n_save)
    save_steps = schedule.save_steps(cfg.N, cfg.alpha_max, cfg.n_save, cfg.save, cfg.points_per_decade)
    if cfg.save != "linear":
        steps, alpha = int(np.max(np.diff(save_steps))), save_steps / cfg.N
    alpha_end = float(alpha[-1])
    R0_ode, b0_ode = (0.0 if cfg.R0 is None else cfg.R0), cfg.b0
    if cfg.ode_start == "mc":
        R0_ode, b0_ode = mc_start(cfg)
        log(f"ode starts at the Monte Carlo's measured initial point R={R0_ode:.6f}, b={b0_ode:.6f}")

    t = time.perf_counter()
    ode = solve_ode(
        params,
        alpha_end,
        cfg.n_save,
        dt=cfg.dt,
        R0=R0_ode,
        b0=b0_ode,
        rule=cfg.rule,
        rule_params=cfg.rule_params,
        save_alpha=None if cfg.save == "linear" else alpha,
    )
    ode = jax.block_until_ready(ode)
    timings["ode_s"] = time.perf_counter() - t
    ode_status = check_ode(ode, cfg, log)
    ode_cols = ode_table(ode, params, eps_test)
    write_csv(os.path.join(out_dir, "ode.csv"), ode_cols)
    log(
        f"ode: {len(alpha)} points to alpha={alpha_end:g} in {timings['ode_s']:.2f}s "
        f"(R={ode_cols['R'][-1]:.6f}, b={ode_cols['b'][-1]:.6f}; status {ode_status})"
    )

    eps_grid = np.round(np.linspace(0.0, cfg.eps_test_max_value, 41), 12)  # 0.15, not 0.15000000000000002
    rob = {"eps_test": eps_grid, "robust_error_ode": np.asarray(robust_error(ode.R[-1], ode.b[-1], eps_grid, params))}

    mc_cols = None
    summary = {}
    if cfg.mc:
        dtype = jnp.float64 if cfg.x64 else jnp.float32
        key = jax.random.key(cfg.seed, impl=cfg.prng)
        mc_stats: dict[str, Any] = {}
        t = time.perf_counter()
        mc = simulate_resumable(
            key,
            params,
            N=cfg.N,
            alpha_max=cfg.alpha_max,
            n_save=cfg.n_save,
            replicas=cfg.replicas,
            rule=cfg.rule,
            rule_params=cfg.rule_params,
            dtype=dtype,
            R0=cfg.R0,
            b0=cfg.b0,
            progress=progress,
            checkpoint=os.path.join(out_dir, "mc_checkpoint.npz"),
            B=cfg.B,
            sampler=cfg.sampler,
            generator=cfg.generator,
            stats=mc_stats,
            **_save_kwargs(cfg),
        )
        timings["mc_s"] = time.perf_counter() - t
        mc_cols = mc_summary(mc, params, eps_test)
        write_csv(os.path.join(out_dir, "mc.csv"), {k: mc_cols[k] for k in MC_COLUMNS})
        write_npz(
            os.path.join(out_dir, "mc_replicas.npz"), alpha=mc.alpha, R=mc.R, b=mc.b, norm=mc.norm, finite=mc.finite
        )
        fin = mc.finite[:, -1]
        S = np.asarray(
            robust_error(mc.R[:, -1:].astype(np.float64), mc.b[:, -1:].astype(np.float64), eps_grid[None, :], params)
        )
        rob["robust_error_mc_mean"], rob["robust_error_mc_sem"] = mean_sem(S, np.broadcast_to(fin[:, None], S.shape))
        t = time.perf_counter()
        v = run_verdict(cfg, mc_cols, ode_cols, eps_test)  # the O(1/N) theory it needs is an ODE solve too
        timings["verdict_s"] = time.perf_counter() - t
        summary = {
            "verdict": v.text,
            "verdict_status": v.status,
            "max_deviation_sem": v.z_max,
            "worst_quantity": v.quantity,
            "worst_alpha": v.alpha,
            "raw_max_deviation_sem": v.raw_z_max,
            "raw_worst_quantity": v.raw_quantity,
            "raw_worst_alpha": v.raw_alpha,
            "verdict_reason": v.reason,
            "not_tested": list(v.untested),
            "replicas_diverged": int(mc_cols["n_finite"][0] - mc_cols["n_finite"][-1]),
            "norm_w_max_abs_error": _nanmax_abs(mc.norm - 1.0),
        }
        total = int(save_steps[-1])
        done = mc_stats.get("steps_this_session", total)
        rate = cfg.replicas * done / timings["mc_s"]
        log(
            f"monte carlo: {cfg.replicas} replicas x {total} steps at N={cfg.N} in "
            f"{timings['mc_s']:.1f}s ({rate:.3g} replica-steps/s"
            + (f", {done} steps this session after a resume" if done != total else "")
            + ")"
        )
        if summary["replicas_diverged"]:
            log(
                f"warning: {summary['replicas_diverged']} of {cfg.replicas} replicas diverged; "
                "averages use the finite ones"
            )
        log(v.text)
    write_csv(os.path.join(out_dir, "robustness.csv"), rob)
    info = {
        "config": config_dict(cfg),
        "resolved": {
            "eps_test": eps_test,
            "eps_test_max": cfg.eps_test_max_value,
            "steps_per_save": steps,
            "ode_start": [R0_ode, b0_ode],
            **({"save_steps": save_steps} if cfg.save != "linear" else {}),
            "alpha_max_actual": alpha_end,
            "ode_dt": cfg.dt,
            "mc_dtype": "float64" if cfg.x64 else "float32",
            "ode_dtype": str(jnp.result_type(float)),
        },
        "jaxadv_version": __version__,
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        "device_count": jax.device_count(),
        "timings_s": timings,
        "seed": cfg.seed,
        **summary,
    }
    info["ode_status"] = ode_status
    # written before the figures and again after them: a failure at a figure (a full disk) keeps it
    write_json(os.path.join(out_dir, "config.json"), info)

    t = time.perf_counter()
    title = f"{cfg.name}: p={cfg.prior:g}, rho={cfg.rho:g}, eps={cfg.eps:g}" + (
        f", N={cfg.N}, {cfg.replicas} replicas" if cfg.mc else " (ODE only)"
    )
    corrected = v.corrected if cfg.mc else {}
    style: dict[str, Any] = {"corrected": corrected, "mc_dtype": np.float64 if cfg.x64 else np.float32}
    if cfg.mc and not corrected:  # the verdict did not use the theory: say why; the panels show the bare ODE
        style["note"] = f"verdict {v.status}: {v.reason}"[:160]
    plot_order_parameters(ode_cols, mc_cols, os.path.join(out_dir, "order_parameters.png"), title, **style)
    plot_errors(ode_cols, mc_cols, os.path.join(out_dir, "errors.png"), eps_test, title, **style)
    style.pop("note", None)
    style["corrected"] = (
        robustness_corrected(cfg, rob["eps_test"], rob["robust_error_ode"], ode_cols, alpha, v.fluctuations)
        if corrected
        else None
    )
    plot_robustness(
        rob,
        os.path.join(out_dir, "robustness.png"),
        alpha_end,
        f"{title}: robust error at alpha={alpha_end:g}",
        **style,
    )
    timings["plots_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start  # everything above, tables and robustness curve included
    write_json(os.path.join(out_dir, "config.json"), info)
    if summary.get("verdict_status") == "undetermined" and summary["replicas_diverged"] == cfg.replicas:
        raise RunFailed(f"all {cfg.replicas} replicas diverged; results written to {out_dir} are not usable")
    return info


def _save_kwargs(cfg) -> dict:
    """The save-point keys of :func:`jaxadv.simulate` (none for the default, equally spaced saves)."""
    return {} if cfg.save == "linear" else {"save": cfg.save, "points_per_decade": cfg.points_per_decade}


def mc_start(cfg) -> tuple:
    """The Monte Carlo's mean initial ``(R, b)``, measured on the same replicas (same key) as the run:
    the ODE's starting point with ``ode_start="mc"``."""
    from ..mc import driver

    plan = driver.plan_simulation(
        jax.random.key(cfg.seed, impl=cfg.prng),
        cfg.params,
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        n_save=cfg.n_save,
        replicas=cfg.replicas,
        rule=cfg.rule,
        rule_params_=cfg.rule_params,
        dtype=jnp.float64 if cfg.x64 else jnp.float32,
        R0=cfg.R0,
        b0=cfg.b0,
        B=cfg.B,
        sampler=cfg.sampler,
        generator=cfg.generator,
    )
    _, obs = driver.init_states(plan)
    return float(np.mean(obs[0], dtype=np.float64)), float(np.mean(obs[1], dtype=np.float64))


def _nanmax_abs(x):
    x = np.abs(np.asarray(x, float))
    return float(np.max(x[np.isfinite(x)])) if np.any(np.isfinite(x)) else None


def run_verdict(
    cfg: RunConfig, mc_cols: dict[str, np.ndarray], ode_cols: dict[str, np.ndarray], eps_test: float
) -> Verdict:
    """:func:`jaxadv.analysis.verdict.honest_verdict` for a configuration (theory only for the default rule)."""
    return honest_verdict(
        mc_cols,
        ode_cols,
        params=cfg.params,
        N=cfg.N,
        n_save=cfg.n_save,
        dt=cfg.dt,
        eps_test=eps_test,
        mc_dtype=np.float64 if cfg.x64 else np.float32,
        R0=cfg.R0,
        b0=cfg.b0,
        loss=cfg.loss,
        rule=cfg.rule,
    )


def robustness_corrected(
    cfg: RunConfig,
    eps_grid: np.ndarray,
    robust_ode: np.ndarray,
    ode_cols: dict[str, np.ndarray],
    alpha: np.ndarray,
    fluctuations: Any = None,
) -> np.ndarray:
    """The ODE + O(1/N) robust error at the last save point for every radius of ``eps_grid`` (what the
    verdict's theory predicts for the robustness curve), from the bare ODE's ``robust_ode`` at each
    radius; ``fluctuations``: the verdict's :class:`jaxadv.ode.fluctuations.FluctuationResult`
    (:attr:`jaxadv.analysis.verdict.Verdict.fluctuations`), solved again when ``None``."""
    from ..analysis.verdict import corrected_predictions
    from ..defaults import DT
    from ..ode.fluctuations import solve_fluctuations

    fl = (
        fluctuations
        if fluctuations is not None
        else solve_fluctuations(
            cfg.params,
            cfg.N,
            float(alpha[-1]),
            int(cfg.n_save),
            dt=DT if cfg.dt is None else cfg.dt,
            R0=cfg.R0,
            b0=cfg.b0,
            loss=cfg.loss,
        )
    )
    last = jax.tree.map(lambda x: np.asarray(x)[-1:], fl)
    cols = {k: np.asarray(v)[-1:] for k, v in ode_cols.items()}
    out = []
    for e, bare in zip(eps_grid, robust_ode, strict=True):
        cols["robust_error"] = np.array([bare])  # the bare ODE at this radius, corrected below
        out.append(corrected_predictions(cols, last, cfg.params, float(e))["robust_error"][0])
    return np.array(out)


def check_ode(ode: ODEResult, cfg: RunConfig, log: Callable[[str], Any] = print) -> str:
    """The ODE's status in words; ``ValueError`` (before any Monte Carlo) when it is not trustworthy."""
    from ..ode.solve import STATUS_NAMES, STATUS_OK

    status = int(np.max(np.asarray(ode.status)))
    if status != STATUS_OK:
        R = np.asarray(ode.R)
        bad = ~np.isfinite(R) | (np.abs(np.nan_to_num(R, nan=2.0)) > 1)
        where = f" from alpha={float(np.asarray(ode.alpha)[np.argmax(bad)]):g}" if bad.any() else ""
        raise ValueError(
            f"ode: {STATUS_NAMES[status]}{where}: the fixed step dt={cfg.dt:g} is unstable for "
            f"eta_w={cfg.eta_w:g}, eta_b={cfg.eta_b:g} and the adaptive step could not integrate it; "
            "lower the learning rates or alpha_max"
        )
    if bool(np.any(np.asarray(ode.fallback))):
        log(f"ode: the fixed step dt={cfg.dt:g} left the domain (unstable); integrated again adaptively: ok")
        return "ok (adaptive fallback: the fixed step was unstable)"
    return "ok"


def run_mc_only(
    cfg: RunConfig, out_dir: str, progress: bool = True, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """``jaxadv run`` for the Monte-Carlo-only threat models (``attack="linf"`` or ``"l1"``).

    There is no ODE; the files written are ``mc.csv`` (``alpha``, mean and sem of ``R``, ``b``,
    ``norm1``, ``norm_inf``, the test error and the robust error under each of the three threat
    models at radius ``eps_test``), ``mc_replicas.npz`` and ``config.json``.
    """
    from ..analysis.measures import test_error
    from ..analysis.threat import THREATS, mc_threat_summary

    if not cfg.mc:
        raise ValueError(f"attack={cfg.attack!r} has no ODE; mc=false leaves nothing to run")
    params, eps_test = cfg.params, cfg.eps_test_value
    dtype = jnp.float64 if cfg.x64 else jnp.float32
    t = time.perf_counter()
    mc = simulate_resumable(
        jax.random.key(cfg.seed, impl=cfg.prng),
        params,
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        n_save=cfg.n_save,
        replicas=cfg.replicas,
        rule=cfg.rule,
        rule_params=cfg.rule_params,
        dtype=dtype,
        R0=cfg.R0,
        b0=cfg.b0,
        progress=progress,
        checkpoint=os.path.join(out_dir, "mc_checkpoint.npz"),
        B=cfg.B,
        generator=cfg.generator,
        **_save_kwargs(cfg),
    )
    elapsed = time.perf_counter() - t
    cols = {"alpha": mc.alpha}
    R, b = mc.R.astype(np.float64), mc.b.astype(np.float64)
    for name, x in (
        ("R", R),
        ("b", b),
        ("norm1", mc.norm1),
        ("norm_inf", mc.norm_inf),
        ("test_error", np.asarray(test_error(R, b, params))),
    ):
        cols[f"{name}_mean"], cols[f"{name}_sem"] = mean_sem(np.asarray(x, np.float64), mc.finite)
    cols.update(mc_threat_summary(mc, params, {q: eps_test for q in THREATS}))
    write_csv(os.path.join(out_dir, "mc.csv"), cols)
    write_npz(
        os.path.join(out_dir, "mc_replicas.npz"),
        alpha=mc.alpha,
        R=mc.R,
        b=mc.b,
        norm=mc.norm,
        norm1=mc.norm1,
        norm_inf=mc.norm_inf,
        finite=mc.finite,
    )
    log(
        f"monte carlo ({cfg.attack} attack, B={cfg.B}, no ODE): {cfg.replicas} replicas at N={cfg.N} in "
        f"{elapsed:.1f}s; at alpha={mc.alpha[-1]:g}: "
        + ", ".join(f"S_{q}({eps_test:g})={cols[f'robust_error_{q}_mean'][-1]:.4f}" for q in THREATS)
    )
    info = {
        "config": config_dict(cfg),
        "resolved": {"eps_test": eps_test, "ode": None},
        "timings_s": {"mc_s": elapsed},
        "seed": cfg.seed,
        "replicas_diverged": int(mc.finite[:, 0].sum() - mc.finite[:, -1].sum()),
    }
    write_json(os.path.join(out_dir, "config.json"), info)
    return info


def run_defences(
    cfg: RunConfig, out_dir: str, mc: bool = True, log: Callable[[str], Any] = print, progress: bool = True
) -> list[DefenceResult]:
    """``jaxadv compare-defences``: :func:`compare_defences` for the parameters, sizes and seed of
    a :class:`jaxadv.app.config.RunConfig`; writes ``defences.csv``, ``defences.png`` and ``config.json``.
    With ``progress`` a line per defence (time taken, time left) goes to ``log``."""
    from ..analysis.defences import DEFENCES, compare_defences, defences_table
    from ..model.rule import DEFAULT_RULE, describe_rule

    extra = None
    if cfg.rule._replace(loss=DEFAULT_RULE.loss) != DEFAULT_RULE:
        # the config's own rule (e.g. a new attack or eps law) joins the comparison as a sixth row
        own = cfg.rule
        extra = {f"{own.attack.name}/{own.eps_law.name}/{own.gate.name}": (cfg.rule, cfg.rule_params)}
        log(f"compare-defences: adding the configured rule ({describe_rule(own)}) as a defence")
    os.makedirs(out_dir, exist_ok=True)
    eps_test = cfg.eps_test_value
    kwargs = dict(
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        replicas=cfg.replicas,
        n_save=cfg.n_save,
        eps_test=eps_test,
        dt=cfg.dt,
        mc=mc,
        loss=cfg.loss,
        dtype=jnp.float64 if cfg.x64 else jnp.float32,
        R0=cfg.R0,
        b0=cfg.b0,
    )
    # one defence at a time (each with the same key, so the results are those of one call), to report progress
    jobs = [dict(defences=(name,)) for name in DEFENCES] + [
        dict(defences=(), extra={k: v}) for k, v in (extra or {}).items()
    ]
    res, t0 = [], time.perf_counter()
    for i, job in enumerate(jobs):
        res += compare_defences(jax.random.key(cfg.seed, impl=cfg.prng), cfg.params, **kwargs, **job)
        if progress:
            spent = time.perf_counter() - t0
            log(
                f"[{i + 1}/{len(jobs)}] {res[-1].name}: done, {spent:.0f}s elapsed, "
                f"about {spent / (i + 1) * (len(jobs) - i - 1):.0f}s left"
            )
    cols = {"defence": np.array([r.name for r in res])}
    cols.update(defences_table(res))
    write_csv(os.path.join(out_dir, "defences.csv"), cols)
    info = {"config": config_dict(cfg), "eps_test": eps_test, "defences": [r._asdict() for r in res]}
    write_json(os.path.join(out_dir, "config.json"), info)  # before the figure: a failure there keeps it
    plot_defences(
        res,
        os.path.join(out_dir, "defences.png"),
        title=f"{cfg.name}: p={cfg.prior:g}, eps={cfg.eps:g}, N={cfg.N}, alpha={cfg.alpha_max:g}",
        eps_test=eps_test,
    )
    for r in res:
        log(
            f"{r.name:>15}: clean {r.ode_clean:.4f} (MC {r.mc_clean:.4f}±{r.mc_clean_sem:.4f})  robust "
            f"{r.ode_robust:.4f} (MC {r.mc_robust:.4f}±{r.mc_robust_sem:.4f})"
            + (
                f"  {r.verdict}"
                + (f": {r.reason}" if r.reason else "")
                + (
                    f" ({r.deviation_sem:.2f} SE from ODE + O(1/N))"
                    if np.isfinite(r.deviation_sem)
                    else f" (raw {r.raw_deviation_sem:.2f} SE from the bare ODE)"
                    if np.isfinite(r.raw_deviation_sem)
                    else ""
                )
                if r.verdict
                else ""
            )
        )
    return res
