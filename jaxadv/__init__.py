"""jaxadv: adversarial training in the prototype model, by Monte Carlo and large-N ODEs.

The package is layered (``docs/architecture.md``):

* :mod:`jaxadv.model` -- *what* is simulated: parameters, the two-cluster data, losses, and the
  parts of a training rule (attacks, eps laws, gates), each a record with a Monte Carlo face and,
  where the theory closes, an ODE face; the student's update.
* :mod:`jaxadv.mc` -- the Monte Carlo: public ``(init, step)`` samplers (full N-dimensional and
  the exact reduced chain) and the pure driver :func:`simulate`.
* :mod:`jaxadv.ode` -- the large-N theory: quadrature, the one vector field, RK4, fluctuations,
  fixed points.
* :mod:`jaxadv.analysis` -- measures under every threat model, MC-vs-ODE comparisons, defences.
* :mod:`jaxadv.students` -- every student as a record (the unit, the committee, the pair): its state,
  fields, output, normalisation and order parameters, with its Monte Carlo and ODE faces.
* :mod:`jaxadv.app` -- configurations, checkpoints, files, figures, sweeps, verify, the CLI.

:mod:`jaxadv.attacks` attacks any JAX model (FGM, PGD/BIM under L1, L2, L-infinity, targeted);
:mod:`jaxadv.analysis.mnist` and :mod:`jaxadv.app.mnist` (``jaxadv mnist``) run the talk's MNIST
experiment with them.

Utilities: :mod:`jaxadv.threefry` (random bits identical to ``jax.random``), :mod:`jaxadv.fast_random`
and :mod:`jaxadv.generators` (the Monte Carlo's faster generator, same law, other numbers),
:mod:`jaxadv.sharding` (batches over devices).
"""

__version__ = "0.1.0"

# Nothing heavy is imported here: each public name is loaded from its module on first use
# (PEP 562), so ``import jaxadv`` and ``jaxadv --help`` start without JAX or matplotlib.
import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time every name is loaded on first use (below)
    from . import attacks, committee, control, fast_random, schedule
    from .analysis import mnist
    from .analysis.certified import certified_curve, certified_error_empirical, certified_radius
    from .analysis.compare import compare, mc_summary, ode_table
    from .analysis.defences import DEFENCES, compare_defences
    from .analysis.fixed_points import (
        BestError,
        FixedPoint,
        best_robust_error,
        best_robust_error_closed,
        best_test_error,
        fixed_point,
        newton_fixed_point,
    )
    from .analysis.measures import robust_error, test_error
    from .analysis.stats import mean_sem
    from .analysis.threat import THREATS, robust_error_threat
    from .analysis.transfer import bivariate_normal_cdf, transfer_error, transfer_rate
    from .analysis.verdict import Verdict, honest_verdict, theory_applies
    from .app import mnist as mnist_app
    from .app import optimise as optimise_app
    from .app.checkpoint import simulate_committee_resumable, simulate_resumable
    from .app.committee_sweep import (
        CommitteeSweepConfig,
        CommitteeSweepResult,
        committee_sweep,
        load_committee_sweep,
        load_committee_sweep_config,
        make_committee_sweep_config,
    )
    from .app.config import PRESETS, RunConfig, load_config
    from .app.cores import use_all_cores
    from .app.load import load
    from .app.plots import plot_defences, plot_errors, plot_order_parameters, plot_robustness
    from .app.sweep import SweepConfig, SweepResult, load_sweep, load_sweep_config, make_sweep_config, sweep
    from .app.sweep_plots import plot_sweep_heatmaps, plot_tradeoff
    from .generators import GENERATORS, Generator, get_generator
    from .mc.driver import MCResult, simulate
    from .mc.full import Observables, Sampler, SamplerParams, full_sampler
    from .mc.pair import PairMC, measure_transfer, pair_sampler, simulate_pair
    from .mc.reduced import reduced_sampler
    from .model.data import sample_example, unit_direction
    from .model.eps_laws import EPS_LAWS, EpsLaw
    from .model.gates import GATES, Gate
    from .model.losses import LOSSES, QUADRATIC, Loss, force, force_moments, get_loss
    from .model.pair import PairParams, PairSpec, pair_params
    from .model.params import ModelParams, Param, validate_params
    from .model.perturbations import ATTACKS, Attack, l2_attack, l2_attack_field, noise_std_for_norm
    from .model.rule import (
        DEFAULT_RULE,
        TrainingRule,
        check_ode_supported,
        check_reduced_supported,
        rule_params,
        training_rule,
    )
    from .model.student import Student, sgd_step, train_step
    from .ode.fluctuations import FluctuationResult, solve_fluctuations
    from .ode.pair import PairODE, solve_pair_ode
    from .ode.rk4 import RK4, ButcherTableau, integrate, rk_step
    from .ode.solve import ODEResult, solve_ode
    from .ode.vector_field import drift, vector_field
    from .sharding import batch_mesh, shard_batch
    from .students import STUDENTS, StudentRecord, get_student

