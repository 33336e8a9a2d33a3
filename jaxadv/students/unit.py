r"""The single erf unit as a student record: :math:`\sigma(\xi)=\operatorname{erf}(w\cdot\xi-b)`, :math:`\|w\|=1`.

* Monte Carlo face: :func:`jaxadv.mc.driver.plan_simulation` (the full N-dimensional sampler or the exact
  reduced chain of ``(R, b)``, :data:`jaxadv.mc.driver.SAMPLERS`);
* ODE face: :func:`jaxadv.ode.solve.solve_ode` (refused, before any Monte Carlo, when not trustworthy), with
  the O(1/N) theory of :mod:`jaxadv.ode.fluctuations` for the verdict (:func:`verdict`);
* a rule without an ODE face (the L-infinity and L1 attacks) runs the Monte Carlo alone
  (:func:`compute_mc_only`).

Files it fills: ``ode.csv`` (``alpha,R,b,test_error,robust_error``), ``mc.csv``
(``alpha``, ``R``, ``b``, ``test_error``, ``robust_error`` as ``_mean``/``_sem``, ``n_finite``), ``mc_replicas.npz``
(``alpha`` ``(P,)``, ``R`` and ``b`` ``(replicas, P)``), ``robustness.csv`` (``eps_test,robust_error_ode,
robust_error_mc_mean,robust_error_mc_sem`` at the last save point).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..analysis.compare import mc_summary, mean_sem, ode_table
from ..analysis.measures import robust_error
from ..analysis.verdict import Verdict, honest_verdict
from ..mc import driver, schedule
from ..mc.driver import save_schedule
from ..ode.solve import ODEResult, solve_ode
from ..schedule import described
from . import Outcome, StudentRecord

__all__ = [
    "STUDENT",
    "mc_plan",
    "compute",
    "compute_mc_only",
    "verdict",
    "robustness_corrected",
    "check_ode",
    "mc_start",
]

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


def compute(cfg: Any, simulate: Callable | None, log: Callable[[str], Any]) -> Outcome:
    """The unit's run (module docstring); ``cfg``: a :class:`jaxadv.app.config.RunConfig`; ``simulate`` runs a
    driver plan (``None``: ODE only)."""
    if cfg.rule.attack.field is None:
        return compute_mc_only(cfg, simulate, log)
    params = cfg.params
    eps_test = cfg.eps_test_value
    timings: dict[str, Any] = {}
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
    tables: dict[str, dict[str, Any]] = {"ode.csv": ode_cols}
    arrays: dict[str, dict[str, Any]] = {}
    log(
        f"ode: {len(alpha)} points to alpha={alpha_end:g} in {timings['ode_s']:.2f}s "
        f"(R={ode_cols['R'][-1]:.6f}, b={ode_cols['b'][-1]:.6f}; status {ode_status})"
    )

    eps_grid = np.round(np.linspace(0.0, cfg.eps_test_max_value, 41), 12)  # 0.15, not 0.15000000000000002
    rob = {"eps_test": eps_grid, "robust_error_ode": np.asarray(robust_error(ode.R[-1], ode.b[-1], eps_grid, params))}

    mc_cols, v = None, None
    summary: dict[str, Any] = {}
    if simulate is not None:
        t = time.perf_counter()
        plan = mc_plan(cfg)
        obs, mc_stats = simulate(plan, "mc_checkpoint.npz", "monte carlo")
        mc = driver.result(plan, np.stack(obs))
        timings["mc_s"] = time.perf_counter() - t
        mc_cols = mc_summary(mc, params, eps_test)
        tables["mc.csv"] = {k: mc_cols[k] for k in MC_COLUMNS}
        arrays["mc_replicas.npz"] = dict(alpha=mc.alpha, R=mc.R, b=mc.b, norm=mc.norm, finite=mc.finite)
        fin = mc.finite[:, -1]
        S = np.asarray(
            robust_error(mc.R[:, -1:].astype(np.float64), mc.b[:, -1:].astype(np.float64), eps_grid[None, :], params)
        )
        rob["robust_error_mc_mean"], rob["robust_error_mc_sem"] = mean_sem(S, np.broadcast_to(fin[:, None], S.shape))
        t = time.perf_counter()
        v = verdict(cfg, mc_cols, ode_cols, eps_test)  # the O(1/N) theory it needs is an ODE solve too
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
    tables["robustness.csv"] = rob
    info = {
        "config": described(dataclasses.asdict(cfg)),
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
    corrected = (
        robustness_corrected(cfg, rob["eps_test"], rob["robust_error_ode"], ode_cols, alpha, v.fluctuations)
        if v is not None and v.corrected
        else None
    )
    failed = None
    if summary.get("verdict_status") == "undetermined" and summary["replicas_diverged"] == cfg.replicas:
        failed = f"all {cfg.replicas} replicas diverged"
    return Outcome(tables, arrays, info, v, (ode_cols, mc_cols, rob, v, corrected, alpha_end, cfg), failed)


def mc_plan(cfg: Any) -> driver.Plan:
    """The unit's Monte Carlo face: the driver :class:`~jaxadv.mc.driver.Plan` of a configuration (its sampler,
    rule, sizes, start, seed and save points)."""
    saves = {} if cfg.save == "linear" else {"save": cfg.save, "points_per_decade": cfg.points_per_decade}
    return driver.plan_simulation(
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
        **saves,
    )


def mc_start(cfg: Any) -> tuple:
    """The Monte Carlo's mean initial ``(R, b)``, measured on the same replicas (same key) as the run:
    the ODE's starting point with ``ode_start="mc"``."""
    plan = mc_plan(cfg)
    _, obs = driver.init_states(plan)
    return float(np.mean(obs[0], dtype=np.float64)), float(np.mean(obs[1], dtype=np.float64))


