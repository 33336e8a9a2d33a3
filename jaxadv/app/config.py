"""The configuration of every student: one table of keys, one reader, one coercion, one validation.

A configuration is a preset (``jaxadv presets``) or a TOML file, then ``--set KEY=VALUE`` overrides.
``student = "unit" | "committee" | "pair"`` chooses the student (default: the preset's, else ``unit``);
keys are flat or grouped in the sections ``[data]``, ``[student]``, ``[rule]`` and ``[run]`` (a committee's
general mixture is a ``[mixture]`` table)::

    preset = "scenario1"   # optional
    [data]
    prior = 0.6
    [run]
    alpha_max = 200
    replicas = 256

:data:`KEYS` lists every key once: its type, its default (run defaults from :mod:`jaxadv.defaults`), the
students that read it, its section and a line of documentation. A key the chosen student does not read,
a key in the wrong section, and a key of a rule part the rule does not use (``eps_min`` with
``eps_dist = "fixed"``, ``pgd_steps`` without ``attack = "pgd"``) are errors that name the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import defaults as D
from .io import read_toml

if typing.TYPE_CHECKING:
    from ..model.params import ModelParams
    from ..model.rule import TrainingRule
    from ..schedule import Schedule

__all__ = [
    "Key",
    "KEYS",
    "STUDENTS",
    "RunConfig",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "COMMITTEE_PRESETS",
    "PAIR_PRESETS",
    "load_config",
    "load_any",
    "validate_config",
    "presets_table",
    "check_name",
    "MAX_SEED",
    "MAX_ATTACK_STEPS",
    "check_count",
]

STUDENTS = ("unit", "committee", "pair")
SECTIONS = ("data", "student", "rule", "run")
PRNG_IMPLS = ("threefry2x32", "philox4x32", "rbg", "unsafe_rbg")
#: largest seed: ``jax.random.key`` takes a signed 64-bit integer
MAX_SEED = 2**63 - 1
#: the RK4 loop's counter is a 32-bit integer
MAX_ODE_STEPS = 2**31 - 1
#: more save points than this (n_save, or log-spaced saves) are a typo, not a run
MAX_SAVE_POINTS = 10**6
#: a list key (radii, target radii) of more values than this is a typo, not a run
MAX_LIST = 1000
#: an attack (PGD, BIM) of more steps than this is a typo, not a run
MAX_ATTACK_STEPS = 10**6

_NONE_WORDS = ("none", "null", "off", "")
_GE0 = (lambda x: x >= 0, "must be >= 0")
_GT0 = (lambda x: x > 0, "must be > 0")
_PM1 = (lambda x: -1 <= x <= 1, "must lie in [-1, 1]")
_PRIOR = (lambda x: 0 < x < 1, "must lie in the open interval (0, 1)")
#: a radius beyond this (a million times the clusters' scale) attacks every example the same way: a typo
MAX_RADIUS = 1e6
_RADIUS = (lambda x: 0 <= x <= MAX_RADIUS, f"must lie in [0, {MAX_RADIUS:g}]")
_SEED_OK = (lambda x: 0 <= x <= MAX_SEED, "must be an integer in [0, 2**63 - 1]")
_GM = ("given", "mc")
_DATA_KINDS = ("two_cluster", "xor", "mixture")


def _at_least(n: int) -> tuple:
    return (lambda x: x >= n, f"must be >= {n}")


class Key(NamedTuple):
    """One configuration key.

    Attributes:
        name: the key (``--set name=...``, a TOML key).
        kind: ``int``, ``float``, ``bool``, ``str``, ``floats`` (a list, or ``"a,b"``) or ``array`` (a TOML
            array, or ``"a,b;c,d"``); a trailing ``?`` allows ``none``.
        default: its value when unset.
        students: the students that read it (space-separated names of :data:`STUDENTS`).
        section: where it goes in a TOML file with sections (:data:`SECTIONS`).
        doc: one line.
        check: ``(predicate, rule)`` every value (each element of a list) must pass, or ``None``.
        choices: the allowed strings, or ``()``.
    """

    name: str
    kind: str
    default: Any
    students: str
    section: str
    doc: str
    check: tuple | None = None
    choices: tuple = ()


SCHEDULE_KEYS = ("eta_w", "eta_b", "eta_v", "eps", "eps_min", "eps_max", "noise_norm", "hinge_margin")
"""The keys of the training rule (the unit's and the committee's) that may follow a schedule in alpha
(:mod:`jaxadv.schedule`): a TOML table ``eps = {knots = [0, 10, 100], values = [0, 0.5, 1]}`` or
``--set 'eps=knots:0,10,100;values:0,0.5,1'``."""

ALL = "unit committee pair"
KEYS: tuple[Key, ...] = (
    Key("student", "str", "unit", ALL, "student", "which student learns", choices=STUDENTS),
    Key("name", "str?", None, ALL, "run", "label, folder results/<name> (default: preset name or file stem)"),
    # data
    Key("prior", "float", 0.5, ALL, "data", "probability of cluster 1 (label +1)", _PRIOR),
    Key("rho", "float", 2.0, ALL, "data", "distance between the cluster centres", _GE0),
    Key("v1", "float", 1.0, ALL, "data", "per-component variance of cluster 1", _GT0),
    Key("v2", "float", 1.0, ALL, "data", "per-component variance of cluster 2", _GT0),
    Key("data", "str", "two_cluster", "committee", "data", "or xor, or mixture ([mixture])", choices=_DATA_KINDS),
    Key("var", "float", 1.0, "committee", "data", "per-component variance of the XOR clusters", _GT0),
    Key(
        "B", "str", "first", "unit", "data", "cluster axis of the MC: first (e_1) or dense", choices=("first", "dense")
    ),
    # student
    Key("R0", "float?", None, "unit", "student", "initial overlap R (none: random w; ODE from 0)", _PM1),
    Key("b0", "float", 0.0, "unit", "student", "initial bias"),
    Key("K", "int", 2, "committee", "student", "hidden units", _at_least(1)),
    Key("train_v", "bool", False, "committee", "student", "train the second layer v"),
    Key("normalise", "bool", True, "committee", "student", "keep every unit's weights at norm sqrt(N)"),
    Key("lipschitz", "float?", None, "committee", "student", "L_max of Lipschitz normalisation (normalise = false)"),
    Key("v", "array?", None, "committee", "student", "second layer (length K; none: the committee's default)"),
    Key("R0", "array?", None, "committee", "student", "initial overlaps R_kj (K x D; none: random)"),
    Key("Q0", "array?", None, "committee", "student", "initial overlaps Q_kl (K x K; none: random)"),
    Key("b0", "array?", None, "committee", "student", "initial biases (length K)"),
    Key("stream", "str", "independent", "pair", "student", "or same, or blackbox (jaxadv.model.pair)"),
    Key("target_frozen", "bool", False, "pair", "student", "the target does not learn"),
    Key("R_s0", "float", 0.0, "pair", "student", "initial overlap of the surrogate", _PM1),
    Key("R_t0", "float", 0.0, "pair", "student", "initial overlap of the target", _PM1),
    Key("Q0", "float", 0.0, "pair", "student", "initial overlap of surrogate and target", _PM1),
    Key("b_s0", "float", 0.0, "pair", "student", "initial bias of the surrogate"),
    Key("b_t0", "float", 0.0, "pair", "student", "initial bias of the target"),
    # rule (the committee's eta_w, eta_b, eta_v, eps: jaxadv.students.committee.RULE_KEYS, added below)
    Key("eta_w", "float", 0.04, "unit", "rule", "learning rate of the weights (step eta_w/N)"),
    Key("eta_b", "float", 0.2, "unit", "rule", "learning rate of the bias (step eta_b/N)"),
    Key("eps", "float", 1.0, "unit", "rule", "L2 radius of the training attack (0: standard training)"),
    Key("loss", "str", "quadratic", "unit committee", "rule", "loss of the pre-activation (jaxadv.model.losses)"),
    Key("attack", "str", "l2", "unit", "rule", "l2, noise, linf or l1 (the last two: Monte Carlo only)"),
    Key("attack", "str", "fgm", "committee", "rule", "fgm, pgd, worst or none (jaxadv.committee)"),
    Key(
        "pgd_steps",
        "int",
        5,
        "committee",
        "rule",
        "PGD steps (attack = pgd)",
        (lambda x: 1 <= x <= MAX_ATTACK_STEPS, f"must lie in [1, {MAX_ATTACK_STEPS}] (more is a typo, not a run)"),
    ),
    Key("pgd_step", "float", 0.25, "committee", "rule", "PGD step, a fraction of eps (attack = pgd)"),
    Key("pgd_random_start", "bool", False, "committee", "rule", "PGD starts at a random point (attack = pgd)"),
    Key("eps_dist", "str", "fixed", "unit", "rule", "law of the per-example radius (jaxadv.model.eps_laws)"),
    Key("eps_min", "float", 0.0, "unit", "rule", "lower end of a uniform/loguniform eps law", _GE0),
    Key("eps_max", "float", 0.0, "unit", "rule", "upper end of a uniform/loguniform eps law", _GE0),
    Key("eps_values", "str", "", "unit", "rule", "support of eps_dist = discrete, e.g. 0.5,1.5"),
    Key("eps_weights", "str", "", "unit", "rule", "weights of eps_dist = discrete, e.g. 1,3"),
    Key("nonrobust_only", "bool", False, "unit", "rule", "update only on examples that are not eps-robust"),
    Key("gate", "str", "none", "unit", "rule", "which examples update (jaxadv.model.gates)"),
    Key("noise_norm", "float?", None, "unit", "rule", "RMS L2 norm of attack = noise (none: eps)", _GE0),
    Key("eps_s", "float", 0.0, "pair", "rule", "training radius of the surrogate", _RADIUS),
    Key("eps_t", "floats", [0.0], "pair", "rule", "training radii of the target (one pair each)", _RADIUS),
    Key("eta_w_s", "float", 1.0, "pair", "rule", "learning rate of the surrogate's weights"),
    Key("eta_b_s", "float", 0.5, "pair", "rule", "learning rate of the surrogate's bias"),
    Key("eta_w_t", "float", 1.0, "pair", "rule", "learning rate of the target's weights"),
    Key("eta_b_t", "float", 0.5, "pair", "rule", "learning rate of the target's bias"),
    # run
    Key("N", "int", D.N, ALL, "run", "input dimension of the Monte Carlo", _at_least(2)),
    Key("alpha_max", "float", D.ALPHA_MAX, ALL, "run", "horizon alpha (examples / N)", _GT0),
    Key("n_save", "int", D.N_SAVE, ALL, "run", "save intervals (n_save + 1 rows)", _at_least(1)),
    Key("replicas", "int", D.REPLICAS, ALL, "run", "Monte Carlo replicas", _at_least(1)),
    Key("seed", "int", D.SEED, ALL, "run", "seed of jax.random.key", _SEED_OK),
    Key("dt", "float", D.DT, ALL, "run", "largest RK4 step of the ODE", _GT0),
    Key("x64", "bool", False, ALL, "run", "Monte Carlo in float64 (the ODE is float64)"),
    Key("mc", "bool", True, "unit committee", "run", "run the Monte Carlo (--no-mc sets it false)"),
    Key("ode_start", "str", "given", "unit", "run", "ODE from R0, b0 (given) or the MC's mean start (mc)", choices=_GM),
    Key("ode_start", "str?", None, "committee", "run", "given (R0, Q0) or mc (none: given with R0, Q0)", choices=_GM),
    Key("eps_test", "float?", None, "unit committee", "run", "radius of the robust error (none: eps)", _GE0),
    Key("eps_test_max", "float?", None, "unit", "run", "largest radius of the robustness curve", _GT0),
    Key("mc_errors", "bool?", None, "committee", "run", "each replica's errors in mc.csv (none: K <= 2)"),
    Key("prng", "str", "threefry2x32", "unit", "run", "jax.random implementation", choices=PRNG_IMPLS),
    Key(
        "sampler",
        "str",
        "full",
        "unit",
        "run",
        "full (N-dim) or reduced (exact O(1) chain)",
        choices=("full", "reduced"),
    ),
    Key("generator", "str", "jax", "unit", "run", "random generator of the full sampler: jax or fast"),
    Key("save", "str", "linear", "unit", "run", "linear or log (points_per_decade)", choices=("linear", "log")),
    Key("points_per_decade", "int", 10, "unit", "run", "save points a decade of alpha with save = log", _at_least(1)),
    Key("labels", "str", "true", "pair", "run", "attack label of the headline curve: true or surrogate"),
    Key("eps", "float", 0.5, "pair", "run", "attack radius of the curves against alpha", _RADIUS),
    Key(
        "eps_grid",
        "floats",
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.5],
        "pair",
        "run",
        "radii of the curves against eps",
        _RADIUS,
    ),
    Key("n_test", "int", 500, "pair", "run", "fresh test examples per replica and save point", _at_least(1)),
)
"""Every key of every student (the committee's rule keys follow from :data:`jaxadv.students.committee.RULE_KEYS`)."""


def _reads(key: Key, student: str) -> bool:
    return student in key.students.split()


def _committee_rule_keys() -> tuple[Key, ...]:
    """The committee's rule keys (:data:`jaxadv.students.committee.RULE_KEYS`: name -> default)."""
    from ..students.committee import RULE_KEYS

    docs = {
        "eta_w": "learning rate of the first layer (step eta_w/N)",
        "eta_b": "learning rate of the biases (step eta_b/N)",
        "eta_v": "learning rate of the second layer (train_v)",
        "eps": "L2 radius of the training attack",
        "hinge_margin": "margin c of loss = hinge, max(0, c - tau x)",
    }
    kind = lambda v: "bool" if isinstance(v, bool) else ("int" if isinstance(v, int) else "float")
    return tuple(
        Key(k, kind(v), v, "committee", "rule", docs.get(k, f"see {k} in docs/architecture.md"))
        for k, v in RULE_KEYS.items()
    )


def keys_of(student: str) -> dict[str, Key]:
    """``{name: Key}`` of the keys ``student`` reads."""
    if student not in STUDENTS:
        raise ValueError(f"student={student!r} is not one of {list(STUDENTS)}")
    rows = KEYS + (_committee_rule_keys() if student == "committee" else ())
    return {
        k.name: k
        for k in rows
        if _reads(k, student) or (student == "committee" and k.section == "rule" and k.students == "committee")
    }


def defaults_of(student: str) -> dict[str, Any]:
    """``{name: default}`` of the keys ``student`` reads, except ``student`` itself (lists copied)."""
    return {
        k: (list(r.default) if isinstance(r.default, list) else r.default)
        for k, r in keys_of(student).items()
        if k != "student"
    }


_U = defaults_of("unit")


@dataclass(frozen=True)
class RunConfig:
    """The unit's configuration: every key of :data:`KEYS` the unit reads (``jaxadv presets`` prints them
    with their meaning and defaults); model keys mirror :class:`jaxadv.ModelParams`.

    ``rule_extra``: ``((name, value), ...)``, parameters declared by a rule part that have no field (a new
    record's ``Param``), given as ordinary keys, e.g. ``--set hinge_margin=0.5``.
    """

    name: str = "custom"
    N: int = _U["N"]
    prior: float = _U["prior"]
    rho: float = _U["rho"]
    v1: float = _U["v1"]
    v2: float = _U["v2"]
    eta_w: float | Schedule = _U["eta_w"]
    eta_b: float | Schedule = _U["eta_b"]
    eps: float | Schedule = _U["eps"]
    eps_test: float | None = None
    eps_test_max: float | None = None
    alpha_max: float = _U["alpha_max"]
    n_save: int = _U["n_save"]
    replicas: int = _U["replicas"]
    seed: int = _U["seed"]
    x64: bool = False
    loss: str = _U["loss"]
    dt: float = _U["dt"]
    R0: float | None = None
    b0: float = _U["b0"]
    prng: str = _U["prng"]
    mc: bool = True
    attack: str = _U["attack"]
    eps_dist: str = _U["eps_dist"]
    eps_min: float | Schedule = _U["eps_min"]
    eps_max: float | Schedule = _U["eps_max"]
    eps_values: str = ""
    eps_weights: str = ""
    nonrobust_only: bool = False
    gate: str = _U["gate"]
    noise_norm: float | Schedule | None = None
    B: str = _U["B"]
    sampler: str = _U["sampler"]
    generator: str = _U["generator"]
    save: str = _U["save"]
    points_per_decade: int = _U["points_per_decade"]
    ode_start: str = _U["ode_start"]
    rule_extra: tuple = ()

    @property
    def params(self) -> ModelParams:
        from ..model.params import ModelParams

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
            "noise_std": _scaled(self.eps if self.noise_norm is None else self.noise_norm, self.N, noise_std_for_norm),
        }
        given.update(dict(self.rule_extra))
        return {k: given[k] for k in rule_param_specs(self.rule) if k in given}

    @property
    def eps_final(self) -> float:
        """``eps`` at the end of the run (a schedule's value at ``alpha_max``)."""
        from ..schedule import at

        return float(at(self.eps, self.alpha_max))

    @property
    def eps_test_value(self) -> float:
        """The radius of the robust error: ``eps_test``, else the training radius at the end of the run."""
        return self.eps_final if self.eps_test is None else self.eps_test

    @property
    def eps_test_max_value(self) -> float:
        from ..schedule import schedule_values

        eps = float(np.max(schedule_values(self.eps), initial=0.0))
        return max(2.0 * eps, 2.0 * self.eps_test_value, 2.0) if self.eps_test_max is None else self.eps_test_max


