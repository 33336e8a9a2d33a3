r"""Parameter sweeps: ODE (and optionally Monte Carlo) trajectories over a grid of model
parameters, written chunk by chunk so that nothing is lost.

A sweep is the Cartesian product of the swept axes (any of ``eps, prior, rho, v1, v2,
eta_w, eta_b, eps_test``) on top of base parameters. The grid is flattened point-major
(the last axis varies fastest) and cut into chunks of a fixed number of points, the same on
any device count; inside the computation each chunk is padded (repeating its last point) to
that number rounded up to a multiple of the device count, so one compiled ``vmap`` of the RK4
``scan`` serves every chunk (no recompilation per point or per chunk) and the chunk axis is
sharded over the devices (:mod:`jaxadv.sharding`).

:func:`run_chunks` is the engine of every student's sweep (this one and
:mod:`jaxadv.app.committee_sweep`): each chunk is written atomically to
``DIR/chunks/chunk_XXXXX.npz`` as soon as it is done; an interrupted sweep rerun with the same
command skips the chunks on disk (also on another device count) and assembles the same table.
The Monte Carlo of a point keeps ``DIR/mc_checkpoint.npz`` (:mod:`jaxadv.app.checkpoint`): Ctrl-C
or SIGTERM inside a point saves its finished save intervals and the rerun resumes it bit for
bit. ``DIR/config.json`` holds a hash of the resolved configuration; a different configuration
in the same directory is refused.

TOML file (``jaxadv sweep FILE.toml --out DIR``)::

    alpha_max = 200          # final time
    n_save = 20              # save intervals (n_save + 1 rows per grid point)
    dt = 1.0                 # largest RK4 step
    chunk = 256              # grid points per chunk (0: sized to memory; with mc one point)
    ode = true
    mc = false               # Monte Carlo per grid point (jaxadv.simulate, resumable)
    N = 500                  # MC input dimension
    replicas = 32            # MC replicas per grid point
    seed = 0                 # MC seed; point i uses fold_in(key(seed), i)
    sampler = "full"         # Monte Carlo sampler: "full" or "reduced"

    [base]                   # fixed model parameters (defaults: jaxadv.ModelParams) and the rule
    # preset = "scenario2"   # a unit preset: its parameters and run settings where the file sets none
    rho = 2.0
    eps_dist = "uniform"     # rule keys: attack, eps_dist, gate, nonrobust_only and their parameters
    eps_min = 0.0

    [grid]                   # swept axes: a list, or {linspace = [start, stop, num]}
    eps_max = {linspace = [0.0, 1.5, 7]}   # any scalar model or rule parameter is an axis
    prior = [0.5, 0.7, 0.9]

A schedule in ``[base]`` (``eps = {knots = [0, 5, 10], values = [0, 0.5, 1]}``; :mod:`jaxadv.schedule`) makes its
knot values axes: ``"eps@2" = [0.5, 1.0]`` sweeps the value at the third knot. Without ``eps_test`` the robust
error is at each point's final eps.

Outputs (``jaxadv sweep`` also writes ``heatmaps.png`` and ``tradeoff.png``, see
:func:`write_sweep_figures`): ``sweep.csv`` (one row per grid point and save point: ``point``, the grid
coordinates, ``alpha, R, b, test_error, robust_error`` and, with the Monte Carlo,
``R_mean, R_sem, b_mean, b_sem, test_error_mean, test_error_sem, robust_error_mean,
robust_error_sem, n_finite``), ``sweep.npz`` (the same on the grid, shape
``grid_shape + (n_save + 1,)``, and the axes), ``config.json``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import platform
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.measures import robust_error, test_error
from ..defaults import ALPHA_MAX, DT, N_SAVE
from ..distributed import broadcast, is_multiprocess, is_primary
from ..model.losses import LOSSES
from ..model.params import PARAM_RULES, SCHEDULABLE, ModelParams
from ..ode.solve import solve_ode
from ..schedule import Schedule, cast, described, parse_schedule
from ..sharding import pad_batch, padded_size, to_host
from ..validation import check_value
from .io import npz_problem, read_toml, write_csv, write_json, write_npz
from .progress import Progress

if TYPE_CHECKING:
    import argparse

    from ..model.rule import TrainingRule
    from .committee_sweep import CommitteeSweepConfig
    from .sweep_plots import SweepView

__all__ = [
    "SweepConfig",
    "SweepResult",
    "SWEEP_AXES",
    "make_sweep_config",
    "load_sweep_config",
    "sweep",
    "load_sweep",
    "table",
    "grid_points",
    "sweep_command",
]

RULE_NAME_KEYS = ("attack", "eps_dist", "gate", "nonrobust_only")
"""Keys of ``[base]`` that choose the training rule's parts (strings, a boolean)."""


def _rule_axes():
    """Scalar parameters of every registered rule part (sweepable), plus ``noise_norm``."""
    from ..model.rule import registered_params

    return tuple(k for k, p in registered_params().items() if not p.vector and k != "noise_std") + ("noise_norm",)


def _rule_vectors():
    from ..model.rule import registered_params

    return tuple(k for k, p in registered_params().items() if p.vector)


def sweep_axes() -> tuple:
    """The sweepable axes: every model parameter, ``eps_test`` and every scalar parameter of a
    registered rule part (read from the registries when called, so a new record's parameters
    are axes at once)."""
    return ModelParams._fields + ("eps_test",) + _rule_axes()


SWEEP_AXES = sweep_axes()
MC_QUANTITIES = ("R", "b", "test_error", "robust_error")
MC_COLUMNS = tuple(f"{q}_{m}" for q in MC_QUANTITIES for m in ("mean", "sem")) + ("n_finite",)


