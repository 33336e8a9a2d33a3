"""jaxadv: adversarial training in the prototype model, by Monte Carlo and large-N ODEs.

Modules, one concept each:

* :mod:`jaxadv.params` -- :class:`ModelParams` and validation
* :mod:`jaxadv.data` -- the two-cluster data model
* :mod:`jaxadv.attack` -- the worst-case L2 perturbation
* :mod:`jaxadv.losses` -- losses of the pre-activation and their Gaussian moments
* :mod:`jaxadv.learning` -- the on-line SGD step (optax)
* :mod:`jaxadv.montecarlo` -- N-dimensional simulation of many replicas
* :mod:`jaxadv.reduced` -- the exact O(1)-per-step sampler of (R, b) (``simulate(sampler="reduced")``)
* :mod:`jaxadv.fluctuations` -- finite-N spread and mean shift around the ODE (linear noise)
* :mod:`jaxadv.verify` -- ``jaxadv verify``: MC over a ladder of N against the theory
* :mod:`jaxadv.gaussian` -- Gaussian averages by quadrature
* :mod:`jaxadv.rk4` -- fixed-step Runge--Kutta integration
* :mod:`jaxadv.ode` -- the order-parameter ODEs
* :mod:`jaxadv.measures` -- test and robust errors
* :mod:`jaxadv.variants` -- training variants and threat models (randomised eps, non-robust-only,
  noise augmentation, L-infinity and L1 attacks)
* :mod:`jaxadv.threat` -- robust errors under the L2, L-infinity and L1 threat models
* :mod:`jaxadv.defences` -- comparison of defences (``jaxadv compare-defences``)
* :mod:`jaxadv.fixed_points` -- fixed points of the ODEs and best achievable errors
* :mod:`jaxadv.sweep` -- resumable parameter sweeps; :mod:`jaxadv.sweep_plots` -- their figures
* :mod:`jaxadv.sharding` -- replicas and grid points split over all devices
* :mod:`jaxadv.compare` -- MC summaries and MC-vs-ODE deviations
* :mod:`jaxadv.config`, :mod:`jaxadv.run`, :mod:`jaxadv.cli` -- configurations and the command line
"""
__version__ = "0.1.0"

from .attack import l2_attack, l2_attack_field
from .compare import compare, mc_summary, mean_sem, ode_table
from .config import PRESETS, RunConfig, load_config
from .data import sample_example, unit_direction
from .learning import Student, sgd_step
from .losses import LOSSES, QUADRATIC, Loss, force, force_moments, get_loss
from .measures import robust_error, test_error
from .montecarlo import MCResult, simulate
from .ode import ODEResult, drift, solve_ode
from .fixed_points import (BestError, FixedPoint, best_robust_error, best_robust_error_closed, best_test_error,
                           fixed_point, newton_fixed_point)
from .sharding import batch_mesh, shard_batch
from .sweep import SweepConfig, SweepResult, load_sweep, load_sweep_config, make_sweep_config, sweep
from .sweep_plots import plot_sweep_heatmaps, plot_tradeoff
from .fluctuations import FluctuationResult, solve_fluctuations
from .reduced import check_reduced_supported
from .params import ModelParams, validate_params
from .rk4 import RK4, ButcherTableau, integrate, rk_step
from .variants import TrainingOptions, noise_std_for_norm, requires_full_state
from .threat import robust_error_threat
from .defences import DEFENCES, compare_defences, plot_defences

__all__ = [
    "__version__", "ModelParams", "validate_params", "sample_example", "unit_direction", "l2_attack",
    "l2_attack_field", "Loss", "QUADRATIC", "LOSSES", "get_loss", "force", "force_moments", "Student",
    "sgd_step", "MCResult", "simulate", "ODEResult", "drift", "solve_ode", "ButcherTableau", "RK4",
    "rk_step", "integrate", "test_error", "robust_error", "mean_sem", "mc_summary", "ode_table", "compare",
    "RunConfig", "PRESETS", "load_config", "TrainingOptions", "requires_full_state", "noise_std_for_norm",
    "robust_error_threat", "DEFENCES", "compare_defences", "plot_defences",
    "FixedPoint", "BestError", "fixed_point", "newton_fixed_point", "best_test_error", "best_robust_error",
    "best_robust_error_closed", "batch_mesh", "shard_batch", "SweepConfig", "SweepResult", "make_sweep_config",
    "load_sweep_config", "sweep", "load_sweep", "plot_sweep_heatmaps", "plot_tradeoff",
    "FluctuationResult", "solve_fluctuations", "check_reduced_supported",
]
