"""The large-N theory: Gaussian quadrature, the vector field of the order parameters, RK4, the
solver for grids, finite-N fluctuations and fixed points.

:mod:`~jaxadv.ode.quadrature`, :mod:`~jaxadv.ode.vector_field`, :mod:`~jaxadv.ode.rk4`,
:mod:`~jaxadv.ode.solve`, :mod:`~jaxadv.ode.fluctuations`, :mod:`~jaxadv.ode.fixed_points`. The
public names are re-exported by :mod:`jaxadv` (this package imports nothing itself: the model
layer uses its quadrature).
"""
