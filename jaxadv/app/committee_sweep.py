r"""``jaxadv sweep`` for two-layer committees: the committee ODE (and optionally its Monte Carlo) over a
grid of the attack radius, the data parameters and the learning rates.

A sweep TOML is a committee sweep when its ``[base]`` table names a committee preset
(``preset = "xor"`` or ``"committee"``) or says ``model = "committee"``. ``[base]`` then takes the
keys of ``jaxadv committee`` (:mod:`jaxadv.app.committee`: ``data``, ``K``, ``attack``, ``loss``,
``R0``, ``Q0``, ``b0``, ``v``, ..., and a ``[base.mixture]`` table for a general mixture) plus
``eps_test``; the run settings stay at the top level (a preset's ``N``, ``alpha_max``,
``replicas``, ``dt``, ``n_save`` are their defaults there)::

    alpha_max = 10           # final time (default: the preset's)
    n_save = 10              # save intervals of the stored trajectories
    dt = 0.1                 # largest RK4 step
    chunk = 0                # grid points per ODE chunk (0: 8; with mc = true one point a chunk)
    quadrature = [12, 8, 8.0]  # ODE rule [panels, order, width] (default: jaxadv committee's, by K)
    mc = true                # Monte Carlo per grid point (N, replicas, seed, x64 as usual)
    mc_robust = false        # also each replica's robust error (costly for K >= 3)
    N = 200
    replicas = 16

    [base]
    preset = "xor"           # or model = "committee" with data = "two_cluster" | "xor" | "mixture"
    K = 2
    R0 = [[0.4, 0.1], [-0.3, 0.2]]
    Q0 = [[1.0, -0.1], [-0.1, 1.0]]
    b0 = [0.1, -0.1]
    attack = "fgm"
    eps_test = 0.3           # one radius for every robust error (default: each point's eps)

    [grid]                   # a list, or {linspace = [start, stop, num]}
    eps = [0.0, 0.3, 0.6]
    rho = [2.0, 3.0]

Sweepable axes: ``eps``, ``eps_test``, ``eta_w``, ``eta_b``, ``eta_v`` and the data parameters of
the chosen data (``two_cluster``: ``prior``, ``rho``, ``v1``, ``v2``; ``xor``: ``rho``, ``var``;
a general mixture has none). Every swept float is a traced leaf, the mixture included, so a
chunk of grid points is one ``vmap`` of the RK4 ``scan`` (one compilation; the last chunk is
padded). Static choices (``K``, ``attack``, ``loss``, ``normalise``, ...) change shapes or control
flow and are refused as axes.

The ODE starts from the given ``R0``, ``Q0`` (required with ``ode = true``: the symmetric start is
the plateau the ODE never leaves), and the Monte Carlo builds every replica with exactly these
overlaps; grid point ``i`` uses ``fold_in(key(seed), i)``. With the Monte Carlo the ODE runs to the
Monte Carlo's last save time. The chunks run on the sweep engine of every student
(:func:`jaxadv.app.sweep.run_chunks`): each is written atomically to ``DIR/chunks/`` when done; a rerun
of the same command resumes, on any device count and with several processes (process 0 decides which
chunks are done); another configuration in the same folder is refused. The Monte Carlo of a
point runs on the project's driver (:func:`jaxadv.app.checkpoint.simulate_committee_resumable`: replicas
split over all devices, a progress bar, ``DIR/mc_checkpoint.npz``): Ctrl-C or SIGTERM inside a point saves
its completed save intervals and the rerun resumes that point bit for bit.

Outputs: ``sweep.csv``, one row per grid point: ``point``, the swept values, ``alpha`` (final),
``eps_test``, ``clean_error`` and ``robust_error`` (ODE, final weights), the final order parameters
``Q_k_l`` (k <= l), ``R_k_j``, ``b_k``, ``v_k``; with the Monte Carlo each order parameter's
``_mean`` and ``_sem`` over replicas, ``clean_error_mean``/``_sem`` (each replica's weights),
``robust_error_mean``/``_sem`` (with ``mc_robust``), ``n_finite`` and ``max_dev_sem`` (largest
\|MC - ODE\| over the order parameters in standard errors). ``sweep.npz``: the whole trajectories on
the grid (``Q`` of shape ``grid_shape + (P, K, K)``, ...). ``config.json``; ``heatmaps.png`` (final
clean and robust errors over two swept axes) and ``tradeoff.png`` (robust against clean error along
the eps-like axis).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..analysis.stats import mean_sem
from . import sweep as engine
from .io import read_toml

if TYPE_CHECKING:
    import argparse

    from ..committee import CommitteeParams, CommitteeSpec, GaussRule, Mixture

__all__ = [
    "CommitteeSweepConfig",
    "CommitteeSweepResult",
    "COMMITTEE_SWEEP_AXES",
    "DATA_AXES",
    "is_committee_sweep",
    "make_committee_sweep_config",
    "load_committee_sweep_config",
    "committee_sweep",
    "load_committee_sweep",
    "committee_sweep_command",
]

RULE_AXES = ("eps", "eta_w", "eta_b", "eta_v")
DATA_AXES = {"two_cluster": ("prior", "rho", "v1", "v2"), "xor": ("rho", "var"), "mixture": ()}
"""The swept data parameters of each kind of data."""
COMMITTEE_SWEEP_AXES = RULE_AXES + ("eps_test", "prior", "rho", "v1", "v2", "var")
_RUN_KEYS = ("alpha_max", "n_save", "dt", "chunk", "ode", "mc", "mc_robust", "N", "replicas", "seed", "x64", "name")
_DEFAULT_CHUNK = 8


def is_committee_sweep(data: dict) -> bool:
    """Whether a parsed sweep TOML is a committee sweep: ``[base]`` has ``model = "committee"`` or a
    preset that is not the unit's (``scenario1``, ``scenario2``: a unit sweep). ``model`` other than
    ``"committee"``/``"single"`` raises ``ValueError``."""
    from .config import PRESETS as UNIT_PRESETS

    base = data.get("base", {})
    if not isinstance(base, dict):
        return False
    model = base.get("model", None)
    if model is not None and model not in ("committee", "single"):
        raise ValueError(f"base.model={model!r} must be 'committee' (two-layer) or 'single' (one erf unit)")
    return model == "committee" or (model is None and "preset" in base and base["preset"] not in UNIT_PRESETS)


@dataclass(frozen=True)
class CommitteeSweepConfig:
    """A resolved committee sweep.

    Attributes:
        model: the resolved ``jaxadv committee`` configuration of the base point (flat keys, see
            :func:`jaxadv.app.config.load_any`; ``mixture`` a dict for a general mixture).
        grid: swept axes ``{name: tuple of floats}`` in grid order (last varies fastest).
        eps_test: robust-error radius of every point, or ``None`` (each point's ``eps``).
        alpha_max, n_save, dt: ODE time, save intervals and largest RK4 step.
        chunk: grid points per ODE chunk (0: 8); with the Monte Carlo one point a chunk; the same on any
            device count (padded to a multiple of it inside the computation, :func:`jaxadv.app.sweep.run_chunks`).
        ode, mc, mc_robust: what to compute (``mc_robust``: each replica's robust error too).
        N, replicas, seed, x64: Monte Carlo settings.
        quadrature: ``(panels, order, width)`` of the ODE's Gaussian averages
            (:class:`~jaxadv.committee.GaussRule`); ``None``: the rule chosen by ``K``
            (:func:`jaxadv.committee.quadrature.default_rule`, as ``jaxadv committee``).
        name: label (the default output folder ``results/<name>``).
    """

    model: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    eps_test: float | None = None
    alpha_max: float = 20.0
    n_save: int = 20
    dt: float = 0.05
    chunk: int = 0
    ode: bool = True
    mc: bool = False
    mc_robust: bool = False
    N: int = 500
    replicas: int = 32
    seed: int = 0
    x64: bool = False
    quadrature: tuple | None = None
    name: str = "committee_sweep"

    as_dict = engine.SweepConfig.as_dict

    def digest(self) -> str:
        """SHA-256 of the configuration (name excluded): equal digests give equal tables."""
        d = self.as_dict()
        d.pop("name")
        d["model"] = {k: v for k, v in d["model"].items() if k != "name"}
        return hashlib.sha256(json.dumps({"committee": d}, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def spec(self) -> CommitteeSpec:
        """The :class:`~jaxadv.committee.CommitteeSpec` (static)."""
        return self.records()[2]

    def ode_rule(self) -> GaussRule:
        """The ODE's quadrature rule (``quadrature``, else the ``jaxadv committee`` default for ``K``)."""
        from ..committee import GaussRule
        from ..committee.quadrature import default_rule

        return default_rule(self.spec.K) if self.quadrature is None else GaussRule(*self.quadrature)

    def records(self, point: dict[str, Any] | None = None) -> tuple[Mixture, CommitteeParams, CommitteeSpec]:
        """``(Mixture, CommitteeParams, CommitteeSpec)`` at the base point, or with ``point``'s swept values."""
        from ..students.committee import resolve

        return resolve({**self.model, **(point or {})})[1:]


class CommitteeSweepResult(NamedTuple):
    """A committee sweep on the grid. ``G`` is the grid shape, ``P = n_save + 1``.

    Attributes:
        axes: ``{name: values}`` of the swept axes, in grid order.
        alpha: save times, shape ``(P,)``.
        eps: the training radius at each point, shape ``G``.
        eps_test: robust-error radius, shape ``G``.
        Q, R, b, v: ODE trajectories, shapes ``G + (P, K, K)``, ``G + (P, K, D)``, ``G + (P, K)``
            (``None`` without the ODE).
        clean_error, robust_error: ODE errors of the final weights, shape ``G`` (``None`` without the ODE).
        mc: ``{column: array of shape G}`` of the Monte Carlo's final values, or ``None``.
        table: the rows of ``sweep.csv`` (``{column: array of shape (n_points,)}``).
    """

    axes: dict
    alpha: np.ndarray
    eps: np.ndarray
    eps_test: np.ndarray
    Q: np.ndarray | None
    R: np.ndarray | None
    b: np.ndarray | None
    v: np.ndarray | None
    clean_error: np.ndarray | None
    robust_error: np.ndarray | None
    mc: dict | None
    table: dict


# --- configuration ------------------------------------------------------------------------------


def make_committee_sweep_config(grid: dict[str, Any], base: dict[str, Any], **options: Any) -> CommitteeSweepConfig:
    """Build and validate a :class:`CommitteeSweepConfig` from Python values.

    ``base``: ``jaxadv committee`` keys (``preset``, ``model``, ``data``, ``K``, ``R0``, ...), a
    ``mixture`` dict for a general mixture, and ``eps_test``. ``grid``: axes to lists or
    ``{"linspace": [start, stop, num]}``. ``options``: the top-level keys (``alpha_max``, ``mc``, ...).

    Raises:
        ValueError: naming the offending key or axis and its value.

    Example:
        >>> cfg = make_committee_sweep_config({"eps": [0.0, 0.5]}, {"preset": "committee"}, alpha_max=1.0)
        >>> cfg.spec.K, cfg.grid["eps"]
        (2, (0.0, 0.5))
    """
    from .config import COMMITTEE_PRESETS as PRESETS
    from .config import check_name, coerce, defaults_of, keys_of

    keys = keys_of("committee")
    model_keys, run_keys = defaults_of("committee"), {k for k, r in keys.items() if r.section == "run"}

    base = dict(base or {})
    model = base.pop("model", "committee")
    if model != "committee":
        raise ValueError(f"base.model={model!r} must be 'committee' for a committee sweep")
    cfg = dict(model_keys)
    run_defaults: dict[str, Any] = {}
    preset = base.pop("preset", None)
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"base.preset={preset!r} is not a committee preset; one of {sorted(PRESETS)}")
        for k, v in PRESETS[preset].items():
            (run_defaults if k in run_keys else cfg)[k] = v
    mixture = base.pop("mixture", None)
    if mixture is not None:
        if not isinstance(mixture, dict):
            raise ValueError(f"base.mixture={mixture!r} must be a table with centres, variances, priors, labels")
        cfg["data"] = "mixture"
    eps_test = base.pop("eps_test", None)
    for k, v in base.items():
        if k in run_keys:
            raise ValueError(f"base.{k}: {k} is a run setting; give it at the top level of the sweep file")
        if k not in model_keys:
            raise ValueError(
                f"base.{k}: unknown key; committee keys: {', '.join(sorted(set(model_keys) - run_keys))}, "
                "preset, model, mixture, eps_test"
            )
        cfg[k] = coerce(keys[k], v)
    if cfg["data"] not in DATA_AXES:
        raise ValueError(f"base.data={cfg['data']!r} must be one of {sorted(DATA_AXES)}")
    if cfg["data"] == "mixture" and mixture is None:
        raise ValueError("base.data='mixture' needs a [base.mixture] table (centres, variances, priors, labels)")
    cfg["mixture"] = mixture
    for k in run_keys:
        cfg.pop(k, None)
    if eps_test is not None:
        eps_test = engine.check_value_of("base.eps_test", eps_test)
        if eps_test < 0:
            raise ValueError(f"base.eps_test={eps_test!r} must be >= 0")
    axes = {}
    for k, v in grid.items():
        if k not in COMMITTEE_SWEEP_AXES:
            if k in model_keys:
                raise ValueError(
                    f"grid.{k}: {k} is not sweepable (a static choice or run setting: it changes "
                    f"shapes or compilation); sweepable: {', '.join(_axes_of(cfg['data']))}"
                )
            raise ValueError(f"grid.{k}: unknown axis; sweepable for committees: {', '.join(_axes_of(cfg['data']))}")
        if k in DATA_AXES["two_cluster"] + DATA_AXES["xor"] and k not in DATA_AXES[cfg["data"]]:
            raise ValueError(
                f"grid.{k}: not a parameter of data={cfg['data']!r} (its data parameters: "
                f"{', '.join(DATA_AXES[cfg['data']]) or 'none'})"
            )
        if k in base or (k == "eps_test" and eps_test is not None):
            raise ValueError(f"grid.{k}: {k} is also set in [base]; give it in one of them")
        axes[k] = engine.axis_values(k, v)
    if not axes:
        raise ValueError("grid={} is empty: give at least one axis, e.g. eps = [0, 0.3, 0.6]")
    known = {f.name for f in dataclasses.fields(CommitteeSweepConfig)} - {"model", "grid", "eps_test"}
    for k in options:
        if k not in known:
            raise ValueError(
                f"unknown key {k!r}; known top-level keys of a committee sweep: "
                f"{', '.join(sorted(known | {'base', 'grid'}))}"
            )
    opts = {k: v for k, v in run_defaults.items() if k in known}
    opts.update(options)
    for k in ("alpha_max", "dt"):
        if k in opts:
            opts[k] = engine.check_value_of(k, opts[k])
    if opts.get("quadrature") is not None:
        q = opts["quadrature"]
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        if not (isinstance(q, (list, tuple)) and len(q) == 3 and all(num(x) for x in q)) or not (
            int(q[0]) == q[0] >= 1 and int(q[1]) == q[1] >= 1 and q[0] * q[1] <= 1000 and q[2] > 0
        ):
            raise ValueError(
                f"quadrature={q!r} must be [panels, order, width]: integers >= 1 (panels x order <= 1000 nodes "
                "an axis) and a finite width > 0"
            )
        opts["quadrature"] = (int(q[0]), int(q[1]), float(q[2]))
    out = CommitteeSweepConfig(model=cfg, grid=axes, eps_test=eps_test, **opts)
    check_name(out.name)
    return validate_committee_sweep_config(out)


def _axes_of(data: str):
    return RULE_AXES + ("eps_test",) + DATA_AXES[data]


def validate_committee_sweep_config(cfg: CommitteeSweepConfig) -> CommitteeSweepConfig:
    """Check every value (each axis value through the committee records' own validators); raise
    ``ValueError`` naming the parameter and its value."""
    from ..committee.ode import check_overlaps

    engine.check_settings(
        cfg, {"n_save": 1, "chunk": 0, "N": 2, "replicas": 2, "seed": 0}, ("ode", "mc", "mc_robust", "x64")
    )
    mixture, _, spec = cfg.records()
    engine.check_size(cfg, math.prod(len(v) for v in cfg.grid.values()), cfg.n_save, spec.K, by_point=True)
    for k, values in cfg.grid.items():
        for x in values:
            if k == "eps_test":
                if not x >= 0:
                    raise ValueError(f"grid.eps_test: eps_test={x!r} must be >= 0")
                continue
            try:
                cfg.records({k: x})
            except ValueError as e:
                raise ValueError(f"grid.{k}: {e}") from None
    m = cfg.model
    if cfg.ode and (m["R0"] is None or m["Q0"] is None):
        raise ValueError(
            "base.R0 and base.Q0 are needed for the ODE (the symmetric start is the plateau the ODE "
            "never leaves); give both, e.g. R0 = [[0.3], [0.1]] and Q0 = [[1.0, 0.2], [0.2, 1.0]]"
        )
    if (m["R0"] is None) != (m["Q0"] is None):
        raise ValueError(f"base.R0={m['R0']!r}, base.Q0={m['Q0']!r}: give both initial overlaps or neither")
    if m["R0"] is not None:
        check_overlaps(spec.K, mixture.n_directions, m["Q0"], m["R0"], spec.normalise)
    if cfg.mc and mixture.n_directions + spec.K > cfg.N:
        raise ValueError(f"N={cfg.N!r} must be >= D + K = {mixture.n_directions + spec.K}")
    return cfg


def load_committee_sweep_config(path: str) -> CommitteeSweepConfig:
    """Read a committee sweep TOML file (module docstring); ``ValueError`` naming a bad key or value."""
    data = read_toml(path, "sweep file")
    grid = data.pop("grid", None)
    if not isinstance(grid, dict):
        raise ValueError(f"{path!r} has no [grid] table, e.g. [grid] eps = [0, 0.3, 0.6]")
    base = data.pop("base", {})
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return make_committee_sweep_config(grid, base, **data)


# --- the grid -----------------------------------------------------------------------------------


def grid_points(cfg: CommitteeSweepConfig) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """``(flat, shape)``: ``{axis: values of shape (n_points,)}`` point-major (last axis fastest) and the
    grid shape."""
    return engine.flat_grid(cfg.grid)


def _point(flat: dict, i: int) -> dict:
    return {k: float(v[i]) for k, v in flat.items() if k != "eps_test"}


def _eps_test(cfg, flat, n):
    if "eps_test" in flat:
        return flat["eps_test"]
    if cfg.eps_test is not None:
        return np.full(n, cfg.eps_test)
    return flat["eps"] if "eps" in flat else np.full(n, float(cfg.model["eps"]))


def _pick(arrays: dict, name: str):
    """The entry ``name`` (e.g. ``Q_1_2``) of stacked order parameters ``{"Q": (..., K, K), ...}``."""
    kind, *idx = name.split("_")
    return arrays[kind][(Ellipsis, *[int(i) - 1 for i in idx])]


# --- computation --------------------------------------------------------------------------------


@functools.cache
def _grid_solver():
    """The jitted RK4 of a batch of (mixture, params) points: one ``vmap`` of the committee ODE's own solver
    (:func:`jaxadv.committee.ode.solve_fixed_step`, with its Lipschitz projection; built on first use: no
    JAX at import)."""
    import jax

    from ..committee.ode import solve_fixed_step

    def solve(y0, mixtures, params, h, spec, rule, steps_per_save, n_save):
        return jax.vmap(lambda m, p: solve_fixed_step(y0, m, p, h, spec, rule, steps_per_save, n_save))(
            mixtures, params
        )

    return jax.jit(solve, static_argnames=("spec", "rule", "steps_per_save", "n_save"))


def _stack(records):
    import jax.numpy as jnp

    return type(records[0])(
        *(jnp.stack([jnp.asarray(r[i], jnp.float64) for r in records]) for i in range(len(records[0])))
    )


def _initial(cfg, K):
    m = cfg.model
    b0 = np.zeros(K) if m["b0"] is None else np.asarray(m["b0"], float)
    v0 = np.full(K, 1.0 / K) if m["v"] is None else np.asarray(m["v"], float)
    return b0, v0


def _ode_chunk(cfg, flat, lo, hi, size, alpha_end):
    """ODE trajectories of grid points ``lo .. hi - 1`` (padded to ``size`` by repeating the last)."""
    import jax.numpy as jnp

    from ..committee import CommitteeState

    idx = [min(i, hi - 1) for i in range(lo, lo + size)]
    recs = [cfg.records(_point(flat, i)) for i in idx]
    spec = recs[0][2]
    K = spec.K
    b0, v0 = _initial(cfg, K)
    y0 = CommitteeState(*(jnp.asarray(z, jnp.float64) for z in (cfg.model["Q0"], cfg.model["R0"], b0, v0)))
    interval = alpha_end / cfg.n_save
    sub = max(1, math.ceil(interval / cfg.dt - 1e-9))
    h = jnp.asarray(interval / sub, jnp.float64)
    from ..sharding import shard_batch, to_host

    # the chunk axis split over the devices (unchanged on one device); size is a multiple of their count
    mixtures, params = shard_batch((_stack([r[0] for r in recs]), _stack([r[1] for r in recs])))
    _, ys = _grid_solver()(y0, mixtures, params, h, spec, cfg.ode_rule(), sub, cfg.n_save)
    return {k: to_host(getattr(ys, k))[: hi - lo] for k in ("Q", "R", "b", "v")}


def _errors(cfg, flat, eps_test, lo, traj):
    """ODE clean and robust errors of each point's final weights (one compiled function for all points)."""
    import jax.numpy as jnp

    from ..committee import CommitteeState
    from ..committee.measures import clean_error, robust_error

    clean, robust = [], []
    for j in range(traj["Q"].shape[0]):
        mixture = cfg.records(_point(flat, lo + j))[0]
        st = CommitteeState(*(jnp.asarray(traj[k][j, -1]) for k in ("Q", "R", "b", "v")))
        clean.append(float(clean_error(st, mixture)))
        robust.append(float(robust_error(st, mixture, float(eps_test[lo + j]))))
    return np.array(clean), np.array(robust)


def _mc_point(cfg, flat, eps_test, i, K, D, checkpoint=None, progress=False, label="monte carlo"):
    """Monte Carlo of grid point ``i``: final order parameters (mean, sem over finite replicas), each
    replica's clean (and with ``mc_robust`` robust) error, and the replica trajectories' means.
    ``checkpoint``: the resumable run's checkpoint file (``None``: none)."""
    import jax
    import jax.numpy as jnp

    from ..committee import CommitteeState
    from ..committee.measures import clean_error, order_parameter_names, robust_error
    from .checkpoint import simulate_committee_resumable

    mixture, params, spec = cfg.records(_point(flat, i))
    b0, v0 = _initial(cfg, K)
    given = {} if cfg.model["R0"] is None else {"Q0": cfg.model["Q0"], "R0": cfg.model["R0"]}
    mc = simulate_committee_resumable(
        jax.random.fold_in(jax.random.key(cfg.seed), i),
        mixture,
        params,
        spec,
        N=cfg.N,
        alpha_max=cfg.alpha_max,
        n_save=cfg.n_save,
        replicas=cfg.replicas,
        b0=b0,
        v0=v0,
        dtype=jnp.float64 if cfg.x64 else jnp.float32,
        checkpoint=checkpoint,
        progress=progress,
        label=label,
        **given,
    )
    ok = mc.finite[:, -1]
    n_ok = int(ok.sum())
    out: dict[str, Any] = {"n_finite": np.float64(n_ok)}
    per = {k: np.asarray(getattr(mc, k), np.float64)[ok] for k in ("Q", "R", "b", "v")}
    for k in ("Q", "R", "b", "v"):
        out[f"traj_{k}_mean"] = per[k].mean(0) if n_ok else np.full(per[k].shape[1:], np.nan)
    for name in order_parameter_names(K, D):
        x = _pick({k: v[:, -1] for k, v in per.items()}, name)
        out[f"{name}_mean"], out[f"{name}_sem"] = mean_sem(x)
    finals = [CommitteeState(*(jnp.asarray(per[k][r, -1]) for k in ("Q", "R", "b", "v"))) for r in range(n_ok)]
    errs = {"clean_error": [float(clean_error(s, mixture)) for s in finals]}
    if cfg.mc_robust:
        errs["robust_error"] = [float(robust_error(s, mixture, float(eps_test[i]))) for s in finals]
    for k, values in errs.items():
        out[f"{k}_mean"], out[f"{k}_sem"] = mean_sem(values)
    return out


def _deviation(cfg, cols, spec, K, D):
    """Largest deviation of the final order parameters from the bare ODE, in standard errors
    (:func:`jaxadv.analysis.verdict.deviation_z`, as every verdict), the unit diagonal ``Q_k_k`` of normalised
    weights and an untrained ``v`` left out."""
    from ..analysis.verdict import deviation_z
    from ..committee.measures import order_parameter_names

    dtype = np.float64 if cfg.x64 else np.float32
    dev = np.zeros(len(cols["n_finite"]))
    for name in order_parameter_names(K, D):
        kind, *idx = name.split("_")
        if (kind == "Q" and idx[0] == idx[1] and spec.normalise) or (kind == "v" and not spec.train_v):
            continue
        z = deviation_z(cols[f"{name}_mean"], cols[f"{name}_sem"], cols[name], dtype)
        dev = np.fmax(dev, np.where(np.isfinite(z), z, 0.0))
    return dev


def committee_sweep(
    cfg: CommitteeSweepConfig,
    out_dir: str | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], Any] | None = None,
) -> CommitteeSweepResult:
    r"""Run a committee sweep: the ODE (and optionally the Monte Carlo) at every grid point.

    Args:
        cfg: the sweep (:func:`load_committee_sweep_config` or :func:`make_committee_sweep_config`).
        out_dir: output folder (chunks, ``sweep.csv``, ``sweep.npz``, ``config.json``); ``None`` keeps
            everything in memory. With a folder the sweep resumes from the chunk files found there.
        progress: a progress bar (stderr) over chunks, or with the Monte Carlo one over the save intervals of
            each point (labelled ``point i/n monte carlo``).
        log: ``print``-like function for one-line messages, or ``None``.

    Returns:
        :class:`CommitteeSweepResult`.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> cfg = make_committee_sweep_config({"eps": [0.0, 0.5]}, {"preset": "committee"}, alpha_max=0.5,
        ...                                   n_save=1, dt=0.25)
        >>> res = committee_sweep(cfg)
        >>> res.R.shape, sorted(res.table)[:3]
        ((2, 2, 2, 1), ['Q_1_1', 'Q_1_2', 'Q_2_2'])
    """
    import jax

    from ..committee.measures import order_parameter_names

    validate_committee_sweep_config(cfg)
    if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        raise ValueError(
            "the committee sweep ODE runs in float64: call jax.config.update('jax_enable_x64', True) first"
        )
    mixture, _, spec = cfg.records()
    K, D = spec.K, mixture.n_directions
    flat, shape = grid_points(cfg)
    n = int(np.prod(shape))
    eps_test = np.asarray(_eps_test(cfg, flat, n), float)
    eps = flat["eps"] if "eps" in flat else np.full(n, float(cfg.model["eps"]))
    alpha = engine.save_times(cfg)
    names = order_parameter_names(K, D)

    def ode(lo, hi, width):
        traj = _ode_chunk(cfg, flat, lo, hi, width, float(alpha[-1]))
        traj["clean_error"], traj["robust_error"] = _errors(cfg, flat, eps_test, lo, traj)
        return traj

    def mc(i, checkpoint, progress, label):
        return {f"mc_{k}": v for k, v in _mc_point(cfg, flat, eps_test, i, K, D, checkpoint, progress, label).items()}

    def finish(cols):
        result = _result(cfg, flat, shape, alpha, eps, eps_test, cols, names, spec, K, D)
        return result, result.table, {"eps": eps.reshape(shape)}

    given = "exactly the given R0 and Q0" if cfg.model["R0"] is not None else "random unit vectors"
    info = {
        "model": "committee",
        "order_parameters": names,
        "ode_started_from": "the given R0 and Q0" if cfg.model["R0"] is not None else None,
        "mc_started_from": given if cfg.mc else None,
    }
    return engine.run_chunks(
        cfg,
        out_dir,
        n_points=n,
        chunk=1 if cfg.mc else min(cfg.chunk or _DEFAULT_CHUNK, n),
        grid_shape=shape,
        ode=ode if cfg.ode else None,
        mc=mc if cfg.mc else None,
        finish=finish,
        alpha=alpha,
        eps_test=eps_test,
        info=info,
        label="committee sweep",
        progress=progress,
        log=log,
    )