def _scaled(x: Any, N: int, f: Callable[[Any, int], Any]) -> Any:
    """``f(x, N)``, or for a schedule the schedule of ``f`` of its values (``f`` linear in ``x``)."""
    from ..schedule import Schedule

    if isinstance(x, Schedule):
        return Schedule(x.knots, np.asarray(f(np.asarray(x.values, float), N), float))
    return f(x, N)


def _floats(key: str, text: str):
    """``"0.5, 1.5"`` -> ``(0.5, 1.5)``; ValueError naming ``key`` otherwise."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a comma-separated list of numbers") from None


# The talk's two scenarios. alpha_max and replicas are sized so that the default
# `jaxadv run scenario1` takes about two minutes on a 2-core CPU; the full-size runs
# are in the README (e.g. --set alpha_max=1000 --set replicas=1000).
_SCENARIO = dict(
    N=1000, rho=2.0, v1=1.0, v2=1.0, eta_w=0.04, eta_b=0.2, eps=1.0, alpha_max=100.0, n_save=50, replicas=128
)
PRESETS = {
    "scenario1": RunConfig(name="scenario1", prior=0.5, **_SCENARIO),  # type: ignore[arg-type]
    "scenario2": RunConfig(name="scenario2", prior=0.7, **_SCENARIO),  # type: ignore[arg-type]
}
"""The unit's presets (the committee's and the pair's: :func:`all_presets`)."""

