r"""The surrogate/target pair as a student record: two erf units, the target attacked with the surrogate's
perturbation (:mod:`jaxadv.model.pair`, :mod:`jaxadv.analysis.transfer`).

* Monte Carlo face: :func:`jaxadv.mc.pair.plan_pair` (its sampler on the one driver, the transfer measured on
  fresh N-dimensional examples at the save points), one plan per target radius ``eps_t``;
* ODE face: :func:`jaxadv.ode.pair.solve_pair_ode` on the one solve, with the closed-form transfer measures
  (:func:`jaxadv.analysis.transfer.transfer_table`);
* the verdict: the order parameters against the bare pair ODE within the allowance, per target radius (no
  O(1/N) theory for the pair), the worst radius reported.

The L-infinity attack uses the radius ``eps / sqrt(N)`` (so that its shift :math:`\epsilon\|w\|_1/\sqrt N` is of
order eps); the ODE has no L-infinity overlap, so its theory is the closed form at the measured
:math:`M = w_t\cdot\operatorname{sign}(w_s)`.

Files it fills: ``ode.csv`` (``eps_t, alpha``, the order parameters and the closed-form measures at ``eps``),
``mc.csv`` (the same as mean and standard error over replicas, the measured transfer errors and rates in N
dimensions, L2 and L-inf, both labels), ``eps.csv`` (against eps at the last alpha: ODE and measured).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..analysis.stats import mean_sem
from ..validation import RunFailed
from . import Outcome, StudentRecord

__all__ = ["STUDENT", "PairProblem", "resolve", "compute", "check_ode", "checkpoint_name", "ORDER_PARAMETERS"]

ORDER_PARAMETERS = ("R_s", "R_t", "Q", "b_s", "b_t")
"""The pair's order parameters (the verdict compares these with the bare pair ODE)."""
DRIVERS = ("prior", "rho", "v1", "v2", "eps_s", "eta_w_s", "eta_b_s", "eta_w_t", "eta_b_t", "b_s0", "b_t0")
"""The keys that drive the pair's order parameters (named when the ODE or the Monte Carlo leaves its domain)."""


class PairProblem(NamedTuple):
    """A resolved pair configuration: its values, ``[(eps_t, PairParams)]``, the spec and the start."""

    values: dict[str, Any]
    pairs: list
    spec: Any
    R0: tuple
    b0: tuple


def resolve(cfg: Mapping[str, Any]) -> PairProblem:
    """``[(eps_t, PairParams)]``, the :class:`~jaxadv.model.pair.PairSpec`, ``R0``, ``b0`` of a configuration
    (validated)."""
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
    return PairProblem(dict(cfg), pairs, spec, R0, b0)


def check_ode(sol: Any, cfg: Mapping[str, Any], e_t: float) -> None:
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
            f"({', '.join(f'{k}={cfg[k]:g}' for k in DRIVERS)}); lower the extreme value or dt={cfg['dt']:g}"
        )


def _table(cols: dict) -> dict:
    """The accumulated lists as arrays."""
    return {k: np.asarray(v) for k, v in cols.items()}


def _closed(R_s, b_s, R_t, b_t, Q, eps, data, M=None):
    from ..analysis.transfer import transfer_table

    out = {k: np.asarray(v, np.float64) for k, v in transfer_table(R_s, b_s, R_t, b_t, Q, eps, data, M=M).items()}
    shape = np.broadcast_shapes(*(v.shape for v in out.values()))
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}


def checkpoint_name(i: int) -> str:
    """The file name of the Monte Carlo checkpoint of the ``i``-th target radius (``eps_t``)."""
    return f"mc_checkpoint_{i}.npz"


