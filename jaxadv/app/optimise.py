r"""``jaxadv optimise PRESET_OR_TOML``: the optimal schedule of the training rule's parameters for the unit or a
committee (:mod:`jaxadv.control`), compared with the best constant and a linear ramp, and confirmed by Monte Carlo.

The configuration is the student's (``jaxadv run``'s keys: data, student, rule, sizes, seed; a committee
preset or ``student = "committee"`` optimises the committee's ODE from its ``R0``, ``Q0`` with the FGM
attack) plus the keys of :data:`OPTIMISE_KEYS`, in a TOML file's ``[optimise]`` table (which ``jaxadv run``
ignores) or as ``--set KEY=VALUE``::

    preset = "scenario2"
    alpha_max = 20
    N = 1000
    sampler = "reduced"           # the Monte Carlo's confirmation on the exact (R, b) chain
    [optimise]
    controls = "eps"              # or "eps,eta_w" (a committee: also eta_v)
    knots = 11                    # equally spaced from 0 to alpha_max
    eps_bounds = [0, 2]
    budget = 0.5                  # the mean of eps over the run (none: free)
    objective = {clean = 0.5, robust = 0.5}   # or "clean=0.5,robust=0.5"; terms clean, robust, auc, radii
    starts = 4

The robust term is at ``eps_test`` (default: the configuration's ``eps``). Outputs (each written
atomically): ``schedule.csv`` (alpha on 201 points; each controlled parameter under each protocol),
``schedule.toml`` (the optimal schedule as a ``jaxadv run`` configuration), ``protocols.csv`` (each protocol's
trajectory: ``protocol, alpha``, the order parameters (``R, b``; a committee's ``Q_k_l, R_k_j, b_k, v_k``),
``test_error, robust_error``), ``starts.csv`` (each start's objective,
projected gradient, iterations and values), with the Monte Carlo ``confirm.csv`` (each protocol's objective
mean and standard error over replicas, and the gain), ``config.json`` and ``optimise.png``. The Monte Carlo
of each protocol keeps its checkpoint (``mc_checkpoint_<protocol>.npz``) until every file is written: an
interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Key, coerce

if TYPE_CHECKING:
    import argparse

    from matplotlib.figure import Figure

__all__ = ["OPTIMISE_KEYS", "load_optimise", "run_optimise", "optimise_command", "add_parser"]

_SCHEDULABLE = {"unit": ("eps", "eta_w", "eta_b"), "committee": ("eps", "eta_w", "eta_b", "eta_v")}
_BOTH = "unit committee"
_POSITIVE = (lambda x: x > 0, "must be > 0")
OPTIMISE_KEYS = (
    Key(
        "controls",
        "str",
        "eps",
        _BOTH,
        "optimise",
        "the scheduled parameters, comma-separated (eps, eta_w, eta_b; a committee's eta_v)",
    ),
    Key(
        "knots",
        "int",
        11,
        _BOTH,
        "optimise",
        "knots, equally spaced from 0 to alpha_max",
        (lambda x: 2 <= x <= 1000, "must lie in [2, 1000]"),
    ),
    Key("eps_bounds", "floats", [0.0, 2.0], _BOTH, "optimise", "[lower, upper] of eps's values"),
    Key("eta_w_bounds", "floats", [0.01, 1.0], _BOTH, "optimise", "[lower, upper] of eta_w's values"),
    Key("eta_b_bounds", "floats", [0.01, 1.0], _BOTH, "optimise", "[lower, upper] of eta_b's values"),
    Key("eta_v_bounds", "floats", [0.01, 1.0], "committee", "optimise", "[lower, upper] of eta_v's values"),
    Key("budget", "float?", None, _BOTH, "optimise", "mean of eps over the run (none: free)"),
    Key("objective", "str", "robust=1", _BOTH, "optimise", "weights of the terms clean, robust, auc, radii"),
    Key("auc_max", "float?", None, _BOTH, "optimise", "upper radius of the auc term (none: 2 eps_test)"),
    Key("radii", "str", "", _BOTH, "optimise", "radii of the radii term, comma-separated"),
    Key(
        "starts",
        "int",
        4,
        _BOTH,
        "optimise",
        "starting points (the first constant)",
        (lambda x: 1 <= x <= 1000, "must lie in [1, 1000]"),
    ),
    Key(
        "steps",
        "int",
        200,
        _BOTH,
        "optimise",
        "most iterations a start",
        (lambda x: 1 <= x <= 10**6, "must lie in [1, 10**6]"),
    ),
    Key(
        "method",
        "str",
        "spg",
        _BOTH,
        "optimise",
        "spg (projected spectral gradient) or adam (optax)",
        choices=("spg", "adam"),
    ),
    Key("learning_rate", "float", 0.05, _BOTH, "optimise", "Adam's first step", _POSITIVE),
)
"""The keys of ``jaxadv optimise`` beside the student's (the ``[optimise]`` table)."""