def _result(cfg, flat, shape, alpha, eps, eps_test, cols, names, spec, K, D) -> CommitteeSweepResult:
    n = int(np.prod(shape))
    table = {"point": np.arange(n)}
    table.update({k: v for k, v in flat.items()})
    table["alpha"] = np.full(n, alpha[-1])
    table["eps_test"] = eps_test
    g = lambda k: cols[k].reshape(shape + cols[k].shape[1:]) if k in cols else None
    if cfg.ode:
        table["clean_error"], table["robust_error"] = cols["clean_error"], cols["robust_error"]
        finals = {k: cols[k][:, -1] for k in ("Q", "R", "b", "v")}
        for name in names:
            table[name] = _pick(finals, name)
    mc = None
    if cfg.mc:
        mc_cols = {k[3:]: v for k, v in cols.items() if k.startswith("mc_") and not k.startswith("mc_traj_")}
        for name in names:
            table[f"{name}_mean"], table[f"{name}_sem"] = mc_cols[f"{name}_mean"], mc_cols[f"{name}_sem"]
        for k in ("clean_error", "robust_error"):
            if f"{k}_mean" in mc_cols:
                table[f"{k}_mean"], table[f"{k}_sem"] = mc_cols[f"{k}_mean"], mc_cols[f"{k}_sem"]
        table["n_finite"] = mc_cols["n_finite"]
        if cfg.ode:
            table["max_dev_sem"] = _deviation(cfg, table, spec, K, D)
        mc = {k: v.reshape(shape + v.shape[1:]) for k, v in mc_cols.items()}
    Q, R, b, v, clean, robust = (g(k) for k in ("Q", "R", "b", "v", "clean_error", "robust_error"))
    axes = {k: np.asarray(x) for k, x in cfg.grid.items()}
    eps, eps_test = np.asarray(eps).reshape(shape), eps_test.reshape(shape)
    return CommitteeSweepResult(axes, alpha, eps, eps_test, Q, R, b, v, clean, robust, mc, table)


