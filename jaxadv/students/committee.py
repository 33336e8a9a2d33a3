r"""The committee as a student record: K erf units :math:`\sigma(\xi)=\sum_k v_k\operatorname{erf}(w_k\cdot\xi-b_k)`
on a Gaussian mixture (:mod:`jaxadv.committee`).

* Monte Carlo face: :func:`jaxadv.committee.montecarlo.plan_committee` (its sampler on the one driver);
* ODE face: :func:`jaxadv.committee.ode.solve_committee_ode` on the one solve;
* the run (:func:`compute`): the Monte Carlo first when the ODE starts from its measured initial overlaps
  (``ode_start = "mc"``), the ODE, the errors at ``eps_test`` (clean, exact worst case, the FGM the
  committee trains with), the Monte Carlo's means and standard errors and the verdict: the bare ODE within
  the allowance (committees have no O(1/N) theory; ``docs/theory.md``).

Files it fills: ``ode.csv`` (``alpha``, ``Q_k_l``, ``R_k_j``, ``b_k``, ``v_k``, ``clean_error``,
``robust_error``, ``fgm_error``), ``mc.csv`` (the order parameters' ``_mean`` and ``_sem``, with
``mc_errors`` the errors of each replica's own order parameters, ``n_finite``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..analysis.stats import mean_sem
from . import Outcome, StudentRecord

__all__ = ["STUDENT", "RULE_KEYS", "SPEC_KEYS", "CommitteeProblem", "resolve", "compute", "errors", "ERRORS"]

RULE_KEYS = {"eta_w": 1.0, "eta_b": 0.5, "eta_v": 0.0, "eps": 0.5, "hinge_margin": 0.0}
"""The committee's rule keys and their defaults (its :class:`~jaxadv.committee.CommitteeParams` floats)."""
SPEC_KEYS = ("K", "train_v", "normalise", "attack", "pgd_steps", "pgd_step", "pgd_random_start", "loss", "lipschitz")
"""The keys of its static :class:`~jaxadv.committee.CommitteeSpec`."""


class CommitteeProblem(NamedTuple):
    """A resolved committee configuration: its values and the validated records they give."""

    values: dict[str, Any]
    mixture: Any
    params: Any
    spec: Any


def resolve(cfg: Mapping[str, Any]) -> CommitteeProblem:
    """The validated ``(Mixture, CommitteeParams, CommitteeSpec)`` of a configuration's values."""
    from ..committee import from_dicts

    if cfg["data"] == "xor":
        data = {"preset": "xor", "rho": cfg["rho"], "v": cfg["var"]}
    elif cfg["data"] == "two_cluster":
        data = {"preset": "two_cluster", **{k: cfg[k] for k in ("prior", "rho", "v1", "v2")}}
    else:
        data = {k: np.asarray(v, float) for k, v in cfg["mixture"].items()}
    mixture, params, spec = from_dicts(data, {k: cfg[k] for k in RULE_KEYS}, {k: cfg[k] for k in SPEC_KEYS})
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
    return CommitteeProblem(dict(cfg), mixture, params, spec)


ERRORS = ("clean_error", "robust_error", "fgm_error")
"""The error columns of ``ode.csv`` (and, as ``_mean``/``_sem``, of ``mc.csv``), all at ``eps_test``."""


def errors(states: Any, mixture: Any, eps_test: float, loss: str) -> dict:
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


def mc_plan(problem: CommitteeProblem, **start: Any) -> Any:
    """The committee's Monte Carlo :class:`~jaxadv.mc.driver.Plan` of a resolved configuration (its sizes, seed
    and dtype); ``start``: ``Q0``, ``R0``, ``b0``, ``v0`` of :func:`jaxadv.committee.montecarlo.plan_committee`."""
    import jax
    import jax.numpy as jnp

    from ..committee.montecarlo import plan_committee

    cfg, mixture, params, spec = problem
    return plan_committee(
        jax.random.key(cfg["seed"]),
        mixture,
        params,
        spec,
        N=cfg["N"],
        alpha_max=cfg["alpha_max"],
        n_save=cfg["n_save"],
        replicas=cfg["replicas"],
        dtype=jnp.float64 if cfg["x64"] else jnp.float32,
        **start,
    )