_BY_NAME = {k.name: k for k in OPTIMISE_KEYS}


def _weights(value: Any) -> dict[str, float]:
    """``objective`` as ``{term: weight}`` from a TOML table or ``"clean=0.5,robust=0.5"``."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, float] = {}
    for item in str(value).split(","):
        term, sep, w = item.partition("=")
        if not sep:
            raise ValueError(f"objective={value!r}: write the weights as clean=0.5,robust=0.5")
        try:
            out[term.strip()] = float(w)
        except ValueError:
            raise ValueError(f"objective={value!r}: the weight of {term.strip()} is not a number") from None
    return out


def load_optimise(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """``(configuration, options)``: the student's configuration (``jaxadv run``'s reader: a
    :class:`~jaxadv.app.config.RunConfig` for the unit, the resolved dict for a committee) and the optimisation's
    options (:data:`OPTIMISE_KEYS`, from the file's ``[optimise]`` table and ``--set``; ``options["student"]``
    names the student), each validated; ``ValueError`` naming the key and its value."""
    from .config import load_any, read_overrides
    from .io import read_toml

    raw = read_overrides(overrides)
    mine = {k: v for k, v in raw.items() if k in _BY_NAME}
    rest = [f"{k}={v}" for k, v in raw.items() if k not in _BY_NAME]
    table: dict[str, Any] = {}
    if spec.endswith(".toml") or os.path.exists(spec):
        table = read_toml(spec, "config file").get("optimise", {})
        if not isinstance(table, dict):
            raise ValueError(f"optimise={table!r} must be a table ([optimise])")
        for k in table:
            if k not in _BY_NAME:
                raise ValueError(f"optimise.{k}: unknown key; the keys of [optimise]: {', '.join(_BY_NAME)}")
    student, cfg = load_any(spec, rest)
    if student not in _SCHEDULABLE:
        raise ValueError(f"student={student!r}: jaxadv optimise optimises the unit's and the committee's protocols")
    opts: dict[str, Any] = {k.name: k.default for k in OPTIMISE_KEYS}
    for k, v in {**table, **mine}.items():
        opts[k] = v if k == "objective" and isinstance(v, dict) else coerce(_BY_NAME[k], v)
        key = _BY_NAME[k]
        scalar = opts[k] is not None and not isinstance(opts[k], list)
        if key.check is not None and scalar and not key.check[0](opts[k]):
            raise ValueError(f"{k}={opts[k]!r} {key.check[1]}")
        if key.choices and opts[k] not in key.choices:
            raise ValueError(f"{k}={opts[k]!r} is not one of {list(key.choices)}")
    opts["student"] = student
    opts["controls"] = tuple(x.strip() for x in str(opts["controls"]).split(",") if x.strip())
    for name in opts["controls"]:
        if name not in _SCHEDULABLE[student]:
            raise ValueError(
                f"controls={','.join(opts['controls'])!r}: {name!r} is not one of {', '.join(_SCHEDULABLE[student])}"
            )
        b = opts[f"{name}_bounds"]
        if len(b) != 2 or not b[0] <= b[1]:
            raise ValueError(f"{name}_bounds={b!r} must be [lower, upper] with lower <= upper")
    opts["weights"] = _weights(opts.pop("objective"))
    opts["radii"] = [float(x) for x in str(opts["radii"]).split(",") if x.strip()]
    if student == "unit" and cfg.rule.attack.field is None:
        raise ValueError(f"attack={cfg.attack!r} has no ODE: jaxadv optimise needs the ODE (attack l2 or noise)")
    if student == "committee":
        if cfg["attack"] not in ("fgm", "none"):
            raise ValueError(
                f"attack={cfg['attack']!r}: a committee's protocol is optimised through the ODE of the fgm attack "
                "(or none); the searches of pgd and worst have no derivative through the ODE here"
            )
        if cfg["R0"] is None or cfg["Q0"] is None:
            raise ValueError("R0, Q0: jaxadv optimise starts the committee's ODE from the given R0 and Q0; give both")
        if cfg["lipschitz"] is not None:
            raise ValueError(f"lipschitz={cfg['lipschitz']!r}: the committee's Lipschitz flow is not optimised")
    problem(cfg, opts)  # every check of the problem (bounds, budget, objective) before anything runs
    return cfg, opts


def values_of(cfg: Any) -> dict[str, Any]:
    """The configuration's values as a dict (the unit's :class:`~jaxadv.app.config.RunConfig` as JSON-ready
    values, a committee's resolved dict as it is)."""
    from .config import config_dict

    return cfg if isinstance(cfg, dict) else config_dict(cfg)


