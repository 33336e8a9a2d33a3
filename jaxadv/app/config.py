"""Run configurations: presets, TOML files and ``KEY=VALUE`` overrides, validated eagerly.

A TOML file holds flat keys, optionally starting from a preset::

    preset = "scenario1"   # optional
    prior = 0.6
    alpha_max = 200
    replicas = 256
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from ..defaults import ALPHA_MAX, DT, N_SAVE, REPLICAS
from ..mc.driver import SAMPLERS
from ..model.losses import LOSSES
from ..model.params import ModelParams, check_value, validate_params
from .io import read_toml

if typing.TYPE_CHECKING:
    from ..model.rule import TrainingRule

__all__ = [
    "RunConfig",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "load_config",
    "validate_config",
    "presets_table",
    "check_name",
    "MAX_SEED",
]

_MODEL_DEFAULTS = ModelParams._field_defaults
SAMPLER_NAMES = tuple(SAMPLERS)
PRNG_IMPLS = ("threefry2x32", "philox4x32", "rbg", "unsafe_rbg")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``jaxadv run`` needs. Model keys mirror :class:`jaxadv.ModelParams`.

    Attributes:
        name: label of the run (preset name or TOML file stem).
        N: input dimension of the Monte Carlo.
        prior, rho, v1, v2, eta_w, eta_b, eps: see :class:`jaxadv.ModelParams`.
        eps_test: radius of the robust error in ``ode.csv``/``mc.csv`` (default: ``eps``).
        eps_test_max: largest radius of the robustness curve (default: ``max(2 eps, 2)``).
        alpha_max: final time.
        n_save: number of save intervals (``n_save + 1`` rows in the tables).
        replicas: number of Monte Carlo replicas.
        seed: seed of ``jax.random.key``.
        x64: run the Monte Carlo in float64 (the ODE always uses float64 in the CLI).
        loss: loss name (see :data:`jaxadv.model.losses.LOSSES`).
        dt: largest RK4 step of the ODE.
        R0: initial overlap (``None``: random w for the MC, 0 for the ODE).
        b0: initial bias.
        prng: PRNG implementation of ``jax.random.key``.
        mc: run the Monte Carlo (``--no-mc`` sets it false).
        attack: training perturbation, a name of :data:`jaxadv.model.perturbations.ATTACKS`:
            ``l2`` (default), ``noise``, ``linf`` or ``l1`` (the last two: Monte Carlo only).
        eps_dist: law of the per-example radius, a name of :data:`jaxadv.model.eps_laws.EPS_LAWS`:
            ``fixed`` (= ``eps``), ``uniform``, ``discrete``, ...
        eps_min, eps_max: range of ``eps_dist="uniform"``.
        eps_values, eps_weights: comma-separated support and weights of ``eps_dist="discrete"``,
            e.g. ``eps_values="0.5,1.5"``, ``eps_weights="1,3"``.
        nonrobust_only: update only on examples that are not eps-robust (``gate="nonrobust"``).
        gate: which examples update, a name of :data:`jaxadv.model.gates.GATES` (``none``: all).
        noise_norm: RMS L2 norm of the augmentation noise of ``attack="noise"`` (default ``eps``);
            per-component std ``noise_norm / sqrt(N)``.
        B: cluster axis of the Monte Carlo, ``first`` (coordinate vector) or ``dense`` (ones/sqrt(N)).
        sampler: ``"full"`` (N-dimensional vectors) or ``"reduced"`` (the exact O(1)-per-step
            description of :mod:`jaxadv.mc.reduced`).
        generator: random generator of the full sampler (:mod:`jaxadv.generators`): ``"jax"``
            (``jax.random``'s numbers bit for bit, the default) or ``"fast"`` (both words of every
            threefry block, Box--Muller normals: the same law, other numbers, a faster step; needs
            ``prng="threefry2x32"``; the reduced sampler and ``jaxadv verify``'s reduced ladder ignore it).
        save: ``"linear"`` (``n_save`` equal intervals) or ``"log"`` (``points_per_decade`` save points
            a decade of alpha, from 1/N to ``alpha_max``; ``n_save`` is then unused), for the Monte
            Carlo and the ODE alike (:mod:`jaxadv.mc.schedule`).
        points_per_decade: save points per decade of alpha with ``save="log"``.
        ode_start: ``"given"`` (the ODE starts at ``R0`` (0 when unset) and ``b0``) or ``"mc"`` (at the
            Monte Carlo's measured mean initial ``R`` and ``b``, so both curves share their first point).
        rule_extra: ``((name, value), ...)``: parameters declared by a rule part that have no
            field above (a new record's ``Param``); given as ordinary keys, e.g. ``--set eps_sd=0.3``.
    """

    name: str = "custom"
    N: int = 1000
    prior: float = _MODEL_DEFAULTS["prior"]
    rho: float = _MODEL_DEFAULTS["rho"]
    v1: float = _MODEL_DEFAULTS["v1"]
    v2: float = _MODEL_DEFAULTS["v2"]
    eta_w: float = _MODEL_DEFAULTS["eta_w"]
    eta_b: float = _MODEL_DEFAULTS["eta_b"]
    eps: float = _MODEL_DEFAULTS["eps"]
    eps_test: float | None = None
    eps_test_max: float | None = None
    alpha_max: float = ALPHA_MAX
    n_save: int = N_SAVE
    replicas: int = REPLICAS
    seed: int = 0
    x64: bool = False
    loss: str = "quadratic"
    dt: float = DT
    R0: float | None = None
    b0: float = 0.0
    prng: str = "threefry2x32"
    mc: bool = True
    attack: str = "l2"
    eps_dist: str = "fixed"
    eps_min: float = 0.0
    eps_max: float = 0.0
    eps_values: str = ""
    eps_weights: str = ""
    nonrobust_only: bool = False
    gate: str = "none"
    noise_norm: float | None = None
    B: str = "first"
    sampler: str = "full"
    generator: str = "jax"
    save: str = "linear"
    points_per_decade: int = 10
    ode_start: str = "given"
    rule_extra: tuple = ()

    @property
    def params(self) -> ModelParams:
        return ModelParams(*(getattr(self, f) for f in ModelParams._fields))

    @property
    def rule(self) -> TrainingRule:
        """The :class:`jaxadv.TrainingRule` named by ``loss``, ``attack``, ``eps_dist``, ``gate`` and
        ``nonrobust_only``."""
        from ..model.rule import training_rule

        return training_rule(self.attack, self.eps_dist, self.gate, nonrobust_only=self.nonrobust_only, loss=self.loss)

    @property
    def rule_params(self) -> dict:
        """The rule's parameters ``{name: value}`` from the keys (``noise_norm`` becomes the
        per-component ``noise_std = noise_norm / sqrt(N)``, default ``eps``)."""
        from ..model.perturbations import noise_std_for_norm
        from ..model.rule import rule_param_specs

        given = {
            "eps_min": self.eps_min,
            "eps_max": self.eps_max,
            "eps_values": _floats("eps_values", self.eps_values),
            "eps_weights": _floats("eps_weights", self.eps_weights),
            "noise_std": noise_std_for_norm(self.eps if self.noise_norm is None else self.noise_norm, self.N),
        }
        given.update(dict(self.rule_extra))
        return {k: given[k] for k in rule_param_specs(self.rule) if k in given}

    @property
    def eps_test_value(self) -> float:
        return self.eps if self.eps_test is None else self.eps_test

    @property
    def eps_test_max_value(self) -> float:
        return max(2.0 * self.eps, 2.0 * self.eps_test_value, 2.0) if self.eps_test_max is None else self.eps_test_max