@dataclass(frozen=True)
class SweepConfig:
    """A resolved sweep.

    Attributes:
        base: fixed model parameters ``{name: float}`` (missing ones from :class:`ModelParams`);
            may hold ``eps_test`` (default: the point's ``eps``).
        grid: swept axes ``{name: tuple of floats}`` in grid order (last varies fastest).
        alpha_max, n_save, dt: ODE time, save intervals and largest RK4 step.
        chunk: grid points per chunk (``0`` sizes it to memory); with the Monte Carlo one point a
            chunk (see :func:`chunk_size`).
        ode, mc: what to compute. ``mc`` runs :func:`jaxadv.simulate` per grid point.
        N, replicas, seed, sampler, x64: Monte Carlo settings.
        loss, R0, b0: loss name and initial condition (``R0=None``: random w; the ODE uses 0).
        name: label.
        save, points_per_decade: ``"linear"`` (``n_save`` equal intervals) or ``"log"``
            (``points_per_decade`` save points a decade of alpha from 1/N; :mod:`jaxadv.mc.schedule`),
            for the ODE and the Monte Carlo alike.
    """

    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    alpha_max: float = ALPHA_MAX
    n_save: int = N_SAVE
    dt: float = DT
    chunk: int = 0
    ode: bool = True
    mc: bool = False
    N: int = 500
    replicas: int = 32
    seed: int = 0
    sampler: str = "full"
    x64: bool = False
    loss: str = "quadratic"
    R0: float | None = None
    b0: float = 0.0
    name: str = "sweep"
    save: str = "linear"
    points_per_decade: int = 10

    def as_dict(self: Any) -> dict:
        d = dataclasses.asdict(self)
        d["grid"] = {k: list(v) for k, v in self.grid.items()}
        if "base" in d:  # a schedule as {"knots": [...], "values": [...]}
            d["base"] = described(d["base"])
        return d

    def digest(self) -> str:
        """SHA-256 of the configuration (name excluded): equal digests give equal tables."""
        d = self.as_dict()
        d.pop("name")
        if d["save"] == "linear":  # the digests of sweeps made before log-spaced saves existed stay valid
            d.pop("save"), d.pop("points_per_decade")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


class SweepResult(NamedTuple):
    """Sweep output on the grid. ``G`` is the grid shape, ``P = n_save + 1``.

    Attributes:
        axes: ``{name: values}`` of the swept axes, in grid order.
        alpha: save times, shape ``(P,)``.
        params: :class:`ModelParams` with leaves of shape ``G``.
        eps_test: robust-error radius, shape ``G``.
        R, b, test_error, robust_error: ODE values, shape ``G + (P,)`` (``None`` without ODE).
        mc: ``{"R_mean": ..., "R_sem": ..., ..., "n_finite": ...}``, each ``G + (P,)``, or ``None``.
    """

    axes: dict
    alpha: np.ndarray
    params: ModelParams
    eps_test: np.ndarray
    R: np.ndarray | None
    b: np.ndarray | None
    test_error: np.ndarray | None
    robust_error: np.ndarray | None
    mc: dict | None


# --- configuration ----------------------------------------------------------------------------


MAX_AXIS = 10**7
"""Most values of one swept axis (a larger grid is a typo: at 128 bytes a save point it would not fit)."""


def axis_values(name, spec):
    """The values of axis ``name``: a list, one number, or ``{linspace = [start, stop, num]}``; every value
    finite, at most :data:`MAX_AXIS` of them."""
    if isinstance(spec, dict):
        if set(spec) != {"linspace"} or not isinstance(spec["linspace"], list) or len(spec["linspace"]) != 3:
            raise ValueError(f"grid.{name}={spec!r} must be a list or {{linspace = [start, stop, num]}}")
        *ends, n = spec["linspace"]
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 1 <= n <= MAX_AXIS or int(n) != n:
            raise ValueError(f"grid.{name}: linspace num={n!r} must be an integer in [1, {MAX_AXIS}]")
        a, b = (check_value_of(f"grid.{name}: value", x) for x in ends)
        # rounded to 12 significant digits: 0.15, not 0.15000000000000002
        return tuple(float(f"{x:.12g}") for x in np.linspace(a, b, int(n)))
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return (check_value_of(f"grid.{name}: value", spec),)
    if not isinstance(spec, (list, tuple)) or len(spec) == 0:
        raise ValueError(f"grid.{name}={spec!r} must be a non-empty list or {{linspace = [start, stop, num]}}")
    if len(spec) > MAX_AXIS:
        raise ValueError(f"grid.{name}: {len(spec)} values, more than {MAX_AXIS}")
    return tuple(check_value_of(f"grid.{name}: value", x) for x in spec)