PRESET_DESCRIPTIONS = {
    "scenario1": "balanced clusters (prior 0.5), L2 adversarial training at eps=1: the bias stays at 0",
    "scenario2": "unbalanced clusters (prior 0.7), L2 adversarial training at eps=1: the bias moves",
}
"""One line per unit preset, printed by ``jaxadv presets``."""


def _orthogonal_start(R0: list[list[float]]) -> list[list[float]]:
    """``Q0`` of unit weights whose parts outside span{B_j} are orthonormal: Q_kl = R_k . R_l (k != l)."""
    import numpy as np

    Q0 = np.asarray(R0, float) @ np.asarray(R0, float).T
    np.fill_diagonal(Q0, 1.0)
    return Q0.tolist()


_XOR_R0 = [[0.4, 0.1], [-0.3, 0.2], [0.1, -0.35], [-0.15, -0.25]]
COMMITTEE_PRESETS = {
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


_PAIR_COMMON = {
    "prior": 0.7,
    "eps_s": 0.0,
    "eps_t": [0.0, 1.0],
    "eta_w_s": 0.5,
    "eta_b_s": 0.5,
    "eta_w_t": 0.5,
    "eta_b_t": 0.5,
    "eps": 0.5,
    "N": 500,
    "alpha_max": 20.0,
    "n_save": 10,
    "replicas": 32,
}
PAIR_PRESETS = {
    "transfer": {**_PAIR_COMMON, "stream": "independent", "labels": "true"},
    "blackbox": {**_PAIR_COMMON, "stream": "blackbox", "labels": "surrogate"},
}
"""The pair's presets: ``transfer`` (independent streams, a standard surrogate, a standard and an
adversarially trained target) and ``blackbox`` (the surrogate trains on the target's predictions on the same
stream); every other key takes its default."""


#: the largest target radius ``eps_t`` in millionths: it keys the radius's Monte Carlo (``fold_in``, 32 bits)
MAX_KEYED_RADIUS = 2**32 - 1


def all_presets() -> dict[str, tuple[str, dict]]:
    """``{name: (student, keys)}`` of every preset of every student (a unit preset's keys: all of them)."""
    out: dict[str, tuple[str, dict]] = {n: ("unit", config_dict(c)) for n, c in PRESETS.items()}
    out.update({n: ("committee", dict(p)) for n, p in COMMITTEE_PRESETS.items()})
    out.update({n: ("pair", dict(p)) for n, p in PAIR_PRESETS.items()})
    return out


def _declared_params() -> dict:
    """``{name: Param}`` of every registered rule part's parameters that are not unit keys (a new
    record's parameters become configuration keys this way)."""
    from ..model.rule import registered_params

    unit = keys_of("unit")
    return {k: p for k, p in registered_params().items() if k not in unit and k != "noise_std"}


def _number(key: str, value: Any) -> float:
    """A finite float from a TOML number or a string; ``ValueError`` naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key}={value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a number") from None
    except OverflowError:
        raise ValueError(f"{key}={value!r} is too large") from None
    if not math.isfinite(x):
        raise ValueError(f"{key}={x!r} must be finite")
    return x


def coerce(key: Key, value: Any) -> Any:
    """``value`` (from TOML or a ``--set`` string) as the type of ``key``; ``ValueError`` naming the key and
    echoing the value otherwise. Numbers are finite; integers exact (a seed is never rounded through float)."""
    name, kind = key.name, key.kind.rstrip("?")
    if isinstance(value, str):
        value = value.strip()
    if value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS and kind != "str"):
        if key.kind.endswith("?"):
            return None
        if value is None:
            raise ValueError(f"{name}=None is not allowed")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{name}={value!r} is not a boolean (true/false)")
    if kind == "int":
        return _int64(name, value)
    if kind == "float":
        if name in SCHEDULE_KEYS and (isinstance(value, dict) or (isinstance(value, str) and ":" in value)):
            from ..schedule import parse_schedule

            return parse_schedule(name, value)
        return _number(name, value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name}={value!r} is not a string")
        return value
    if kind == "floats":
        parts = (
            value.split(",")
            if isinstance(value, str)
            else (list(value) if isinstance(value, (list, tuple)) else [value])
        )
        out = [_number(name, v) for v in parts if not (isinstance(v, str) and not v.strip())]
        if len(out) > MAX_LIST:
            raise ValueError(f"{name}= holds {len(out)} values, more than {MAX_LIST}: a typo, not a run")
        ok, rule = key.check or (lambda x: True, "")
        if not out or not all(ok(x) for x in out):
            each = (
                rule.removeprefix("must be ") if rule.startswith("must be ") else "that " + rule.removeprefix("must ")
            )
            raise ValueError(f"{name}={value!r} must be a non-empty list of numbers {each}")
        return out
    return _array(name, value)


def _int64(name: str, value: Any) -> int:
    """An exact integer in the signed 64-bit range (every size and seed becomes an array shape or a JAX
    integer) from a TOML integer or a string (``"1e3"`` is 1000); ``ValueError`` naming ``name`` otherwise."""
    x: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        x = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            x = int(value)
    if x is None:
        try:
            f = _number(name, value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an integer") from None
        if f != int(f):
            raise ValueError(f"{name}={value!r} is not an integer")
        x = int(f)
    if not -(2**63) <= x <= 2**63 - 1:
        shown = value if isinstance(value, str) else f"{float(x):.3g}"
        raise ValueError(f"{name}={shown} is outside the 64-bit integer range [-2**63, 2**63 - 1]")
    return x


def _array(key: str, value: Any) -> list:
    """A vector or matrix of finite numbers from a TOML array or a string ``"a,b;c,d"``."""
    import numpy as np

    if isinstance(value, str):
        try:
            rows = [[float(x) for x in r.split(",") if x.strip()] for r in value.split(";") if r.strip()]
        except ValueError:
            raise ValueError(f"{key}={value!r} is not a list of numbers (rows separated by ';')") from None
        value = rows[0] if len(rows) == 1 and ";" not in value else rows
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{key}={value!r} is not a list of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{key}={value!r} must be finite")
    return arr.tolist()


def check_values(student: str, values: dict) -> None:
    """Every key's own check (:attr:`Key.check`, :attr:`Key.choices`) on the resolved ``values``, the number
    and memory of the save points and the ODE's step count; ``ValueError`` naming the key and echoing its value."""
    from ..schedule import is_schedule, schedule_values

    for name, key in keys_of(student).items():
        v = values.get(name)
        if v is None:
            continue
        if key.choices and v not in key.choices:
            raise ValueError(f"{name}={v!r} is not one of {list(key.choices)}")
        if isinstance(v, dict) and set(v) == {"knots", "values"}:  # a schedule (config_dict's form)
            v = v["values"]
        elif is_schedule(v):  # its knot values
            v = schedule_values(v).tolist()
        for x in v if isinstance(v, list) else [v]:
            if key.check is not None and not key.check[0](x):
                raise ValueError(f"{name}={x!r} {key.check[1]}")
    n_save = values["n_save"]
    if n_save > MAX_SAVE_POINTS:
        raise ValueError(f"n_save={n_save!r} is more than {MAX_SAVE_POINTS} save points: a typo, not a run")
    from .resources import check_fits, table_memory_bytes

    check_fits(table_memory_bytes(n_save + 1, ode_columns(student, values), "n_save+1"), f"n_save={n_save!r}")
    if values["alpha_max"] / values["dt"] > MAX_ODE_STEPS:
        raise ValueError(
            f"alpha_max={values['alpha_max']!r} needs {values['alpha_max'] / values['dt']:.3g} RK4 steps of "
            f"dt={values['dt']!r}, more than {MAX_ODE_STEPS:.3g}; lower alpha_max or raise dt"
        )


def ode_columns(student: str, values: dict) -> int:
    """A generous count of the numbers the ODE keeps per save point (order parameters, errors, the pair's
    curves of every target radius), for the memory estimate of ``n_save``."""
    if student == "committee":
        return 16 + values["K"] * (values["K"] + 4)
    if student == "pair":
        return 16 + 32 * len(values["eps_t"])
    return 16


def read_overrides(overrides: Sequence[str]) -> dict:
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


def _flatten(data: dict) -> tuple[dict, dict, Any]:
    """A TOML file's keys without sections: ``({key: value}, {key: section or None}, mixture table)``."""
    flat: dict[str, Any] = {}
    where: dict[str, str | None] = {}
    mixture = data.pop("mixture", None)
    for k, v in data.items():
        if isinstance(v, dict) and k in SECTIONS:
            items = [(k2, v2, k) for k2, v2 in v.items()]
        elif isinstance(v, dict) and k in SCHEDULE_KEYS:  # a schedule, {knots = [...], values = [...]}
            items = [(k, v, None)]
        elif isinstance(v, dict):
            raise ValueError(
                f"[{k}]: not a section; the sections are {', '.join(f'[{s}]' for s in SECTIONS)} (and [mixture])"
            )
        else:
            items = [(k, v, None)]
        for k2, v2, sec in items:
            if k2 in flat:
                raise ValueError(f"{k2} is given twice in the file; give each key once")
            flat[k2], where[k2] = v2, sec
    return flat, where, mixture


class Resolved(NamedTuple):
    """A configuration read but not yet built: the student, the run's name, the values of every key the
    student reads, the keys given explicitly (file and ``--set``) and a committee's ``[mixture]`` table."""

    student: str
    name: str
    values: dict
    given: dict
    extra: dict
    mixture: Any


def read_config(spec: str, overrides: Sequence[str] = (), student: str | None = None) -> Resolved:
    """The one reader: a preset name or a TOML path, then ``KEY=VALUE`` overrides, coerced key by key.

    ``student``: the student a command runs (``jaxadv committee``: ``"committee"``); ``None``: the preset's,
    the file's ``student`` key, else ``"unit"``. ``ValueError`` names an unknown preset, a key the student
    does not read, a key in the wrong section or a bad value."""
    presets = all_presets()
    raw = read_overrides(overrides)
    base, data, name = None, {}, spec
    if spec in presets:
        base = spec
    elif spec.endswith(".toml") or os.path.exists(spec):
        data = read_toml(spec, "config file")
        data.pop("optimise", None)  # jaxadv optimise's table (jaxadv.app.optimise): read there, not a run's
        base = data.pop("preset", None)
        name = os.path.splitext(os.path.basename(spec))[0]
        if base is not None and base not in presets:
            raise ValueError(f"preset={base!r} is not one of {sorted(presets)}")
    else:
        which = sorted(n for n, (s, _) in presets.items() if student is None or s == student)
        raise ValueError(f"{spec!r} is neither a preset ({', '.join(which)}) nor a .toml file")
    flat, where, mixture = _flatten(data)
    chosen = coerce(KEYS[0], raw.pop("student", flat.pop("student", presets[base][0] if base else student or "unit")))
    where.pop("student", None)
    if chosen not in STUDENTS:
        raise ValueError(f"student={chosen!r} is not one of {list(STUDENTS)}")
    if base is not None and presets[base][0] != chosen:
        raise ValueError(f"student={chosen!r}: preset {base!r} is a preset of the {presets[base][0]} student")
    if student is not None and chosen != student:
        raise ValueError(f"student={chosen!r}: this command runs the {student} student; use `jaxadv run`")
    if mixture is not None and chosen != "committee":
        raise ValueError(f"[mixture] is read by the committee only (student={chosen!r})")
    keys = keys_of(chosen)
    declared = _declared_params() if chosen == "unit" else {}
    values = defaults_of(chosen)
    values.update(presets[base][1] if base else {})
    values["name"] = name  # the preset's, or the file's stem
    given, extra = {}, {}
    for k, v in [*flat.items(), *raw.items()]:
        if k in declared:
            x = coerce(Key(k, "floats" if declared[k].vector else "float", None, "unit", "rule", ""), v)
            extra[k] = tuple(x) if declared[k].vector else x
            continue
        if k not in keys:
            readers = sorted({s for r in KEYS if r.name == k for s in r.students.split()})
            known = ", ".join(sorted(set(keys) | set(declared)))
            who = f" (a key of the {' and '.join(readers)} student)" if readers else ""
            raise ValueError(f"unknown key {k!r} for student={chosen!r}{who}; known keys: {known}")
        if where.get(k) not in (None, keys[k].section) and k in flat:
            raise ValueError(f"{k} belongs in [{keys[k].section}], not [{where[k]}]")
        given[k] = values[k] = coerce(keys[k], v)
    return Resolved(chosen, str(values["name"]), values, given, extra, mixture)


#: characters a run name may hold (it becomes the folder ``results/<name>``)
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+=,@")


def check_name(name: str) -> str:
    """A run name stays inside ``results/``: no path separator, not ``.``/``..``, not empty."""
    if not isinstance(name, str) or not name or name.startswith(".") or not set(name) <= _NAME_OK:
        raise ValueError(
            f"name={name!r} must be a plain folder name (letters, digits, _-.+=,@; not starting "
            "with '.', no '/'): it becomes results/<name>"
        )
    return name


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check every key of the unit's configuration; raise ``ValueError`` naming the parameter and its value."""
    from ..generators import GENERATORS
    from ..model.losses import LOSSES
    from ..model.params import validate_params
    from ..model.rule import check_reduced_supported, validate_rule

    check_name(cfg.name)
    check_values("unit", config_dict(cfg))
    validate_params(cfg.params)
    for key in ("eps_values", "eps_weights"):
        if any(not (math.isfinite(x) and x >= 0) for x in _floats(key, getattr(cfg, key))):
            raise ValueError(f"{key}={getattr(cfg, key)!r}: every value must be finite and >= 0")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss={cfg.loss!r} is not one of {sorted(LOSSES)}")
    validate_rule(cfg.rule, cfg.rule_params)
    if cfg.sampler == "reduced":
        check_reduced_supported(cfg.rule)
    if cfg.generator not in GENERATORS:
        raise ValueError(f"generator={cfg.generator!r} is not one of {sorted(GENERATORS)}")
    if cfg.generator != "jax":
        if cfg.sampler != "full":
            raise ValueError(f"generator={cfg.generator!r} needs sampler='full' (got sampler={cfg.sampler!r})")
        if cfg.prng != "threefry2x32":
            raise ValueError(f"generator={cfg.generator!r} needs prng='threefry2x32' (got prng={cfg.prng!r})")
    if cfg.save == "log":
        n_points = cfg.points_per_decade * math.log10(max(cfg.alpha_max * cfg.N, 1.0)) + 1
        if n_points > MAX_SAVE_POINTS:
            raise ValueError(
                f"points_per_decade={cfg.points_per_decade!r} gives about {n_points:.3g} save points, "
                f"more than {MAX_SAVE_POINTS}"
            )
        if cfg.alpha_max * cfg.N < 1:
            raise ValueError(
                f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N}: the run must hold at least one step"
            )
    elif cfg.alpha_max * cfg.N / cfg.n_save < 1:
        raise ValueError(
            f"alpha_max={cfg.alpha_max!r} is too small for N={cfg.N} and n_save={cfg.n_save}: "
            "a save interval must hold at least one step"
        )
    return cfg