def load_committee_sweep(out_dir: str) -> CommitteeSweepResult:
    """Read a finished committee sweep folder (``config.json``, ``sweep.npz``, ``sweep.csv``) back into a
    :class:`CommitteeSweepResult`. ``ValueError`` if the folder holds no committee sweep."""
    from .load import read_table

    info, d, axes = engine.read_sweep(out_dir)
    if info.get("model") != "committee":
        raise ValueError(f"out_dir={out_dir!r} holds no committee sweep (config.json has no model='committee')")
    mc = {k[3:]: v for k, v in d.items() if k.startswith("mc_") and not k.startswith("mc_traj_")} or None
    Q, R, b, v, clean, robust = (d.get(k) for k in ("Q", "R", "b", "v", "clean_error", "robust_error"))
    table = read_table(os.path.join(out_dir, "sweep.csv"))
    return CommitteeSweepResult(axes, d["alpha"], d["eps"], d["eps_test"], Q, R, b, v, clean, robust, mc, table)


# --- figures and the command --------------------------------------------------------------------


class _PlotView(NamedTuple):
    """What :mod:`jaxadv.app.sweep_plots` reads, from a committee sweep (final values as one save point)."""

    axes: dict
    alpha: np.ndarray
    params: object
    eps_test: np.ndarray
    test_error: np.ndarray
    robust_error: np.ndarray