def _floats(key: str, text: str):
    """``"0.5, 1.5"`` -> ``(0.5, 1.5)``; ValueError naming ``key`` otherwise."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a comma-separated list of numbers") from None


# The talk's two scenarios. alpha_max and replicas are sized so that the default
# `jaxadv run scenario1` takes about two minutes on a 2-core CPU; the full-size runs
# are in the README (e.g. --set alpha_max=1000 --set replicas=1000).
PRESETS = {
    "scenario1": RunConfig(
        name="scenario1",
        N=1000,
        prior=0.5,
        rho=2.0,
        v1=1.0,
        v2=1.0,
        eta_w=0.04,
        eta_b=0.2,
        eps=1.0,
        alpha_max=100.0,
        n_save=50,
        replicas=128,
    ),
    "scenario2": RunConfig(
        name="scenario2",
        N=1000,
        prior=0.7,
        rho=2.0,
        v1=1.0,
        v2=1.0,
        eta_w=0.04,
        eta_b=0.2,
        eps=1.0,
        alpha_max=100.0,
        n_save=50,
        replicas=128,
    ),
}

_FIELDS = {f.name: f for f in fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)


def _declared_params() -> dict:
    """``{name: Param}`` of every registered rule part's parameters that are not fields of
    :class:`RunConfig` (a new record's parameters become configuration keys this way)."""
    from ..model.rule import registered_params

    return {k: p for k, p in registered_params().items() if k not in _FIELDS and k != "noise_std"}


def _coerce_param(key: str, value, vector: bool):
    """A declared rule parameter from TOML or ``--set``: a float, or a tuple for a vector one."""
    if isinstance(value, str):
        return _floats(key, value) if vector else _coerce_float(key, value)
    if vector:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}={value!r} is not a list of numbers")
        return tuple(_coerce_float(key, v) for v in value)
    return _coerce_float(key, value)