def check_count(name: str, value: int, at_least: int = 1, at_most: int | None = None, why: str = "") -> int:
    """``value`` unless it is below ``at_least`` or above ``at_most``; ``ValueError`` naming ``name`` (an option
    such as ``--pgd-steps`` or a key) and echoing ``value`` otherwise (``why``: what the upper bound is)."""
    if value < at_least:
        raise ValueError(f"{name}={value!r} must be >= {at_least}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{name}={value!r} is more than {at_most}{why}")
    return value


def check_unused(given: dict, reads: Callable[[str], bool], why: str) -> None:
    """``ValueError`` for a key given explicitly that the chosen rule part does not read (``why`` names it)."""
    for k, v in given.items():
        if not reads(k):
            raise ValueError(f"{k}={v!r} is not read by this rule ({why}); remove it")


def _unit(r: Resolved) -> RunConfig:
    fields_ = {k: v for k, v in r.values.items() if k in RunConfig.__dataclass_fields__}
    cfg = RunConfig(**{**fields_, "name": r.name, "rule_extra": tuple(sorted(r.extra.items()))})
    validate_config(cfg)
    from ..model.rule import rule_param_specs

    reads = set(rule_param_specs(cfg.rule)) | ({"noise_norm"} if "noise_std" in rule_param_specs(cfg.rule) else set())
    rule_keys = {"eps_min", "eps_max", "eps_values", "eps_weights", "noise_norm"}
    why = f"loss={cfg.loss!r}, attack={cfg.attack!r}, eps_dist={cfg.eps_dist!r}, gate={cfg.gate!r}"
    check_unused(
        {k: v for k, v in {**r.given, **r.extra}.items() if k in rule_keys | set(r.extra)}, reads.__contains__, why
    )
    return cfg