def problem(cfg: Any, opts: dict[str, Any]) -> Any:
    """The protocol problem of a configuration and its options: a :class:`jaxadv.control.Problem` (the unit) or a
    :class:`jaxadv.control.CommitteeControl` (the committee's ODE with its default quadrature rule for K and the
    fixed step ``dt``, as ``jaxadv committee`` integrates it)."""
    from ..control import Controls, Problem, make_objective
    from ..ode.solve import plan_steps

    values = values_of(cfg)
    eps_test = cfg.eps_test_value if opts["student"] == "unit" else float(cfg["eps_test"])
    objective = make_objective(
        opts["weights"],
        eps_test=eps_test,
        auc_max=2.0 * max(eps_test, 0.5) if opts["auc_max"] is None else opts["auc_max"],
        radii=opts["radii"],
    )
    names = opts["controls"]
    alpha_max = values["alpha_max"]
    knots = tuple(float(x) for x in np.linspace(0.0, alpha_max, opts["knots"]))
    lower = tuple(float(opts[f"{n}_bounds"][0]) for n in names)
    upper = tuple(float(opts[f"{n}_bounds"][1]) for n in names)
    controls = Controls(names, knots, lower, upper, opts["budget"]).check(alpha_max, _SCHEDULABLE[opts["student"]])
    plan = plan_steps(alpha_max, values["n_save"], values["dt"])
    if opts["student"] == "committee":
        import jax.numpy as jnp

        from ..committee import CommitteeState
        from ..committee.params import default_second_layer
        from ..committee.quadrature import default_rule
        from ..control import CommitteeControl
        from ..students.committee import resolve

        _, mixture, params, spec = resolve(cfg)
        K = spec.K
        y0 = CommitteeState(
            jnp.asarray(cfg["Q0"], float),
            jnp.asarray(cfg["R0"], float),
            jnp.zeros(K) if cfg["b0"] is None else jnp.asarray(cfg["b0"], float),
            default_second_layer(K) if cfg["v"] is None else jnp.asarray(cfg["v"], float),
        )
        return CommitteeControl(mixture, params, spec, plan, default_rule(K), y0, objective, controls)
    return Problem(
        cfg.params, plan, objective, controls, cfg.rule, cfg.rule_params, 0.0 if cfg.R0 is None else cfg.R0, cfg.b0
    )


def _scheduled_cfg(cfg: Any, pb: Any, values: np.ndarray) -> Any:
    """``cfg`` with the problem's controlled keys the schedules of ``values`` (:meth:`Problem.scheduled`)."""
    scheduled = pb.scheduled(values)
    new = {n: getattr(scheduled, n) for n in pb.controls.names}
    return {**cfg, **new} if isinstance(cfg, dict) else dataclasses.replace(cfg, **new)