def _coerce_float(key: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not a number") from None


def _split_keys(items: dict):
    """``(fields, rule_extra)``: configuration keys, and declared rule parameters without a field."""
    declared = _declared_params()
    fields_, extra = {}, {}
    for k, v in items.items():
        if k not in _FIELDS and k in declared:
            extra[k] = _coerce_param(k, v, declared[k].vector)
        else:
            fields_[k] = v
    return fields_, extra


def _coerce(key: str, value):
    """Convert ``value`` (from TOML or a ``--set`` string) to the type of field ``key``."""
    if key not in _FIELDS or key == "rule_extra":
        known = (set(_FIELDS) - {"rule_extra"}) | set(_declared_params())
        raise ValueError(f"unknown key {key!r}; known keys: {', '.join(sorted(known))}")
    hint = _HINTS[key]
    # ``float | None`` (a types.UnionType) or ``Optional[float]`` (a typing.Union): both list NoneType in their args
    optional = type(None) in typing.get_args(hint)
    base = [a for a in typing.get_args(hint) if a is not type(None)][0] if optional else hint
    if isinstance(value, str):
        s = value.strip()
        if optional and s.lower() in ("none", "null", ""):
            return None
        if base is bool:
            if s.lower() in ("true", "1", "yes", "on"):
                return True
            if s.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"{key}={value!r} is not a boolean (true/false)")
        if base is int:
            try:
                f = float(s)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not an integer") from None
            if not math.isfinite(f) or f != int(f):
                raise ValueError(f"{key}={value!r} is not an integer")
            return int(f)
        if base is float:
            try:
                return float(s)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
        return s
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key}=None is not allowed")
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is not a boolean (true/false)")
        return value
    if base is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
            or value != int(value)
        ):
            raise ValueError(f"{key}={value!r} is not an integer")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}={value!r} is not a number")
        if isinstance(value, int) and abs(value) > 2**1023:
            raise ValueError(f"{key}={value!r} is too large")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{key}={value!r} is not a string")
    return value


def read_overrides(overrides) -> dict:
    """``["KEY=VALUE", ...]`` -> ``{key: raw value}`` in order (keys stripped), for every command's
    ``--set``; ``ValueError`` for an item without ``=`` or a key given twice."""
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not of the form KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in out:
            raise ValueError(f"--set {key} is given twice; give each key once")
        out[key] = value
    return out


def read_spec(spec: str, presets: dict, kind: str = ""):
    """A command's first argument: a preset name or a TOML path.

    Returns ``(preset, data, name)``: the preset's values (``None`` for a TOML file without a
    ``preset`` key), the TOML's remaining keys (``None`` for a preset) and the run's default name
    (the preset's, or the file's stem). ``ValueError`` names an unknown preset."""
    if spec in presets:
        return presets[spec], None, spec
    if spec.endswith(".toml") or os.path.exists(spec):
        data = read_toml(spec, "config file")
        base = data.pop("preset", None)
        if base is not None and base not in presets:
            raise ValueError(f"preset={base!r} is not one of {sorted(presets)}")
        return (presets[base] if base is not None else None), data, os.path.splitext(os.path.basename(spec))[0]
    raise ValueError(
        f"{spec!r} is neither a {kind + ' ' if kind else ''}preset ({', '.join(sorted(presets))}) nor a .toml file"
    )