def load_any(spec: str, overrides: Sequence[str] = (), student: str | None = None) -> tuple[str, Any]:
    """``(student, configuration)`` of any student, validated: a :class:`RunConfig` for the unit, the
    committee's and the pair's resolved dicts (each key checked, then the checks across keys and the records'
    own validators, :attr:`jaxadv.students.StudentRecord.resolve`)."""
    r = read_config(spec, overrides, student)
    if r.student == "unit":
        return "unit", _unit(r)
    check_values(r.student, r.values)
    r.values["name"] = check_name(r.name)
    if r.student == "committee":
        return "committee", _committee(r)
    return "pair", _pair(r)


_PGD = ("attack", "pgd")
_USED_WHEN = {"pgd_steps": _PGD, "pgd_step": _PGD, "pgd_random_start": _PGD, "hinge_margin": ("loss", "hinge")}
"""Keys of one rule part: read only when the rule has that part (given otherwise, they are an error)."""


def _committee(r: Resolved) -> dict[str, Any]:
    """The committee's checks across keys on a :class:`jaxadv.app.config.Resolved` (each key's own check has
    run); returns the resolved dict."""
    from ..students.committee import resolve

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
    resolve(cfg)  # every record's own validator
    if cfg["eps_test"] is None:  # validated as eps; a schedule's final value
        from ..schedule import at

        cfg["eps_test"] = float(at(cfg["eps"], cfg["alpha_max"]))
    return cfg