def _toml_value(v: Any) -> str:
    from ..schedule import Schedule

    if isinstance(v, Schedule):
        knots = ", ".join(repr(float(x)) for x in v.knots)
        values = ", ".join(repr(float(x)) for x in np.asarray(v.values, float))
        return f"{{knots = [{knots}], values = [{values}]}}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(x) for x in np.asarray(v).tolist()) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def schedule_toml(cfg: Any) -> str:
    """A ``jaxadv run`` configuration (TOML) of ``cfg``: every key that differs from the unit's defaults, the
    schedules as ``{knots = [...], values = [...]}``."""
    from .config import RunConfig, defaults_of

    lines = ["# the optimal schedule found by jaxadv optimise; run it with `jaxadv run schedule.toml`"]
    if isinstance(cfg, dict):  # a committee: every key that differs from its defaults
        lines.append('student = "committee"')
        for k, d in defaults_of("committee").items():
            v = cfg.get(k)
            if k in ("name", "mixture") or v is None or (not hasattr(v, "knots") and _same(v, d)):
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        if cfg.get("mixture") is not None:
            lines.append("[mixture]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in cfg["mixture"].items()]
        return "\n".join(lines) + "\n"
    default = RunConfig()
    for f in dataclasses.fields(RunConfig):
        v = getattr(cfg, f.name)
        if f.name in ("name", "rule_extra") or v is None or (not hasattr(v, "knots") and v == getattr(default, f.name)):
            continue
        lines.append(f"{f.name} = {_toml_value(v)}")
    for k, v in cfg.rule_extra:
        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    except ValueError:  # ragged
        return False


def run_optimise(
    cfg: Any,
    opts: dict[str, Any],
    out_dir: str,
    *,
    mc: bool = True,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Optimise, compare the protocols, confirm with the Monte Carlo (``mc``) and write every file (module
    docstring). Returns the dictionary written to ``config.json``."""
    from .. import __version__
    from ..analysis.compare import mean_sem
    from ..control import compare_protocols, optimise
    from ..schedule import Schedule, describe
    from ..students.unit import mc_plan
    from .checkpoint import finished_checkpoints, run_resumable
    from .io import atomic_write_bytes, write_csv, write_figure, write_json

    pb = problem(cfg, opts)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    what = f"controls {', '.join(pb.controls.names)} on {len(pb.controls.knots)} knots"
    log(f"objective: {pb.objective.describe()}; {what}")
    run_opts = {k: opts[k] for k in ("steps", "method", "learning_rate")}
    res = optimise(pb, starts=opts["starts"], seed=values_of(cfg)["seed"], log=log, **run_opts)
    protocols = compare_protocols(pb, res, **run_opts)
    t_opt = time.perf_counter() - t0
    names, knots = pb.controls.names, pb.controls.knots
    best = protocols["optimal"].objective
    for p in protocols.values():
        gain = "" if p.name == "optimal" else f" (optimal is {p.objective - best:+.6f} better)"
        log(f"{p.name:9s} objective {p.objective:.6f}{gain}")

    values = values_of(cfg)
    grid = np.linspace(0.0, values["alpha_max"], 201)
    sched = {"alpha": grid}
    for i, n in enumerate(names):
        for p in protocols.values():  # the schedule the run used, evaluated (jaxadv.schedule.Schedule)
            sched[f"{n}_{p.name}"] = np.asarray(Schedule(knots, p.values[i])(grid))
    rows: dict[str, list[Any]] = {}
    for p in protocols.values():
        cols = {"protocol": [p.name] * len(p.alpha), "alpha": p.alpha, **p.order}
        cols.update(test_error=p.test_error, robust_error=p.robust_error)
        for k, x in cols.items():
            rows.setdefault(k, []).extend(x if k == "protocol" else list(np.asarray(x, float)))
    starts = {
        "start": np.arange(len(res.starts)),
        "objective_initial": [s.history[0] for s in res.starts],
        "objective": [s.objective for s in res.starts],
        "projected_gradient_initial": [s.kkt0 for s in res.starts],
        "projected_gradient": [s.kkt for s in res.starts],
        "iterations": [len(s.history) - 2 for s in res.starts],
    }
    for i, n in enumerate(names):
        for j in range(len(knots)):
            starts[f"{n}_{j}"] = [s.values[i, j] for s in res.starts]
    best_cfg = _scheduled_cfg(cfg, pb, res.values)
    info: dict[str, Any] = {
        "config": {k: v for k, v in values_of(cfg).items() if k != "mixture"},
        "optimise": {**{k: v for k, v in opts.items() if k != "weights"}, "objective": opts["weights"]},
        "objective": pb.objective.describe(),
        "knots": list(knots),
        "schedules": {
            p.name: {n: describe(Schedule(knots, p.values[i])) for i, n in enumerate(names)} for p in protocols.values()
        },
        "objectives": {p.name: p.objective for p in protocols.values()},
        "gain_over_constant": protocols["constant"].objective - best,
        "gain_over_ramp": protocols["ramp"].objective - best,
        "starts_spread": float(np.ptp([s.objective for s in res.starts])),
        "projected_gradient": float(min(s.kkt for s in res.starts if s.objective == res.objective)),
        "jaxadv_version": __version__,
        "timings_s": {"optimise_s": t_opt},
    }
    confirm: dict[str, list[Any]] | None = None
    with finished_checkpoints() as finished:
        if mc:
            confirm = {
                k: [] for k in ("protocol", "objective_ode", "objective_mc_mean", "objective_mc_sem", "n_finite")
            }
            per: dict[str, np.ndarray] = {}
            for name in ("optimal", "constant"):
                c = _scheduled_cfg(cfg, pb, protocols[name].values)
                plan = mc_plan(c) if opts["student"] == "unit" else _committee_plan(c, pb)
                path = os.path.join(out_dir, f"mc_checkpoint_{name}.npz")
                obs = run_resumable(
                    plan, checkpoint=path, progress=progress, label=f"monte carlo ({name})", remove_checkpoint=False
                )
                finished.append(path)
                per[name] = phi = _replica_objectives(pb, plan, obs)
                mean, sem = mean_sem(phi[np.isfinite(phi)])
                for k, v in zip(
                    confirm, (name, protocols[name].objective, mean, sem, int(np.isfinite(phi).sum())), strict=True
                ):
                    confirm[k].append(v)
            diff = per["constant"] - per["optimal"]  # the same keys: paired replicas
            ok = np.isfinite(diff)
            gain, gain_sem = mean_sem(diff[ok])
            predicted = info["gain_over_constant"]
            z = abs(gain - predicted) / gain_sem if gain_sem > 0 else math.inf
            if predicted < 3 * gain_sem:
                verdict = (
                    f"the predicted gain {predicted:.5f} is within the noise (3 SE = {3 * gain_sem:.5f}) at "
                    f"N={values['N']}: a null result at this size"
                )
            else:
                word = "confirmed" if z <= 3 else "NOT confirmed"
                verdict = (
                    f"{word}: measured gain {gain:.5f} +- {gain_sem:.5f} against {predicted:.5f} predicted "
                    f"({z:.2f} SE{'' if z <= 3 else ' > 3'})"
                )
            info.update(gain_mc=gain, gain_mc_sem=gain_sem, gain_deviation_sem=z, verdict=verdict)
            log(verdict)
        write_csv(os.path.join(out_dir, "schedule.csv"), sched)
        text = schedule_toml(
            {**best_cfg, "mc": True} if isinstance(best_cfg, dict) else dataclasses.replace(best_cfg, mc=True)
        )
        atomic_write_bytes(os.path.join(out_dir, "schedule.toml"), text.encode())
        write_csv(os.path.join(out_dir, "protocols.csv"), rows)
        write_csv(os.path.join(out_dir, "starts.csv"), starts)
        if confirm is not None:
            write_csv(os.path.join(out_dir, "confirm.csv"), confirm)
        write_json(os.path.join(out_dir, "config.json"), info)
        write_figure(
            os.path.join(out_dir, "optimise.png"), plot_protocols(protocols, sched, names, pb, confirm, values["name"])
        )
        info["timings_s"]["total_s"] = time.perf_counter() - t0
        write_json(os.path.join(out_dir, "config.json"), info)
    return info


def _committee_plan(cfg: dict[str, Any], pb: Any) -> Any:
    """The committee's Monte Carlo plan of a configuration, from the problem's start."""
    from ..students.committee import mc_plan, resolve

    return mc_plan(resolve(cfg), **{k: np.asarray(z) for k, z in zip(("Q0", "R0", "b0", "v0"), pb.y0, strict=True)})


def _replica_objectives(pb: Any, plan: Any, obs: Any) -> np.ndarray:
    """The objective of each replica's final order parameters (NaN where they are not finite)."""
    from ..control import CommitteeControl

    if isinstance(pb, CommitteeControl):
        import jax
        import jax.numpy as jnp

        from ..committee import CommitteeState
        from ..committee.montecarlo import committee_result
        from ..control import committee_objective

        c = committee_result(plan, obs)
        finals = CommitteeState(*(jnp.asarray(np.asarray(z[:, -1], np.float64)) for z in (c.Q, c.R, c.b, c.v)))
        mix = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), pb.mixture)
        one = jax.jit(lambda s: committee_objective(pb.objective, s, mix, pb.measure_rule))
        ok = c.finite[:, -1]
        safe = jax.tree.map(lambda z: jnp.where(ok.reshape((-1,) + (1,) * (z.ndim - 1)), z, z[jnp.argmax(ok)]), finals)
        phi = np.array([float(one(jax.tree.map(lambda z, i=i: z[i], safe))) for i in range(len(ok))])
    else:
        from ..mc import driver

        m = driver.result(plan, np.stack(obs))
        R, b = (np.asarray(x[:, -1], np.float64) for x in (m.R, m.b))
        phi = np.array(pb.objective.fn(R, b, pb.params), float)
        ok = m.finite[:, -1]
    phi[~np.asarray(ok)] = np.nan
    return phi