#: largest seed: ``jax.random.key`` takes a signed 64-bit integer
MAX_SEED = 2**63 - 1
#: characters a run name may hold (it becomes the folder ``results/<name>``)
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+=,@")


def check_name(name: str) -> str:
    """A run name stays inside ``results/``: no path separator, not ``.``/``..``, not empty."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name.startswith(".")
        or not set(name) <= _NAME_OK
    ):
        raise ValueError(
            f"name={name!r} must be a plain folder name (letters, digits, _-.+=,@; not starting "
            "with '.', no '/'): it becomes results/<name>"
        )
    return name


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check every key; raise ``ValueError`` naming the parameter and its value."""
    check_name(cfg.name)
    validate_params(cfg.params)
    if cfg.N < 2:
        raise ValueError(f"N={cfg.N!r} must be >= 2")
    check_value("alpha_max", cfg.alpha_max, lambda x: x > 0, "must be > 0")
    if cfg.n_save < 1:
        raise ValueError(f"n_save={cfg.n_save!r} must be >= 1")
    if cfg.replicas < 1:
        raise ValueError(f"replicas={cfg.replicas!r} must be >= 1")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ValueError(f"seed={cfg.seed!r} must be an integer in [0, 2**63 - 1]")
    # the keys of the eps laws are checked whether or not the chosen law reads them
    for key in ("eps_min", "eps_max"):
        check_value(key, getattr(cfg, key), lambda x: x >= 0, "must be >= 0")
    for key in ("eps_values", "eps_weights"):
        if any(not (math.isfinite(x) and x >= 0) for x in _floats(key, getattr(cfg, key))):
            raise ValueError(f"{key}={getattr(cfg, key)!r}: every value must be finite and >= 0")
    check_value("dt", cfg.dt, lambda x: x > 0, "must be > 0")
    if cfg.eps_test is not None:
        check_value("eps_test", cfg.eps_test, lambda x: x >= 0, "must be >= 0")
    if cfg.eps_test_max is not None:
        check_value("eps_test_max", cfg.eps_test_max, lambda x: x > 0, "must be > 0")
    if cfg.R0 is not None:
        check_value("R0", cfg.R0, lambda x: -1 <= x <= 1, "must lie in [-1, 1]")
    check_value("b0", cfg.b0, lambda x: True, "")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss={cfg.loss!r} is not one of {sorted(LOSSES)}")
    if cfg.sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler={cfg.sampler!r} is not one of {list(SAMPLER_NAMES)}")
    from ..model.rule import check_reduced_supported, validate_rule

    validate_rule(cfg.rule, cfg.rule_params)
    if cfg.sampler == "reduced":
        check_reduced_supported(cfg.rule)
    if cfg.prng not in PRNG_IMPLS:
        raise ValueError(f"prng={cfg.prng!r} is not one of {list(PRNG_IMPLS)}")
    from ..generators import GENERATORS

    if cfg.generator not in GENERATORS:
        raise ValueError(f"generator={cfg.generator!r} is not one of {sorted(GENERATORS)}")
    if cfg.generator != "jax":
        if cfg.sampler != "full":
            raise ValueError(f"generator={cfg.generator!r} needs sampler='full' (got sampler={cfg.sampler!r})")
        if cfg.prng != "threefry2x32":
            raise ValueError(f"generator={cfg.generator!r} needs prng='threefry2x32' (got prng={cfg.prng!r})")
    if cfg.B not in ("first", "dense"):
        raise ValueError(f"B={cfg.B!r} must be 'first' or 'dense'")
    if cfg.noise_norm is not None:
        check_value("noise_norm", cfg.noise_norm, lambda x: x >= 0, "must be >= 0")
    if cfg.save not in ("linear", "log"):
        raise ValueError(f"save={cfg.save!r} must be 'linear' or 'log'")
    if cfg.points_per_decade < 1:
        raise ValueError(f"points_per_decade={cfg.points_per_decade!r} must be >= 1")
    if cfg.ode_start not in ("given", "mc"):
        raise ValueError(f"ode_start={cfg.ode_start!r} must be 'given' or 'mc'")
    if cfg.alpha_max / cfg.dt > MAX_ODE_STEPS:
        raise ValueError(
            f"alpha_max={cfg.alpha_max!r} needs {cfg.alpha_max / cfg.dt:.3g} RK4 steps of dt={cfg.dt!r}, "
            f"more than {MAX_ODE_STEPS:.3g}; lower alpha_max or raise dt"
        )
    if cfg.save == "log":
        n_points = cfg.points_per_decade * math.log10(max(cfg.alpha_max * cfg.N, 1.0)) + 1
        if n_points > MAX_SAVE_POINTS:
            raise ValueError(
                f"points_per_decade={cfg.points_per_decade!r} gives about {n_points:.3g} save points, "
                f"more than {MAX_SAVE_POINTS}"
            )
    if cfg.save == "log" and cfg.alpha_max * cfg.N < 1:
        raise ValueError(f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N}: the run must hold at least one step")
    if cfg.save == "linear" and cfg.alpha_max * cfg.N / cfg.n_save < 1:
        raise ValueError(
            f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N} and n_save={cfg.n_save}: "
            "a save interval must hold at least one step"
        )
    return cfg


