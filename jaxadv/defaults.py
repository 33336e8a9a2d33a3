"""One default per concept, shared by the Python API, the configurations of every student (the unit,
the committee, the surrogate/target pair) and the CLI.

* :data:`N` -- input dimension of the Monte Carlo.
* :data:`N_SAVE` -- save intervals of a trajectory (``n_save + 1`` points): Monte Carlo, ODE,
  fluctuations, sweeps, verify, defences.
* :data:`DT` -- largest fixed RK4 step of the ODE (runs, sweeps, fluctuations, defences); the
  adaptive step (``rtol=...``) starts from it.
* :data:`ALPHA_MAX` -- horizon of a run, :data:`REPLICAS` -- Monte Carlo replicas, :data:`SEED` -- the
  seed of ``jax.random.key``.

A preset that needs other values sets them itself (``jaxadv presets`` lists them).
"""

N = 1000
N_SAVE = 50
DT = 0.05
ALPHA_MAX = 100.0
REPLICAS = 64
SEED = 0

__all__ = ["N", "N_SAVE", "DT", "ALPHA_MAX", "REPLICAS", "SEED"]