def compute(problem: PairProblem, simulate: Callable | None, log: Callable[[str], Any]) -> Outcome:
    """The pair's run (module docstring): for each target radius the ODE (refused when it leaves its domain),
    then the Monte Carlo; ``simulate`` runs a driver plan (``None``: ODE only)."""
    import jax
    import jax.numpy as jnp

    from ..analysis.verdict import honest_verdict
    from ..mc.pair import TRANSFER_KINDS, pair_result, plan_pair
    from ..ode.pair import solve_pair_ode

    cfg, pairs, spec, R0, b0 = problem
    dtype = jnp.float64 if cfg["x64"] else jnp.float32
    eps, grid = float(cfg["eps"]), np.asarray(cfg["eps_grid"], np.float64)
    radii = np.concatenate([[eps], grid])
    scale = 1.0 / math.sqrt(cfg["N"])
    ode_cols: dict[str, Any] = {}
    mc_cols: Any = {}  # the columns, or None without the Monte Carlo
    eps_cols: dict[str, Any] = {}
    add = lambda cols, name, v: cols.setdefault(name, []).extend(np.atleast_1d(np.asarray(v, np.float64)).tolist())
    timings: dict[str, float] = {"ode_s": 0.0, "mc_s": 0.0}
    verdicts: list[tuple[float, Any]] = []
    data = pairs[0][1].s
    for i_t, (e_t, pp) in enumerate(pairs):
        t = time.perf_counter()
        sol = solve_pair_ode(pp, spec, cfg["alpha_max"], cfg["n_save"], dt=cfg["dt"], R0=R0, b0=b0)
        timings["ode_s"] += time.perf_counter() - t
        check_ode(sol, cfg, e_t)
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
        if simulate is None:
            continue
        t = time.perf_counter()
        plan = plan_pair(
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
        )
        obs, stats = simulate(plan, checkpoint_name(i_t), f"monte carlo eps_t={e_t:g}")
        run = pair_result(plan, obs)
        timings["mc_s"] += time.perf_counter() - t
        if stats["resumed_from"] == cfg["n_save"]:
            log(f"monte carlo eps_t={e_t:g}: read from its finished checkpoint")
        elif stats["resumed_from"]:
            log(f"monte carlo eps_t={e_t:g}: resumed at save interval {stats['resumed_from']} of {cfg['n_save']}")
        o = run.obs
        judged: tuple[dict, dict] = ({"alpha": run.alpha}, {"alpha": sol.alpha})
        # the closed forms take the replicas that stayed finite (a diverged pair is reported, not an error)
        fin = np.all([np.isfinite(np.asarray(getattr(o, f))).all(axis=1) for f in o._fields], axis=0)
        if not fin.any():
            raise RunFailed(
                f"all {cfg['replicas']} pairs of eps_t={e_t:g} diverged in the Monte Carlo ("
                + ", ".join(f"{k}={cfg[k]:g}" for k in DRIVERS)
                + "); lower the extreme value"
            )
        of = o._replace(**{f: np.asarray(getattr(o, f))[fin] for f in o._fields})
        add(mc_cols, "eps_t", np.full(P, e_t))
        add(mc_cols, "alpha", run.alpha)
        for f in o._fields:
            m, s = mean_sem(getattr(o, f))
            add(mc_cols, f"{f}_mean", m)
            add(mc_cols, f"{f}_sem", s)
            if f in ORDER_PARAMETERS:
                judged[0][f"{f}_mean"], judged[0][f"{f}_sem"] = m, s
                judged[1][f] = np.asarray(getattr(sol, f), np.float64)
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
        v = honest_verdict(
            judged[0],
            judged[1],
            params=None,
            N=cfg["N"],
            eps_test=eps,
            mc_dtype=np.dtype(dtype),
            theory=False,
            why_no_theory="no O(1/N) theory for the pair",
            quantities=ORDER_PARAMETERS,
            bare_allowance=True,
        )
        verdicts.append((e_t, v))
        k = TRANSFER_KINDS.index(f"l2_{cfg['labels']}")
        log(
            f"monte carlo eps_t={e_t:g}: {cfg['replicas']} pairs at N={cfg['N']}: Q={o.Q[:, -1].mean():.4f}, "
            f"measured transfer ({cfg['labels']}, L2) {run.wrong[:, -1, k, 0].mean():.4f} in {timings['mc_s']:.1f}s"
        )
    tables: dict[str, dict[str, Any]] = {"ode.csv": _table(ode_cols)}
    info: dict[str, Any] = {}
    verdict = None
    if simulate is not None:
        tables["mc.csv"] = mc_cols = _table(mc_cols)
        rank = lambda ev: -1.0 if ev[1].raw_z_max is None else ev[1].raw_z_max
        e_worst, verdict = max(verdicts, key=rank)
        verdict = verdict._replace(text=f"eps_t={e_worst:g}: {verdict.text}")
        log(verdict.text)
        info.update(
            max_deviation_sem=verdict.raw_z_max,
            worst_quantity=verdict.raw_quantity,
            worst_alpha=verdict.raw_alpha,
            worst_eps_t=e_worst,
            verdict=verdict.text,
            verdict_status=verdict.status,
        )
    else:
        mc_cols = None
    tables["eps.csv"] = eps_cols = _table(eps_cols)
    info.update(config=dict(cfg), linf_radius="eps / sqrt(N)", timings_s=timings)
    return Outcome(tables, {}, info, verdict, (tables["ode.csv"], mc_cols, eps_cols, cfg))


def _fields(state: Any, xi: Any) -> Any:
    import jax.numpy as jnp

    return jnp.stack([state.s.w @ xi - state.s.b, state.t.w @ xi - state.t.b])


def _output(state: Any, xi: Any) -> Any:
    import jax

    return jax.scipy.special.erf(_fields(state, xi))


def _normalise(state: Any, static: Any = None) -> Any:
    import optax

    return type(state)(*(s._replace(w=optax.projections.projection_l2_sphere(s.w)) for s in (state.s, state.t)))


def _observe(state: Any, B: Any) -> Any:
    from ..mc.pair import observe_pair

    return observe_pair(state, B)


def _state_type() -> type:
    from ..model.pair import PairState

    return PairState


STUDENT = StudentRecord(
    name="pair",
    description="a surrogate and a target erf unit: attacks transferred from one to the other",
    command="transfer",
    state=_state_type(),
    fields=_fields,
    output=_output,
    normalise=_normalise,
    observe=_observe,
    units=lambda values: 2,
    resolve=resolve,
    compute=compute,
    order_parameters=lambda problem: ORDER_PARAMETERS,
)
"""The pair's record."""