#: the RK4 loop's counter is a 32-bit integer
MAX_ODE_STEPS = 2**31 - 1
#: log-spaced saves beyond this many points are a typo, not a run
MAX_SAVE_POINTS = 10**6


def load_config(spec: str, overrides: Sequence[str] = ()) -> RunConfig:
    """A preset name or a TOML path, then ``KEY=VALUE`` overrides; validated.

    Raises:
        ValueError: unknown preset/key, wrong type or out-of-range value (naming it).
        FileNotFoundError: the TOML file does not exist.
    """
    preset, data, name = read_spec(spec, PRESETS)
    cfg = preset if preset is not None else RunConfig()
    if data is not None:
        name = data.pop("name", name)
        for k, v in data.items():
            if isinstance(v, dict):
                raise ValueError(f"{k}: tables are not supported; write keys at the top level")
        data, extra = _split_keys(data)
        cfg = replace(
            cfg,
            name=str(name),
            rule_extra=tuple(sorted({**dict(cfg.rule_extra), **extra}.items())),
            **{k: _coerce(k, v) for k, v in data.items()},
        )
    raw = read_overrides(overrides)
    _, extra = _split_keys(raw)
    if extra:
        cfg = replace(cfg, rule_extra=tuple(sorted({**dict(cfg.rule_extra), **extra}.items())))
    changes = {k: _coerce(k, v) for k, v in raw.items() if k not in extra}
    if "name" in changes:
        changes["name"] = str(changes["name"])
    cfg = replace(cfg, **changes)
    return validate_config(cfg)


def config_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


PRESET_DESCRIPTIONS = {
    "scenario1": "balanced clusters (prior 0.5), L2 adversarial training at eps=1: the bias stays at 0",
    "scenario2": "unbalanced clusters (prior 0.7), L2 adversarial training at eps=1: the bias moves",
}
"""One line per preset, printed by ``jaxadv presets``."""


def presets_table() -> str:
    """``jaxadv presets``: one line per preset, then a table of every key (one column per preset)."""
    names = list(PRESETS)
    lines = ['presets (use as `jaxadv run NAME`, or `preset = "NAME"` in a TOML file):']
    lines += [f"  {n:<11} {PRESET_DESCRIPTIONS.get(n, '')}" for n in names]
    rows = [("key", *names, "default if unset")]
    default = config_dict(RunConfig())
    dicts = [config_dict(PRESETS[n]) for n in names]
    fmt = lambda v: "-" if v is None or v == "" else (f"{v:g}" if isinstance(v, float) else str(v))
    for k in default:
        if k not in ("name", "rule_extra"):
            rows.append((k, *(fmt(d[k]) for d in dicts), fmt(default[k])))
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip() for r in rows]
    lines.append(
        "  ('-': derived: eps_test = eps, eps_test_max = max(2 eps, 2 eps_test, 2), R0 random, noise_norm = eps)"
    )
    return "\n".join(lines)