def _pair(r: Resolved) -> dict[str, Any]:
    """The pair's checks across keys on a :class:`jaxadv.app.config.Resolved`; returns the resolved dict."""
    from ..analysis.transfer import LABEL_MODES
    from ..model.pair import STREAMS
    from ..students.pair import resolve

    cfg = dict(r.values)
    for key, allowed in (("stream", STREAMS), ("labels", LABEL_MODES)):
        if cfg[key] not in allowed:
            raise ValueError(f"{key}={cfg[key]!r} must be one of {list(allowed)}")
    if cfg["replicas"] < 2:
        raise ValueError(f"replicas={cfg['replicas']!r} must be an integer >= 2")
    for e in cfg["eps_t"]:  # each target radius, in millionths, keys its Monte Carlo (run_transfer): 32 bits
        if e * 1e6 > MAX_KEYED_RADIUS:
            raise ValueError(f"eps_t={e!r} is more than {MAX_KEYED_RADIUS / 1e6:.6g}, the largest target radius")
    resolve(cfg)  # every record's own validator
    return cfg


def load_config(spec: str, overrides: Sequence[str] = ()) -> RunConfig:
    """The unit's configuration: a preset name or a TOML path, then ``KEY=VALUE`` overrides; validated.

    Raises:
        ValueError: unknown preset/key, wrong type or out-of-range value (naming it).
        FileNotFoundError: the TOML file does not exist.
    """
    return load_any(spec, overrides, "unit")[1]