_NAMES = {  # module -> the public names it defines
    ".model.params": ("ModelParams", "Param", "validate_params"),
    ".model.data": ("sample_example", "unit_direction"),
    ".model.losses": ("LOSSES", "QUADRATIC", "Loss", "force", "force_moments", "get_loss"),
    ".model.perturbations": ("ATTACKS", "Attack", "l2_attack", "l2_attack_field", "noise_std_for_norm"),
    ".model.eps_laws": ("EPS_LAWS", "EpsLaw"),
    ".model.gates": ("GATES", "Gate"),
    ".model.rule": (
        "DEFAULT_RULE",
        "TrainingRule",
        "check_ode_supported",
        "check_reduced_supported",
        "rule_params",
        "training_rule",
    ),
    ".model.student": ("Student", "sgd_step", "train_step"),
    ".mc.full": ("Observables", "Sampler", "SamplerParams", "full_sampler"),
    ".mc.reduced": ("reduced_sampler",),
    ".mc.driver": ("MCResult", "simulate"),
    ".generators": ("GENERATORS", "Generator", "get_generator"),
    ".ode.rk4": ("RK4", "ButcherTableau", "integrate", "rk_step"),
    ".ode.vector_field": ("drift", "vector_field"),
    ".ode.solve": ("ODEResult", "solve_ode"),
    ".ode.fluctuations": ("FluctuationResult", "solve_fluctuations"),
    ".analysis.fixed_points": (
        "BestError",
        "FixedPoint",
        "best_robust_error",
        "best_robust_error_closed",
        "best_test_error",
        "fixed_point",
        "newton_fixed_point",
    ),
    ".analysis.measures": ("robust_error", "test_error"),
    ".analysis.transfer": ("bivariate_normal_cdf", "transfer_error", "transfer_rate"),
    ".model.pair": ("PairParams", "PairSpec", "pair_params"),
    ".mc.pair": ("PairMC", "pair_sampler", "measure_transfer", "simulate_pair"),
    ".ode.pair": ("PairODE", "solve_pair_ode"),
    ".analysis.threat": ("THREATS", "robust_error_threat"),
    ".analysis.certified": ("certified_radius", "certified_error_empirical", "certified_curve"),
    ".analysis.compare": ("compare", "mc_summary", "ode_table"),
    ".analysis.stats": ("mean_sem",),
    ".analysis.verdict": ("Verdict", "honest_verdict", "theory_applies"),
    ".analysis.defences": ("DEFENCES", "compare_defences"),
    ".app.config": ("PRESETS", "RunConfig", "load_config"),
    ".app.checkpoint": ("simulate_resumable", "simulate_committee_resumable"),
    ".app.plots": ("plot_defences", "plot_order_parameters", "plot_errors", "plot_robustness"),
    ".app.sweep": ("SweepConfig", "SweepResult", "load_sweep", "load_sweep_config", "make_sweep_config", "sweep"),
    ".app.sweep_plots": ("plot_sweep_heatmaps", "plot_tradeoff"),
    ".app.committee_sweep": (
        "CommitteeSweepConfig",
        "CommitteeSweepResult",
        "make_committee_sweep_config",
        "load_committee_sweep_config",
        "committee_sweep",
        "load_committee_sweep",
    ),
    ".sharding": ("batch_mesh", "shard_batch"),
    ".students": ("STUDENTS", "StudentRecord", "get_student"),
    ".app.load": ("load",),
    ".app.cores": ("use_all_cores",),
}
_MODULES = {  # public name -> submodule
    "attacks": ".attacks",
    "mnist": ".analysis.mnist",
    "mnist_app": ".app.mnist",
    "committee": ".committee",
    "fast_random": ".fast_random",
    "schedule": ".schedule",
    "control": ".control",
    "optimise_app": ".app.optimise",
}
_WHERE = {name: mod for mod, names in _NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(_importlib.import_module(_WHERE[name], __name__), name)
    elif name in _MODULES:
        value = _importlib.import_module(_MODULES[name], __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    # the model: parameters, the training rule, the student's step
    "ModelParams",
    "TrainingRule",
    "training_rule",
    "Student",
    "sgd_step",
    # its two faces: the Monte Carlo and the large-N ODE
    "simulate",
    "MCResult",
    "full_sampler",
    "reduced_sampler",
    "solve_ode",
    "ODEResult",
    # measures and the MC-vs-ODE verdict
    "test_error",
    "robust_error",
    "mean_sem",
    "mc_summary",
    "ode_table",
    "compare",
    "honest_verdict",
    "Verdict",
    "solve_fluctuations",
    "fixed_point",
    # every student as a record (the unit, the committee, the pair); committees (a subpackage), the pair
    "STUDENTS",
    "StudentRecord",
    "committee",
    "simulate_pair",
    "solve_pair_ode",
    # runs, files and sweeps as the command line makes them
    "RunConfig",
    "PRESETS",
    "load_config",
    "simulate_resumable",
    "load",
    "make_sweep_config",
    "sweep",
    "load_sweep",
    "make_committee_sweep_config",
    "committee_sweep",
    "load_committee_sweep",
    "plot_order_parameters",
    "plot_errors",
    "plot_robustness",
    # attacks on any JAX model; all CPU cores as devices
    "attacks",
    "use_all_cores",
]
"""The short top-level API. Every other public name lives in the module that defines it (documented there:
``jaxadv.model.perturbations.Attack``, ``jaxadv.ode.rk4.integrate``, ...); for scripts written against
version 0.1 it is still reachable as ``jaxadv.NAME`` (:data:`COMPATIBLE`), but not listed here."""

COMPATIBLE = tuple(sorted((set(_WHERE) | set(_MODULES)) - set(__all__)))
"""Names that ``jaxadv.NAME`` still resolves (lazily, from their module) beside :data:`__all__`."""