class _Eps(NamedTuple):
    eps: np.ndarray


def write_committee_sweep_figures(result: CommitteeSweepResult, out_dir: str, name: str = "") -> list[str]:
    """``heatmaps.png`` (final clean and robust errors over two swept axes, the eps-like axis
    horizontal), ``tradeoff.png`` (robust against clean error along the eps-like axis) and, with the
    Monte Carlo, ``deviations.png`` (the final order parameters against the bare ODE,
    :func:`~jaxadv.app.sweep_plots.plot_sweep_deviations`); returns the paths. Needs the ODE."""
    from .sweep_plots import plot_sweep_heatmaps, plot_tradeoff

    if result.clean_error is None or result.robust_error is None:
        return []
    view = _PlotView(
        result.axes,
        result.alpha[-1:],
        _Eps(result.eps),
        result.eps_test,
        result.clean_error[..., None],
        result.robust_error[..., None],
    )
    xy, trade = engine.plot_axes(view)
    K = None if result.Q is None else result.Q.shape[-1]
    title = (name + ": " if name else "") + f"committee K={K}"
    paths = []
    if xy is not None:
        paths += plot_sweep_heatmaps(
            view,
            *xy,
            os.path.join(out_dir, "heatmaps"),
            formats=("png",),
            title=title,
            quantities=("test_error", "robust_error"),
        )
    paths += plot_tradeoff(
        view,
        os.path.join(out_dir, "tradeoff"),
        axis=trade,
        formats=("png",),
        title=f"{title}: trade-off as {trade} varies (alpha={result.alpha[-1]:g})",
    )
    if result.mc is not None and "max_dev_sem" in result.table:
        from .figures import committee_words as _words
        from .sweep_plots import plot_sweep_deviations

        D = result.R.shape[-1] if result.R is not None and result.R.ndim >= 2 else 1
        # the order parameters the verdict's deviation (max_dev_sem) compares: a frozen column (the unit
        # diagonal of normalised weights, an untrained v) has no spread and is left out, as there
        t = result.table
        names = [c for c in t if f"{c}_mean" in t and f"{c}_sem" in t and c.split("_")[0] in ("Q", "R", "b", "v")]

        def frozen(c):  # the ODE trajectory does not move at any grid point
            kind, *idx = c.split("_")
            traj = getattr(result, kind)
            if traj is None:
                return False
            where: tuple[Any, ...] = (Ellipsis, slice(None), *[int(k) - 1 for k in idx])
            x = np.asarray(traj, float)[where]
            return bool(np.all(np.ptp(x, axis=-1) == 0))

        names = [c for c in names if not frozen(c)]
        kinds = {"Q": "Q, overlap of", "R": "R, overlap of", "b": "b, bias of", "v": "v, weight of"}
        series = [(f"{kinds[c[0]]} {_words(c, D)}", t[f"{c}_mean"], t[f"{c}_sem"], t[c]) for c in names]
        if series:
            paths += plot_sweep_deviations(
                result.axes,
                series,
                os.path.join(out_dir, "deviations"),
                alpha=float(result.alpha[-1]),
                formats=("png",),
                title=title,
                note="no O(1/N) theory for committees: deviations from the bare ODE",
            )
    return paths


def committee_sweep_command(args: argparse.Namespace) -> int:
    """Body of ``jaxadv sweep`` for a committee sweep TOML (module docstring):
    :func:`jaxadv.app.sweep.run_sweep_command` with this engine."""
    cfg = load_committee_sweep_config(args.config)
    fixed_eps_test = "eps_test" in cfg.grid or cfg.eps_test is not None
    header = f"jaxadv sweep (committee, K={cfg.spec.K}) {cfg.name}"
    return engine.run_sweep_command(args, cfg, header, fixed_eps_test, committee_sweep, write_committee_sweep_figures)