def _nanmax_abs(x):
    x = np.abs(np.asarray(x, float))
    return float(np.max(x[np.isfinite(x)])) if np.any(np.isfinite(x)) else None


def verdict(cfg: Any, mc_cols: dict[str, np.ndarray], ode_cols: dict[str, np.ndarray], eps_test: float) -> Verdict:
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
    cfg: Any,
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


def check_ode(ode: ODEResult, cfg: Any, log: Callable[[str], Any] = print) -> str:
    """The ODE's status in words; ``ValueError`` (before any Monte Carlo) when it is not trustworthy."""
    from ..ode.solve import STATUS_NAMES, STATUS_OK

    status = int(np.max(np.asarray(ode.status)))
    if status != STATUS_OK:
        R = np.asarray(ode.R)
        bad = ~np.isfinite(R) | (np.abs(np.nan_to_num(R, nan=2.0)) > 1)
        where = f" from alpha={float(np.asarray(ode.alpha)[np.argmax(bad)]):g}" if bad.any() else ""
        raise ValueError(
            f"ode: {STATUS_NAMES[status]}{where}: the fixed step dt={cfg.dt:g} is unstable for "
            f"eta_w={cfg.eta_w}, eta_b={cfg.eta_b} and the adaptive step could not integrate it; "
            "lower the learning rates or alpha_max"
        )
    if bool(np.any(np.asarray(ode.fallback))):
        log(f"ode: the fixed step dt={cfg.dt:g} left the domain (unstable); integrated again adaptively: ok")
        return "ok (adaptive fallback: the fixed step was unstable)"
    return "ok"


def compute_mc_only(cfg: Any, simulate: Callable | None, log: Callable[[str], Any]) -> Outcome:
    """``jaxadv run`` for the Monte-Carlo-only threat models (``attack="linf"`` or ``"l1"``).

    There is no ODE; the files written are ``mc.csv`` (``alpha``, mean and sem of ``R``, ``b``,
    ``norm1``, ``norm_inf``, the test error and the robust error under each of the three threat
    models at radius ``eps_test``), ``mc_replicas.npz`` and ``config.json``.
    """
    from ..analysis.measures import test_error
    from ..analysis.threat import THREATS, mc_threat_summary

    if simulate is None:
        raise ValueError(f"attack={cfg.attack!r} has no ODE; mc=false leaves nothing to run")
    params, eps_test = cfg.params, cfg.eps_test_value
    t = time.perf_counter()
    plan = mc_plan(cfg)
    mc = driver.result(plan, np.stack(simulate(plan, "mc_checkpoint.npz", "monte carlo")[0]))
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
    replicas = dict(
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
        "config": described(dataclasses.asdict(cfg)),
        "resolved": {"eps_test": eps_test, "ode": None},
        "timings_s": {"mc_s": elapsed},
        "seed": cfg.seed,
        "replicas_diverged": int(mc.finite[:, 0].sum() - mc.finite[:, -1].sum()),
    }
    return Outcome({"mc.csv": cols}, {"mc_replicas.npz": replicas}, info)


def _fields(state: Any, xi: Any) -> Any:
    import jax.numpy as jnp

    return jnp.atleast_1d(state.w @ xi - state.b)


def _output(state: Any, xi: Any) -> Any:
    import jax

    return jax.scipy.special.erf(state.w @ xi - state.b)


def _normalise(state: Any, static: Any = None) -> Any:
    import optax

    return state._replace(w=optax.projections.projection_l2_sphere(state.w))


def _observe(state: Any, B: Any) -> Any:
    from ..mc.full import Observables, observe, observe_norms

    return Observables(*observe(state, B), *observe_norms(state))


def _state_type() -> type:
    from ..model.student import Student

    return Student


STUDENT = StudentRecord(
    name="unit",
    description="one erf unit with normalised weights on two Gaussian clusters (the prototype model)",
    command="run",
    state=_state_type(),
    fields=_fields,
    output=_output,
    normalise=_normalise,
    observe=_observe,
    units=lambda values: 1,
    resolve=lambda cfg: cfg,
    compute=compute,
    order_parameters=lambda cfg: ("R", "b"),
)
"""The unit's record (``resolve``: the application's :class:`jaxadv.app.config.RunConfig` is its problem)."""