def plot_protocols(
    protocols: dict[str, Any], sched: dict[str, np.ndarray], names: tuple, pb: Any, confirm: dict | None, title: str
) -> Figure:
    """Left: each controlled parameter against alpha under each protocol; right: the clean error (dotted), the
    robust error (solid) and the objective (dashed) against alpha (ODE), with the Monte Carlo's final
    objective where measured."""
    from matplotlib.figure import Figure

    from .plots import ALPHA_LABEL

    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    colors = {"optimal": "C3", "constant": "C0", "ramp": "C2"}
    for n in names:
        for p in protocols.values():
            ax1.plot(
                sched["alpha"],
                sched[f"{n}_{p.name}"],
                color=colors[p.name],
                ls="-" if n == "eps" else "--",
                label=f"{n}, {p.name}",
            )
    ax1.set_xlabel(ALPHA_LABEL)
    ax1.set_ylabel("scheduled parameter")
    ax1.legend(fontsize=8)
    for p in protocols.values():
        ax2.plot(p.alpha, p.test_error, color=colors[p.name], ls=":", label=f"{p.name}: clean")
        ax2.plot(p.alpha, p.objective_path, color=colors[p.name], ls="--")
        ax2.plot(
            p.alpha,
            p.robust_error,
            color=colors[p.name],
            label=f"{p.name}: robust (eps={pb.objective.eps_test:g}), objective {p.objective:.4f}",
        )
    if confirm is not None:
        for name, mean, sem in zip(
            confirm["protocol"], confirm["objective_mc_mean"], confirm["objective_mc_sem"], strict=True
        ):
            ax2.errorbar(
                [protocols[name].alpha[-1]],
                [mean],
                yerr=[2 * sem],
                fmt="o",
                color=colors[name],
                capsize=3,
                label=f"{name}: Monte Carlo objective ± 2 SE",
            )
    ax2.set_xlabel(ALPHA_LABEL)
    ax2.set_ylabel("error")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{title}: {pb.objective.describe()}", fontsize=10)
    return fig


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """``jaxadv optimise``'s arguments."""
    from .arguments import add_config_arguments

    p = subparsers.add_parser(
        "optimise",
        help="the optimal schedule of eps (and learning rates) by gradients through the ODE; Monte Carlo check",
        description="Keys of [optimise]: "
        + ", ".join(f"{k.name} ({k.doc}; default {k.default})" for k in OPTIMISE_KEYS),
    )
    add_config_arguments(
        p,
        "preset or .toml file (its [optimise] table)",
        "results/<name>_optimise",
        "--set budget=0.5",
        "no Monte Carlo confirmation",
    )
    p.set_defaults(func=optimise_command)


def optimise_command(args: argparse.Namespace) -> int:
    """Body of ``jaxadv optimise``: load, claim ``--out``, :func:`run_optimise`."""
    from .cli import check_run
    from .outputs import claim_output

    cfg, opts = load_optimise(args.config, args.overrides)
    values = values_of(cfg)
    mc = values["mc"] and not args.no_mc
    if mc:  # two runs, one after the other: one's memory
        units = values["replicas"] * (values["K"] if opts["student"] == "committee" else 1)
        check_run(
            values["N"], units, values["n_save"], values["x64"], values["alpha_max"], values.get("sampler", "full")
        )
    out = args.out or os.path.join("results", f"{values['name']}_optimise")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    ident = {
        "config": {k: v for k, v in values.items() if k not in ("mc", "mixture")},
        "optimise": {k: str(v) for k, v in opts.items()},
        "mc": mc,
    }
    with claim_output(out, ident, overwrite=args.overwrite, command="optimise"):
        print(f"jaxadv optimise {values['name']} -> {out}", flush=True)
        run_optimise(cfg, opts, out, mc=mc, progress=not args.quiet, log=log)
    print(f"wrote {out}", flush=True)
    return 0