def check_value_of(what: str, x: Any) -> float:
    """``x`` as a float; ``ValueError`` (``what`` and the value) unless it is a finite number."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what}={x!r} is not a number")
    if not math.isfinite(x):
        raise ValueError(f"{what}={x!r} is not finite")
    return float(x)


def make_sweep_config(grid: dict[str, Any], base: dict[str, Any] | None = None, **options: Any) -> SweepConfig:
    """Build and validate a :class:`SweepConfig` from Python values.

    ``grid`` maps axis names to lists or ``{"linspace": [start, stop, num]}``.

    Raises:
        ValueError: naming the offending key and value.
    """
    base = dict(base or {})
    for k in base:
        known = sweep_axes() + RULE_NAME_KEYS + _rule_vectors()
        if k not in known:
            raise ValueError(f"base.{k}: unknown parameter; known: {', '.join(known)}")
    for k, v in base.items():
        if k in RULE_NAME_KEYS:
            kind = bool if k == "nonrobust_only" else str
            if not isinstance(v, kind):
                raise ValueError(f"base.{k}={v!r} must be a {'boolean' if kind is bool else 'string'}")
        elif k in SCHEDULABLE and (isinstance(v, (dict, Schedule)) or (isinstance(v, str) and ":" in v)):
            base[k] = v if isinstance(v, Schedule) else parse_schedule(f"base.{k}", v)
        elif k in _rule_vectors():
            if isinstance(v, str):
                from .config import _floats

                v = _floats(k, v)
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"base.{k}={v!r} must be a list of numbers")
            base[k] = tuple(check_value_of(f"base.{k}", x) for x in v)
        else:
            base[k] = check_value_of(f"base.{k}", v)
    axes = {}
    for k, v in grid.items():
        if k in base:
            raise ValueError(f"grid.{k}: {k} is also set in [base]; give it in one of them")
        if "@" in k:  # a knot value of a schedule in [base]: eps@2 is the value at eps's third knot
            name, _, i = k.partition("@")
            sched = base.get(name)
            if not isinstance(sched, Schedule) or not i.isdigit() or int(i) >= len(sched.knots):
                raise ValueError(
                    f"grid.{k}: a knot axis NAME@I needs [base] NAME = {{knots = [...], values = [...]}} with more "
                    f"than I knots"
                )
        elif k not in sweep_axes():
            raise ValueError(f"grid.{k}: unknown axis; sweepable: {', '.join(sweep_axes())}, or NAME@I (a knot value)")
        axes[k] = axis_values(k, v)
    if not axes:
        raise ValueError("grid={} is empty: give at least one axis, e.g. eps = [0, 0.5, 1]")
    names = {f.name for f in dataclasses.fields(SweepConfig)} - {"base", "grid"}
    for k in options:
        if k not in names:
            raise ValueError(f"unknown key {k!r}; known keys: {', '.join(sorted(names | {'base', 'grid'}))}")
    cfg = SweepConfig(base=base, grid=axes, **options)
    return validate_sweep_config(cfg)


def validate_sweep_config(cfg: SweepConfig) -> SweepConfig:
    """Check every value; raise ``ValueError`` naming the parameter and its value."""
    from ..model.rule import check_ode_supported, check_reduced_supported, rule_param_specs, validate_rule
    from .config import check_name, check_unused

    check_settings(cfg, {"n_save": 1, "chunk": 0, "N": 2, "replicas": 1, "seed": 0}, ("ode", "mc", "x64"))
    check_name(cfg.name)
    for key, choices in (("loss", tuple(LOSSES)), ("sampler", ("full", "reduced")), ("save", ("linear", "log"))):
        if not isinstance(getattr(cfg, key), str) or getattr(cfg, key) not in choices:
            raise ValueError(f"{key}={getattr(cfg, key)!r} is not one of {sorted(choices)}")
    if cfg.R0 is not None:
        check_value("R0", check_value_of("R0", cfg.R0), lambda x: -1 <= x <= 1, "must lie in [-1, 1]")
    check_value_of("b0", cfg.b0)
    ppd = cfg.points_per_decade
    if isinstance(ppd, bool) or not isinstance(ppd, (int, float)) or not 1 <= ppd <= 10**6 or int(ppd) != ppd:
        raise ValueError(f"points_per_decade={ppd!r} must be an integer in [1, 10**6]")
    if cfg.save == "log" and cfg.alpha_max * cfg.N < 1:
        raise ValueError(f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N}: at least one step")
    n_points = math.prod(len(v) for v in cfg.grid.values())
    saves = cfg.n_save if cfg.save == "linear" else int(ppd * (math.log10(cfg.alpha_max * cfg.N) + 1))
    check_size(cfg, n_points, saves, 1, cfg.sampler, linear_mc=cfg.save == "linear")
    for name, (ok, what) in PARAM_RULES.items():
        given = cfg.base.get(name, getattr(ModelParams(), name))
        if isinstance(given, Schedule):  # its knot values, and every value a knot axis takes
            knot_axes = [v for k, vs in cfg.grid.items() if k.partition("@")[0] == name for v in vs]
            for v in [*np.asarray(given.values, float).ravel(), *knot_axes]:
                check_value(name, float(v), ok, what)
            continue
        for v in cfg.grid.get(name, (given,)):
            check_value(name, float(v), ok, what)
    for v in cfg.grid.get("eps_test", (cfg.base.get("eps_test", 0.0),)):
        check_value("eps_test", v, lambda x: x >= 0, "must be >= 0")
    rule = sweep_rule(cfg)
    reads = set(rule_param_specs(rule))
    reads |= {"noise_norm"} if "noise_std" in reads else set()
    given = {k: v for k, v in {**cfg.base, **cfg.grid}.items() if k in _rule_axes() + _rule_vectors()}
    check_unused(given, reads.__contains__, f"loss={cfg.loss!r}, {', '.join(f'{k}={v!r}' for k, v in rule_names(cfg))}")
    for i in range(max(1, max((len(v) for v in cfg.grid.values()), default=1))):
        validate_rule(rule, _rule_values(cfg, {k: v[min(i, len(v) - 1)] for k, v in cfg.grid.items()}))
    if cfg.ode:
        check_ode_supported(rule)
    if cfg.mc and cfg.sampler == "reduced":
        check_reduced_supported(rule)
    return cfg


def check_settings(cfg: Any, counts: dict[str, int], flags: tuple[str, ...]) -> None:
    """The run settings every student's sweep shares: ``counts`` (integers ``>=`` their bound), ``flags``
    (booleans), ``seed`` in the PRNG's range, ``alpha_max`` and ``dt`` finite and positive, something to
    compute; ``ValueError`` naming the key and its value."""
    from .config import MAX_SEED

    for key, lo in counts.items():
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{key}={v!r} must be an integer >= {lo}")
    if cfg.seed > MAX_SEED:
        raise ValueError(f"seed={cfg.seed!r} must be an integer in [0, 2**63 - 1]")
    for key in ("alpha_max", "dt"):
        check_value(key, check_value_of(key, getattr(cfg, key)), lambda x: x > 0, "must be > 0")
    for key in flags:
        if not isinstance(getattr(cfg, key), bool):
            raise ValueError(f"{key}={getattr(cfg, key)!r} is not a boolean (true/false)")
    if not (cfg.ode or cfg.mc):
        raise ValueError("ode=false and mc=false: nothing to compute")


MAX_POINT_RUNS = 10**4
"""Most grid points of a sweep whose points run one at a time (the Monte Carlo; the committee's records and
errors): at least 0.014 s a point for the unit's Monte Carlo and 0.05 s for the committee, at the smallest
sizes (measured on 2 loaded cores), so a larger grid is hours of overhead; split it into several sweeps."""


def check_size(
    cfg: Any,
    n_points: int,
    saves: int,
    units: int,
    sampler: str = "full",
    linear_mc: bool = True,
    by_point: bool = False,
) -> None:
    """Before any computation: refuse a sweep whose ODE needs more RK4 steps a point than its step counter
    holds, whose Monte Carlo more steps than :data:`jaxadv.mc.driver.MAX_MC_STEPS` or under one step a save,
    whose points run one at a time (``cfg.mc``, or ``by_point``: a committee) and number more than
    :data:`MAX_POINT_RUNS`, or whose grid, trajectories and one point's Monte Carlo (``units`` units a replica)
    exceed the memory available, with the estimate in the message."""
    if (cfg.mc or by_point) and n_points > MAX_POINT_RUNS:
        shape = " x ".join(f"{k}: {len(v)}" for k, v in cfg.grid.items())
        raise ValueError(
            f"grid ({shape}) = {n_points} points, each run on its own (at least 0.01-0.05 s a point): more than "
            f"{MAX_POINT_RUNS}; split the grid into several sweeps"
        )
    from ..mc.driver import MAX_MC_STEPS, save_schedule
    from .config import MAX_ODE_STEPS
    from .resources import check_fits, run_memory_bytes, sweep_memory_bytes

    if cfg.ode and cfg.alpha_max / cfg.dt > MAX_ODE_STEPS:
        raise ValueError(
            f"alpha_max={cfg.alpha_max!r} needs {cfg.alpha_max / cfg.dt:.3g} RK4 steps of dt={cfg.dt!r}, more than "
            f"{MAX_ODE_STEPS:.3g}; lower alpha_max or raise dt"
        )
    if cfg.n_save > MAX_ODE_STEPS:
        raise ValueError(f"n_save={cfg.n_save!r} is more than {MAX_ODE_STEPS} save points; lower it")
    if cfg.mc:
        if cfg.alpha_max * cfg.N > MAX_MC_STEPS:
            raise ValueError(
                f"alpha_max={cfg.alpha_max!r} at N={cfg.N} is {cfg.alpha_max * cfg.N:.3g} Monte Carlo steps, more "
                f"than the step counter's {MAX_MC_STEPS}; lower alpha_max or N"
            )
        if linear_mc and cfg.alpha_max * cfg.N / cfg.n_save < 1:
            raise ValueError(f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N} and n_save={cfg.n_save}")
        save_schedule(cfg.N, cfg.alpha_max, cfg.n_save)
    need, how = sweep_memory_bytes(n_points, saves)
    if cfg.mc:
        mc, mc_how = run_memory_bytes(cfg.N, cfg.replicas * units, saves, 8 if cfg.x64 else 4, sampler)
        mc_how = mc_how.replace(f"replicas={cfg.replicas * units}", f"replicas={cfg.replicas} x {units} units")
        need, how = need + mc, f"{how}, and a point's Monte Carlo: {mc_how}"
    check_fits((need, how), "the sweep")


def load_sweep_config(path: str) -> SweepConfig:
    """Read a sweep TOML file (see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid TOML, unknown key or invalid value (naming it).
    """
    data = read_toml(path, "sweep file")
    grid = data.pop("grid", None)
    if not isinstance(grid, dict):
        raise ValueError(f"{path!r} has no [grid] table, e.g. [grid] eps = [0, 0.5, 1]")
    base = data.pop("base", {})
    if not isinstance(base, dict):
        raise ValueError(f"base={base!r} must be a table")
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    if "preset" in base:
        base, data = _from_preset(base, data, grid)
    for k in ("alpha_max", "dt", "b0", "R0"):
        if k in data and isinstance(data[k], int) and not isinstance(data[k], bool):
            data[k] = float(data[k])
    return make_sweep_config(grid, base, **data)


def _from_preset(base: dict, data: dict, grid: dict) -> tuple[dict, dict]:
    """``[base] preset = "scenario1"`` (a unit preset): the preset's model parameters fill ``[base]`` and
    its run settings (``N``, ``replicas``, ``alpha_max``, ``n_save``, ``dt``, ``seed``) the top level, where the
    file (``[base]``, ``[grid]`` or the top level) does not set them; ``model = "single"`` may stand beside it."""
    from .config import PRESETS

    base = dict(base)
    name = base.pop("preset")
    if base.get("model", "single") != "single":
        raise ValueError(f"base.model={base['model']!r} with a unit preset must be 'single'")
    base.pop("model", None)
    if name not in PRESETS:
        raise ValueError(f"base.preset={name!r} is no unit preset; one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    for k in ModelParams._fields:  # the data and learning rates (a preset's rule is the default one)
        if k not in base and k not in grid:
            base[k] = getattr(preset, k)
    data = dict(data)
    for k in ("N", "replicas", "alpha_max", "n_save", "dt", "seed"):
        data.setdefault(k, getattr(preset, k))
    return base, data


def sweep_rule(cfg: SweepConfig) -> TrainingRule:
    """The :class:`jaxadv.TrainingRule` of a sweep (``[base]`` keys ``attack``, ``eps_dist``, ``gate``,
    ``nonrobust_only`` and the top-level ``loss``)."""
    from ..model.rule import training_rule

    names = dict(rule_names(cfg))
    return training_rule(
        names["attack"], names["eps_dist"], names["gate"], nonrobust_only=names["nonrobust_only"], loss=cfg.loss
    )


def rule_names(cfg: SweepConfig) -> list[tuple[str, Any]]:
    """``[(key, value)]`` of the rule's parts, ``[base]``'s or the defaults."""
    defaults = {"attack": "l2", "eps_dist": "fixed", "gate": "none", "nonrobust_only": False}
    return [(k, cfg.base.get(k, d)) for k, d in defaults.items()]


def _rule_values(cfg: SweepConfig, point: dict) -> dict:
    """The rule's parameter values at one grid point (``point``: the swept values there), or with
    array-valued entries for a chunk of points. ``noise_norm`` (default ``eps``) becomes
    ``noise_std = noise_norm / sqrt(N)``."""
    from ..model.rule import rule_param_specs

    specs = rule_param_specs(sweep_rule(cfg))
    get = lambda k, default: point[k] if k in point else cfg.base.get(k, default)
    out = {}
    for k, spec in specs.items():
        if k == "noise_std":
            norm = get("noise_norm", None)
            norm = get("eps", ModelParams().eps) if norm is None else norm
            out[k] = np.asarray(norm) / np.sqrt(cfg.N)
        else:
            out[k] = get(k, spec.default)
    return out


def flat_grid(grid: dict) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """``(flat, shape)`` of any student's grid: ``{axis: values of shape (n_points,)}`` point-major (last axis
    fastest) and the grid shape."""
    mesh = np.meshgrid(*(np.asarray(v, float) for v in grid.values()), indexing="ij")
    return {k: m.ravel() for k, m in zip(grid, mesh, strict=True)}, tuple(len(v) for v in grid.values())


def grid_points(cfg: SweepConfig) -> tuple[ModelParams, np.ndarray, tuple[int, ...]]:
    """Flattened grid: ``(params, eps_test)`` with leaves of shape ``(n_points,)`` (float64 NumPy),
    point-major with the last grid axis varying fastest, and the grid shape."""
    flat, shape = flat_grid(cfg.grid)
    n = int(np.prod(shape))
    defaults = ModelParams()._asdict()

    def col(k, default):
        if k in flat:
            return flat[k]
        given = cfg.base.get(k, default)
        if isinstance(given, Schedule):  # each point's knot values: the base's, with the knot axes swept
            values = np.tile(np.asarray(given.values, float), (n, 1))
            for axis, column in flat.items():
                name, _, i = axis.partition("@")
                if name == k and i:
                    values[:, int(i)] = column
            return Schedule(given.knots, values)
        return np.full(n, float(given))

    params = ModelParams(*(col(k, defaults[k]) for k in ModelParams._fields))
    if "eps_test" in flat or "eps_test" in cfg.base:
        eps_test = col("eps_test", np.nan)
    else:  # the training radius at the end of the run
        eps = params.eps
        eps_test = np.asarray(eps(cfg.alpha_max)) if isinstance(eps, Schedule) else np.array(eps)
    return params, eps_test, shape


def rule_columns(cfg: SweepConfig, params: ModelParams) -> dict:
    """The rule's parameters over the flattened grid: arrays of shape ``(n_points,)`` for the scalar
    ones, tuples for the vector ones (shared by all points)."""
    n = int(np.prod(flat_grid(cfg.grid)[1]))
    eps = params.eps
    if isinstance(eps, Schedule):
        if "noise_std" in _rule_values(cfg, {}):
            raise ValueError("attack='noise' with a schedule of eps in a sweep: give noise_norm in [base]")
        eps = np.zeros(n)
    flat = {**flat_grid(cfg.grid)[0], "eps": np.asarray(eps)}
    out = {}
    for k, v in _rule_values(cfg, flat).items():
        out[k] = v if isinstance(v, tuple) else np.broadcast_to(np.asarray(v, float), (n,)).copy()
    return out


def _take(x: Any, where: Any) -> Any:
    """One grid point (``where`` an index: a float, or a :class:`~jaxadv.schedule.Schedule` of its knot values) or
    a slice of points of a flattened grid column."""
    if isinstance(x, Schedule):
        return Schedule(x.knots, np.asarray(x.values)[where])
    return float(np.asarray(x)[where]) if isinstance(where, (int, np.integer)) else np.asarray(x)[where]


def _on_grid(x: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A flattened grid column on the grid (a schedule: its knot values, ``shape + (knots,)``)."""
    if isinstance(x, Schedule):
        return np.asarray(x.values).reshape(shape + np.shape(x.values)[-1:])
    return np.asarray(x).reshape(shape)


