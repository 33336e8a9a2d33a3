"""One default per concept, shared by the Python API, the configurations and the CLI.

* :data:`N_SAVE` -- save intervals of a trajectory (``n_save + 1`` points): Monte Carlo, ODE,
  fluctuations, sweeps, verify, defences.
* :data:`DT` -- largest fixed RK4 step of the ODE (runs, sweeps, fluctuations, defences); the
  adaptive step (``rtol=...``) starts from it.
* :data:`ALPHA_MAX` -- horizon of a run, :data:`REPLICAS` -- Monte Carlo replicas.
"""

N_SAVE = 50
DT = 0.05
ALPHA_MAX = 100.0
REPLICAS = 64

__all__ = ["N_SAVE", "DT", "ALPHA_MAX", "REPLICAS"]
