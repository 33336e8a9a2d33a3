"""The large-N theory: the vector field of the order parameters, RK4, the solver for grids and
finite-N fluctuations.

:mod:`~jaxadv.ode.vector_field`, :mod:`~jaxadv.ode.rk4`, :mod:`~jaxadv.ode.solve`,
:mod:`~jaxadv.ode.fluctuations`, :mod:`~jaxadv.ode.pair`. The public names are re-exported by
:mod:`jaxadv` (this package imports nothing itself). The Gaussian quadrature the records' ODE faces
use is the base module :mod:`jaxadv.quadrature`; fixed points and best errors are analysis
(:mod:`jaxadv.analysis.fixed_points`).
"""