def _slice_rule(rp: dict, lo: int, hi: int) -> dict:
    return {k: v if isinstance(v, tuple) else v[lo:hi] for k, v in rp.items()}


# --- computation ------------------------------------------------------------------------------


def chunk_size(cfg: SweepConfig, n_points: int, memory_bytes: float = 2**28) -> int:
    """Grid points per chunk, on any device count: one with the Monte Carlo (whose checkpoint then holds all
    unfinished work), else ``cfg.chunk``, else as many as fit ``memory_bytes`` for the saved trajectories and
    RK4 stages (about ``(n_save + 1) * 2 * 8 * 16`` bytes a point), capped at 4096 and at the grid size."""
    if cfg.mc:
        return 1
    per_point = len(save_times(cfg)) * 2 * 8 * 16 + 4096
    return min(cfg.chunk or int(max(1, min(4096, memory_bytes // per_point))), n_points)


def _mc_point(
    cfg: SweepConfig, params: ModelParams, eps_test: float, index: int, rp: dict, checkpoint, progress, label
):
    """Monte Carlo of grid point ``index`` (:func:`jaxadv.app.checkpoint.simulate_resumable`, ``checkpoint``
    its file or ``None``): each quantity's mean and standard error over the finite replicas, ``n_finite``."""
    from ..analysis.compare import mc_summary
    from .checkpoint import simulate_resumable

    key = jax.random.fold_in(jax.random.key(cfg.seed), index)
    save: dict[str, Any] = (
        {} if cfg.save == "linear" else {"save": cfg.save, "points_per_decade": cfg.points_per_decade}
    )
    mc = simulate_resumable(
        key,
        params,
        checkpoint=checkpoint,
        progress=progress,
        label=label,
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        n_save=cfg.n_save,
        replicas=cfg.replicas,
        rule=sweep_rule(cfg),
        rule_params=rp,
        dtype=jnp.float64 if cfg.x64 else jnp.float32,
        R0=cfg.R0,
        b0=cfg.b0,
        sampler=cfg.sampler,
        **save,
    )
    s = mc_summary(mc, params, eps_test)
    return {k: np.asarray(s[k], np.float64) for k in MC_COLUMNS}


def _ode_chunk(cfg: SweepConfig, params: ModelParams, eps_test, width: int, alpha_end: float, rp: dict):
    """ODE of grid points with parameters ``params`` (leaves of shape ``(n,)``) as a dict of arrays of shape
    ``(n, P)``; it runs on ``width`` points (padded by repeating the last: one shape for every chunk, so one
    compilation serves all)."""
    n = len(eps_test)
    p = pad_batch(ModelParams(*(cast(x, jnp.float64) for x in params)), width)
    rp_pad = {k: v if isinstance(v, tuple) else pad_batch(jnp.asarray(v, jnp.float64), width) for k, v in rp.items()}
    sol = solve_ode(
        p,
        alpha_end,
        cfg.n_save,
        dt=cfg.dt,
        R0=0.0 if cfg.R0 is None else cfg.R0,
        b0=cfg.b0,
        rule=sweep_rule(cfg),
        rule_params=rp_pad,
        save_alpha=None if cfg.save == "linear" else save_times(cfg),
    )
    R, b = to_host(sol.R)[:n], to_host(sol.b)[:n]
    data = {k: np.asarray(getattr(params, k))[:, None] for k in ("prior", "rho", "v1", "v2")}
    columns = ModelParams(**data)  # the errors read the data's parameters only
    return {
        "R": R,
        "b": b,
        "test_error": np.asarray(test_error(R, b, columns)),
        "robust_error": np.asarray(robust_error(R, b, eps_test[:, None], columns)),
    }


def save_times(cfg: Any) -> np.ndarray:
    """Save times of any student's sweep: the Monte Carlo's (``steps = round(alpha_max N / n_save)``) with
    ``mc``, log-spaced with ``save = "log"``, else equal intervals."""
    if getattr(cfg, "save", "linear") != "linear":
        from ..mc.schedule import save_steps

        return save_steps(cfg.N, cfg.alpha_max, cfg.n_save, cfg.save, cfg.points_per_decade) / cfg.N
    if cfg.mc:
        from ..mc.driver import save_schedule

        return np.asarray(save_schedule(cfg.N, cfg.alpha_max, cfg.n_save)[1], np.float64)
    return np.arange(cfg.n_save + 1) * (cfg.alpha_max / cfg.n_save)


def _chunk_path(out_dir, c):
    return os.path.join(out_dir, "chunks", f"chunk_{c:05d}.npz")


def _load_chunk(path: str) -> dict[str, np.ndarray]:
    """The arrays of one chunk file, read whole (a damaged file raises while it is read: a failed CRC-32,
    a truncated archive)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _chunks_on_disk(out_dir: str | None, n_chunks: int, log: Callable[[str], Any] | None) -> dict[int, dict]:
    """The finished chunks of a sweep in ``out_dir``, read: ``{chunk: arrays}``. A chunk file that cannot be
    read back (:func:`jaxadv.app.io.npz_problem` says why) is left out, so it is computed again, with a
    warning. Each file is read once; both sweep engines resume through this."""
    done = {}
    for c in range(n_chunks if out_dir is not None else 0):
        path = _chunk_path(out_dir, c)
        if not os.path.exists(path):
            continue
        try:
            done[c] = _load_chunk(path)
        except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
            message = f"chunk file {path!r} cannot be read ({npz_problem(path) or e}); computing the chunk again"
            if log:
                log(f"warning: {message}")
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=3)
    return done


def _recorded_chunk(cfg: SweepConfig | CommitteeSweepConfig, out_dir: str) -> int | None:
    """The chunk size that ``out_dir/config.json`` records for this configuration (``None``: a new folder, or a
    file without one). Refuses another configuration's folder, and chunk files without a ``config.json``."""
    path = os.path.join(out_dir, "config.json")
    if not os.path.exists(path):
        if glob.glob(os.path.join(out_dir, "chunks", "*.npz")):
            raise ValueError(
                f"--out {out_dir!r} holds chunk files but no config.json; remove them or use a new directory"
            )
        return None
    with open(path) as f:
        info = json.load(f)
    if info.get("config_hash") != cfg.digest():
        raise ValueError(
            f"--out {out_dir!r} holds a sweep with another configuration "
            f"(config_hash {str(info.get('config_hash'))[:12]} != {cfg.digest()[:12]}); "
            "use a new directory or remove the old one"
        )
    chunk = info.get("chunk")
    return chunk if isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1 else None


def run_chunks(
    cfg: SweepConfig | CommitteeSweepConfig,
    out_dir: str | None,
    *,
    n_points: int,
    chunk: int,
    grid_shape: tuple[int, ...],
    ode: Callable[[int, int, int], dict[str, np.ndarray]] | None,
    mc: Callable[[int, str | None, bool, str], dict[str, Any]] | None,
    finish: Callable[[dict[str, np.ndarray]], tuple[Any, dict, dict]],
    alpha: np.ndarray,
    eps_test: np.ndarray,
    info: dict[str, Any],
    label: str,
    progress: bool = False,
    log: Callable[[str], Any] | None = None,
) -> Any:
    """The sweep engine of every student: the grid cut into chunks, each computed once, written when done and
    read back on a rerun; the student gives the computation and the record of the result. Contract:

    * Points ``0 .. n_points - 1`` (the grid, flattened point-major) form chunks of ``chunk`` points (the last
      may be shorter), whatever the device count; a folder of this configuration keeps the chunk size its
      ``config.json`` records (also one of an earlier version, which rounded it to a multiple of the device
      count), so a sweep resumes on any device count to the same table.
    * A missing chunk ``[lo, hi)`` is ``ode(lo, hi, width)`` (arrays of leading length ``hi - lo``; ``width``:
      the chunk size rounded up to a multiple of the device count, the batch to pad to, one shape for all
      chunks) and the stacked ``mc(i, checkpoint, progress, label)`` of its points. ``checkpoint``
      (``DIR/mc_checkpoint.npz``, ``None`` without a folder) goes to the student's resumable Monte Carlo
      (:mod:`jaxadv.app.checkpoint`): an interrupt inside a point keeps its finished save intervals and the
      rerun resumes it bit for bit. With the Monte Carlo each point shows its bar (``label``), else one bar
      over chunks.
    * With ``out_dir``: ``config.json`` (configuration, digest, layout, versions, device, the student's
      ``info``) first, refusing a folder of another configuration (``ValueError``); each chunk written
      atomically to ``DIR/chunks/chunk_XXXXX.npz`` when done; a chunk file that cannot be read is computed
      again with a warning. With several processes process 0 decides the chunk size and the finished chunks
      (the files must be visible to all).
    * ``finish(columns)`` (each ``{name: array of leading length n_points}``) returns ``(result, table,
      arrays)``: the student's record (returned), the rows of ``sweep.csv`` and the student's own arrays of
      ``sweep.npz``, beside those of every sweep: the save times ``alpha``, ``eps_test``, each swept axis
      (``axis_NAME``) and every column on the grid.
      Grid points with NaN or infinite values are reported. An interrupt propagates; written chunks stay.
    """
    from .. import __version__

    if out_dir is not None:
        os.makedirs(os.path.join(out_dir, "chunks"), exist_ok=True)
        chunk = _recorded_chunk(cfg, out_dir) or chunk
    if is_multiprocess():
        chunk = int(broadcast(np.int64(chunk)))
    n_chunks = -(-n_points // chunk)
    width = padded_size(chunk)
    if out_dir is not None:
        write_json(
            os.path.join(out_dir, "config.json"),
            {
                **info,
                "config": cfg.as_dict(),
                "config_hash": cfg.digest(),
                "grid_shape": list(grid_shape),
                "n_points": n_points,
                "chunk": chunk,
                "n_chunks": n_chunks,
                "jaxadv_version": __version__,
                "jax_version": jax.__version__,
                "python": platform.python_version(),
                "device": str(jax.devices()[0]),
                "device_count": jax.device_count(),
            },
        )
    on_disk = _chunks_on_disk(out_dir, n_chunks, log)  # {chunk: arrays}, each file read once
    done = _agree_done(sorted(on_disk), n_chunks, out_dir)
    if log and done:
        log(f"resuming: {len(done)} of {n_chunks} chunks already on disk")
    checkpoint = None if out_dir is None else os.path.join(out_dir, "mc_checkpoint.npz")
    bar = Progress(n_chunks, label, enabled=progress and is_primary() and mc is None, initial=len(done))
    parts = []
    t0 = time.perf_counter()
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk, min(n_points, (c + 1) * chunk)
            if c in done:  # read above (or, on a process other than 0, read now)
                part = on_disk[c] if c in on_disk else _load_chunk(_chunk_path(out_dir, c))
            else:
                part = {} if ode is None else dict(ode(lo, hi, width))
                if mc is not None:
                    rows = [mc(i, checkpoint, progress, f"point {i + 1}/{n_points} monte carlo") for i in range(lo, hi)]
                    part.update({k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]})
                if out_dir is not None:
                    write_npz(_chunk_path(out_dir, c), **part)
            parts.append(part)
            bar.update(c + 1)
    finally:
        bar.close()
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    finite = np.all([np.isfinite(v.reshape(n_points, -1)).all(1) for k, v in cols.items() if "sem" not in k], 0)
    if not finite.all():  # a parameter too large for the model (squares overflow), or every replica diverged
        message = f"{n_points - finite.sum()} of {n_points} grid points have NaN or infinite values (the first: "
        message += f"point {np.argmin(finite)}): a parameter too large for the model, or every replica diverged"
        log(f"warning: {message}") if log else warnings.warn(message, RuntimeWarning, stacklevel=3)
    result, rows_, own = finish(cols)
    if out_dir is not None:
        arrays = {"alpha": alpha, "eps_test": eps_test.reshape(grid_shape)}
        arrays.update({f"axis_{k}": np.asarray(v) for k, v in cfg.grid.items()})
        arrays.update({k: v.reshape(grid_shape + v.shape[1:]) for k, v in cols.items()})
        write_csv(os.path.join(out_dir, "sweep.csv"), rows_)
        write_npz(os.path.join(out_dir, "sweep.npz"), **arrays, **own)
        if log:
            log(
                f"{label}: {n_points} points in {n_chunks} chunks of {chunk} ({time.perf_counter() - t0:.1f}s) "
                f"-> {out_dir}"
            )
    return result


def _agree_done(done, n_chunks, out_dir):
    """Process 0's list of finished chunks on every process (each chunk's computation ends in a
    collective, so all must compute the same ones); the files must be visible to every process."""
    if not is_multiprocess():
        return done
    mask = broadcast(np.isin(np.arange(n_chunks), done))
    done = [int(c) for c in np.flatnonzero(mask)]
    missing = [c for c in done if not os.path.exists(_chunk_path(out_dir, c))]
    if missing:
        raise ValueError(
            f"process {jax.process_index()} does not see chunk files {missing[:3]} that process 0 "
            f"sees in --out {out_dir!r}: resuming a multi-process sweep needs a shared directory"
        )
    return done


def sweep(
    cfg: SweepConfig, out_dir: str | None = None, *, progress: bool = False, log: Callable[[str], Any] | None = None
) -> SweepResult:
    r"""Run a sweep: the ODE (and optionally the Monte Carlo) at every grid point, on :func:`run_chunks`.

    Args:
        cfg: the sweep (:func:`load_sweep_config` or :func:`make_sweep_config`).
        out_dir: output directory; ``None`` keeps everything in memory (no resume).
            With a directory the sweep resumes from the chunk files found there (and a point's Monte
            Carlo from ``mc_checkpoint.npz``).
        progress: progress bar over chunks (stderr, with time left), or with the Monte Carlo one over the
            save intervals of each point.
        log: ``print``-like function for one-line messages, or ``None``.

    Returns:
        :class:`SweepResult`.

    Raises:
        ValueError: ``out_dir`` holds a sweep with another configuration.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from jaxadv import make_sweep_config, sweep
        >>> cfg = make_sweep_config({"eps": [0.0, 1.0]}, alpha_max=10.0, n_save=2)
        >>> sweep(cfg).R.shape
        (2, 3)
    """
    validate_sweep_config(cfg)
    if cfg.ode and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError("the sweep ODE runs in float64: call jax.config.update('jax_enable_x64', True) first")
    params, eps_test, shape = grid_points(cfg)
    rp_all = rule_columns(cfg, params)
    n = len(eps_test)
    alpha = save_times(cfg)

    def ode(lo, hi, width):
        p = ModelParams(*(_take(x, slice(lo, hi)) for x in params))
        return _ode_chunk(cfg, p, eps_test[lo:hi], width, float(alpha[-1]), _slice_rule(rp_all, lo, hi))

    def mc(i, checkpoint, progress, label):
        p = ModelParams(*(_take(x, i) for x in params))
        rp = {k: v if isinstance(v, tuple) else float(v[i]) for k, v in rp_all.items()}
        return _mc_point(cfg, p, float(eps_test[i]), i, rp, checkpoint, progress, label)

    def finish(cols):
        result = _result(cfg, params, eps_test, shape, alpha, cols)
        own = {k: _on_grid(getattr(params, k), shape) for k in ModelParams._fields}
        own.update({f"{k}_knots": np.asarray(x.knots) for k, x in params._asdict().items() if isinstance(x, Schedule)})
        return result, table(result), own

    ode_columns = MC_QUANTITIES if cfg.ode else ()
    return run_chunks(
        cfg,
        out_dir,
        n_points=n,
        chunk=chunk_size(cfg, n),
        grid_shape=shape,
        ode=ode if cfg.ode else None,
        mc=mc if cfg.mc else None,
        finish=finish,
        alpha=alpha,
        eps_test=eps_test,
        info={"columns": ["point", *cfg.grid, "alpha", *ode_columns, *(MC_COLUMNS if cfg.mc else ())]},
        label="sweep",
        progress=progress,
        log=log,
    )


def _result(cfg, params, eps_test, shape, alpha, cols) -> SweepResult:
    g = lambda k: cols[k].reshape(shape + cols[k].shape[1:]) if k in cols else None
    mc = {k: g(k) for k in cols if k not in MC_QUANTITIES} if cfg.mc else None
    grid: list[Any] = [x if isinstance(x, Schedule) else np.asarray(x).reshape(shape) for x in params]
    params = ModelParams(*grid)
    axes = {k: np.asarray(v) for k, v in cfg.grid.items()}
    R, b, test, robust = (g(k) for k in MC_QUANTITIES)
    return SweepResult(axes, alpha, params, np.asarray(eps_test).reshape(shape), R, b, test, robust, mc)


def table(result: SweepResult) -> dict[str, np.ndarray]:
    """The tidy table of a sweep: ``{column: array}`` with one row per grid point and save point."""
    shape = result.eps_test.shape
    n, P = int(np.prod(shape)), len(result.alpha)
    cols = {"point": np.repeat(np.arange(n), P)}
    mesh = np.meshgrid(*result.axes.values(), indexing="ij")
    for k, m in zip(result.axes, mesh, strict=True):
        cols[k] = np.repeat(m.ravel(), P)
    cols["alpha"] = np.tile(result.alpha, n)
    for k in MC_QUANTITIES:
        if getattr(result, k) is not None:
            cols[k] = getattr(result, k).reshape(n * P)
    if result.mc is not None:
        for k in MC_COLUMNS:
            cols[k] = result.mc[k].reshape(n * P)
    return cols


def read_sweep(out_dir: str) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(info, arrays, axes)`` of any student's finished sweep folder: ``config.json``, the arrays of
    ``sweep.npz`` and the swept axes; ``ValueError`` if the folder holds no ``config.json``."""
    path = os.path.join(out_dir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"out_dir={out_dir!r} holds no config.json")
    with open(path) as f:
        info = json.load(f)
    with np.load(os.path.join(out_dir, "sweep.npz")) as z:
        d = {k: z[k] for k in z.files}
    return info, d, {k: d[f"axis_{k}"] for k in info["config"]["grid"]}


def load_sweep(out_dir: str) -> SweepResult:
    """Read a finished sweep directory back into a :class:`SweepResult`."""
    info, d, axes = read_sweep(out_dir)
    mc = {k: d[k] for k in MC_COLUMNS} if info["config"]["mc"] else None
    params = ModelParams(*(d[k] for k in ModelParams._fields))
    R, b, test, robust = (d.get(k) for k in MC_QUANTITIES)
    return SweepResult(axes, d["alpha"], params, d["eps_test"], R, b, test, robust, mc)


# --- command line -----------------------------------------------------------------------------


def plot_axes(result: SweepView) -> tuple[tuple[str, str] | None, str]:
    """Which swept axes the command's figures use: ``(x, y)`` of the heat maps (``None`` with one
    axis) and the trade-off axis (the eps-like axis when there is one)."""
    names = list(result.axes)
    epsish = [n for n in names if n in ("eps", "eps_max", "eps_min", "noise_std")]
    trade = epsish[0] if epsish else names[0]
    if len(names) < 2:
        return None, trade
    x = trade
    y = next(n for n in names if n != x)
    return (x, y), trade


def write_sweep_figures(result: SweepResult, out_dir: str, name: str = "") -> list[str]:
    """``heatmaps.png`` (final test error, robust error and b over two swept axes),
    ``tradeoff.png`` (robust against clean error along the eps-like axis) and, with the Monte Carlo,
    ``deviations.png`` (:func:`~jaxadv.app.sweep_plots.plot_sweep_deviations`) in ``out_dir``;
    returns the paths. Needs the ODE columns (``ode = true``)."""
    from .sweep_plots import plot_sweep_heatmaps, plot_tradeoff

    if result.test_error is None:
        return []
    xy, trade = plot_axes(result)
    paths = []
    if xy is not None:
        paths += plot_sweep_heatmaps(result, *xy, os.path.join(out_dir, "heatmaps"), formats=("png",), title=name)
    paths += plot_tradeoff(result, os.path.join(out_dir, "tradeoff"), axis=trade, formats=("png",))
    if result.mc is not None:
        from .sweep_plots import plot_sweep_deviations

        names = {"R": "R (overlap)", "b": "b (bias)", "test_error": "clean test error", "robust_error": "robust error"}
        series = [
            (w, result.mc[f"{q}_mean"][..., -1], result.mc[f"{q}_sem"][..., -1], getattr(result, q)[..., -1])
            for q, w in names.items()
        ]
        paths += plot_sweep_deviations(
            result.axes,
            series,
            os.path.join(out_dir, "deviations"),
            alpha=float(result.alpha[-1]),
            formats=("png",),
            title=name,
            note="the sweep has no O(1/N) verdict: deviations from the bare ODE",
        )
    return paths


def sweep_command(args: argparse.Namespace) -> int:
    """Body of ``jaxadv sweep``: load, run (resuming), write ``sweep.csv``/``sweep.npz``/``config.json``
    and the figures ``heatmaps.png``/``tradeoff.png`` (a committee sweep is
    :func:`jaxadv.app.committee_sweep.committee_sweep_command`; the CLI picks)."""
    cfg = load_sweep_config(args.config)
    fixed_eps_test = "eps_test" in cfg.grid or "eps_test" in cfg.base
    return run_sweep_command(args, cfg, f"jaxadv sweep {cfg.name}", fixed_eps_test, sweep, write_sweep_figures)


def run_sweep_command(
    args: argparse.Namespace,
    cfg: Any,
    header: str,
    fixed_eps_test: bool,
    run: Callable[..., Any],
    figures: Callable[..., list[str]],
) -> int:
    """The command of both sweep engines: claim ``--out`` (:func:`jaxadv.app.outputs.claim_output`, keyed
    by the configuration's digest), say when the robust error follows a swept eps, ``run(cfg, out, ...)``
    (resuming), then ``figures(result, out, name)`` unless ``--no-plots``."""
    from .outputs import claim_output

    out = args.out or os.path.join("results", cfg.name)
    with claim_output(out, {"config_hash": cfg.digest()}, command="sweep"):
        print(f"{header} -> {out}", flush=True)
        if "eps" in cfg.grid and not fixed_eps_test:
            print(
                "note: eps is swept and eps_test is not set, so robust_error is at eps_test = eps of each row "
                "(not comparable across eps); set eps_test in [base] for one fixed radius",
                flush=True,
            )
        res = run(cfg, out, progress=not args.quiet, log=lambda m: print(m, flush=True))
        if not getattr(args, "no_plots", False):
            for p in figures(res, out, cfg.name):
                print(f"figure: {p}", flush=True)
    print(f"wrote {out}", flush=True)
    return 0
