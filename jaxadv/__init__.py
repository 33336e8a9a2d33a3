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
* :mod:`jaxadv.app` -- configurations, checkpoints, files, figures, sweeps, verify, the CLI.

:mod:`jaxadv.attacks` attacks any JAX model (FGM, PGD/BIM under L1, L2, L-infinity, targeted);
:mod:`jaxadv.analysis.mnist` and :mod:`jaxadv.app.mnist` (``jaxadv mnist``) run the talk's MNIST
experiment with them.

Utilities: :mod:`jaxadv.threefry` (random bits identical to ``jax.random``),
:mod:`jaxadv.sharding` (batches over devices).
"""
__version__ = "0.1.0"

# model: what is simulated
from .model.params import ModelParams, Param, validate_params
from .model.data import sample_example, unit_direction
from .model.losses import LOSSES, QUADRATIC, Loss, force, force_moments, get_loss
from .model.perturbations import ATTACKS, Attack, l2_attack, l2_attack_field, noise_std_for_norm
from .model.eps_laws import EPS_LAWS, EpsLaw
from .model.gates import GATES, Gate
from .model.rule import (DEFAULT_RULE, TrainingRule, check_ode_supported, check_reduced_supported, rule_params,
                         training_rule)
from .model.student import Student, sgd_step, train_step
# Monte Carlo
from .mc.full import Observables, Sampler, SamplerParams, full_sampler
from .mc.reduced import reduced_sampler
from .mc.driver import MCResult, simulate
# ODE
from .ode.rk4 import RK4, ButcherTableau, integrate, rk_step
from .ode.vector_field import drift, vector_field
from .ode.solve import ODEResult, solve_ode
from .ode.fluctuations import FluctuationResult, solve_fluctuations
from .ode.fixed_points import (BestError, FixedPoint, best_robust_error, best_robust_error_closed, best_test_error,
                               fixed_point, newton_fixed_point)
# analysis
from .analysis.measures import robust_error, test_error
from .analysis.threat import THREATS, robust_error_threat
from .analysis.compare import compare, mc_summary, mean_sem, ode_table
from .analysis.defences import DEFENCES, compare_defences
# application
from .app.config import PRESETS, RunConfig, load_config
from .app.checkpoint import simulate_resumable
from .app.plots import plot_defences
from .app.sweep import SweepConfig, SweepResult, load_sweep, load_sweep_config, make_sweep_config, sweep
from .app.sweep_plots import plot_sweep_heatmaps, plot_tradeoff
from .sharding import batch_mesh, shard_batch
# attacks on any JAX model, and the MNIST experiment (library and command)
from . import attacks
from .analysis import mnist
from .app import mnist as mnist_app

__all__ = [
    "__version__",
    # model
    "ModelParams", "Param", "validate_params", "sample_example", "unit_direction", "Loss", "QUADRATIC", "LOSSES",
    "get_loss", "force", "force_moments", "Attack", "ATTACKS", "l2_attack", "l2_attack_field", "noise_std_for_norm",
    "EpsLaw", "EPS_LAWS", "Gate", "GATES", "TrainingRule", "DEFAULT_RULE", "training_rule", "rule_params",
    "check_ode_supported", "check_reduced_supported", "Student", "sgd_step", "train_step",
    # Monte Carlo
    "Sampler", "SamplerParams", "Observables", "full_sampler", "reduced_sampler", "MCResult", "simulate",
    # ODE
    "ButcherTableau", "RK4", "rk_step", "integrate", "drift", "vector_field", "ODEResult", "solve_ode",
    "FluctuationResult", "solve_fluctuations", "FixedPoint", "BestError", "fixed_point", "newton_fixed_point",
    "best_test_error", "best_robust_error", "best_robust_error_closed",
    # analysis
    "test_error", "robust_error", "THREATS", "robust_error_threat", "mean_sem", "mc_summary", "ode_table", "compare",
    "DEFENCES", "compare_defences",
    # application
    "RunConfig", "PRESETS", "load_config", "simulate_resumable", "plot_defences", "SweepConfig", "SweepResult",
    "make_sweep_config", "load_sweep_config", "sweep", "load_sweep", "plot_sweep_heatmaps", "plot_tradeoff",
    "batch_mesh", "shard_batch", "attacks", "mnist", "mnist_app",
]