def compute(problem: CommitteeProblem, simulate: Callable | None, log: Callable[[str], Any]) -> Outcome:
    """The committee's run (module docstring); ``simulate``: runs a driver plan (``None``: ODE only)."""
    import jax.numpy as jnp

    from .. import committee as cm
    from ..analysis.verdict import honest_verdict
    from ..committee.montecarlo import committee_result
    from ..committee.quadrature import default_rule

    cfg, mixture, params, spec = problem
    K, D = spec.K, mixture.n_directions
    dtype = jnp.float64 if cfg["x64"] else jnp.float32
    v0 = None if cfg["v"] is None else np.asarray(cfg["v"], float)
    b0 = None if cfg["b0"] is None else np.asarray(cfg["b0"], float)
    given = {"Q0": cfg["Q0"], "R0": cfg["R0"]} if cfg["ode_start"] == "given" else {}
    timings: dict[str, Any] = {}
    info: dict[str, Any] = {}
    mc = None
    if simulate is not None:
        t = time.perf_counter()
        plan = mc_plan(problem, v0=v0, b0=b0, **given)
        mc = committee_result(plan, simulate(plan, "mc_checkpoint.npz", "monte carlo")[0])
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
        rule=default_rule(K),
    )
    timings["ode_s"] = time.perf_counter() - t
    eps_test = float(cfg["eps_test"])
    t = time.perf_counter()
    ode_cols = cm.columns(ode, mixture, errors=False)
    ode_cols.update(errors((ode.Q, ode.R, ode.b, ode.v), mixture, eps_test, spec.loss))
    timings["ode_errors_s"] = time.perf_counter() - t
    log(
        f"ode (from {start_from}): {len(ode_cols['alpha'])} points to alpha={alpha_end:g} in {timings['ode_s']:.1f}s, "
        f"clean error {ode_cols['clean_error'][-1]:.4f}, at eps_test={eps_test:g}: robust error "
        f"{ode_cols['robust_error'][-1]:.4f}, FGM error {ode_cols['fgm_error'][-1]:.4f}"
    )
    tables: dict[str, dict[str, Any]] = {"ode.csv": ode_cols}
    mc_cols, verdict = None, None
    if mc is not None:
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
            for name, x in errors(states, mixture, eps_test, spec.loss).items():
                mc_cols[f"{name}_mean"], mc_cols[f"{name}_sem"] = mean_sem(x)
            timings["mc_errors_s"] = time.perf_counter() - t
        mc_cols["n_finite"] = fin.sum(axis=0)  # the verdict's count: all diverged is "undetermined"
        tables["mc.csv"] = mc_cols
        # order parameters only: no O(1/N) theory for committees, so the bare ODE with the allowance
        verdict = honest_verdict(
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
        log(verdict.text)
        info.update(
            max_deviation_sem=verdict.raw_z_max,
            worst_quantity=verdict.raw_quantity,
            worst_alpha=verdict.raw_alpha,
            verdict=verdict.text,
            verdict_status=verdict.status,
            replicas_finite=n_ok,
        )
    info.update(
        config={k: v for k, v in cfg.items() if k != "mixture"},
        mixture={k: np.asarray(v).tolist() for k, v in mixture._asdict().items()},
        ode_start=cfg["ode_start"],
        ode_started_from=start_from,
        timings_s=timings,
    )
    failed = None
    if mc is not None and info["replicas_finite"] == 0:
        failed = f"all {cfg['replicas']} committees diverged"
    return Outcome(tables, {}, info, verdict, (ode_cols, mc_cols, K, D, cfg), failed)


def _fields(state: Any, xi: Any) -> Any:
    return state.W @ xi - state.b


def _output(state: Any, xi: Any) -> Any:
    from ..committee.fields import committee_output

    return committee_output(_fields(state, xi), state.v)


def _normalise(state: Any, spec: Any) -> Any:
    import jax.numpy as jnp

    from ..committee.lipschitz import project_weights

    W = state.W / jnp.linalg.norm(state.W, axis=1, keepdims=True) if spec.normalise else state.W
    if spec.lipschitz is not None:
        W = project_weights(W, state.v, spec.lipschitz)
    return state._replace(W=W)


def _observe(state: Any, B: Any) -> Any:
    from ..committee.montecarlo import observe

    return observe(state, B)


def _order_parameters(problem: CommitteeProblem) -> tuple[str, ...]:
    from ..committee.measures import order_parameter_names

    return tuple(order_parameter_names(problem.spec.K, problem.mixture.n_directions))


def _state_type() -> type:
    from ..committee.montecarlo import CommitteeMC

    return CommitteeMC


STUDENT = StudentRecord(
    name="committee",
    description="K erf units and a second layer v on a Gaussian mixture (jaxadv.committee)",
    command="committee",
    state=_state_type(),
    fields=_fields,
    output=_output,
    normalise=_normalise,
    observe=_observe,
    units=lambda values: int(values.get("K", 1)),
    resolve=resolve,
    compute=compute,
    order_parameters=_order_parameters,
)
"""The committee's record."""