def config_dict(cfg: RunConfig) -> dict:
    """The configuration as JSON-ready values (a schedule as ``{"knots": [...], "values": [...]}``)."""
    from ..schedule import described

    return described(dataclasses.asdict(cfg))


def _fmt(v: Any) -> str:
    """A value for a one-line summary: ``0.5``, ``[0,1]``, a schedule as ``0->1.5->0.5``."""
    from ..schedule import Schedule

    if isinstance(v, Schedule):
        return "->".join(f"{x:g}" for x in np.asarray(v.values, float).ravel())
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def presets_table() -> str:
    """``jaxadv presets``: every preset of every student (one line each), then every key: its students,
    section, default and meaning."""
    lines = ['presets (`jaxadv run NAME`, or `preset = "NAME"` in a TOML file):']
    for name, (student, keys) in all_presets().items():
        if student == "unit":
            what = PRESET_DESCRIPTIONS.get(name, "")
            what += "; " + ", ".join(f"{k}={_fmt(keys[k])}" for k in ("prior", "eps", "alpha_max", "replicas"))
        else:
            what = ", ".join(f"{k}={_fmt(v)}" for k, v in keys.items() if k not in ("Q0", "R0", "b0"))
            what += " (and a given start Q0, R0, b0)" if "R0" in keys else ""
        lines.append(f"  {name:<11} {student:<10} {what}")
    rows = [("key", "students", "section", "default", "meaning")]
    rows += [
        (k.name, k.students.replace(" ", ","), k.section, _fmt(k.default), k.doc) for k in KEYS + _committee_rule_keys()
    ]
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += ["", "keys (flat, or in the sections [data], [student], [rule], [run]; every other key is an error):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], width, strict=True)) + "  " + r[4] for r in rows]
    return "\n".join(lines)
