"""Analysis: error measures under each threat model, MC-vs-ODE comparisons and defences.

:mod:`~jaxadv.analysis.measures`, :mod:`~jaxadv.analysis.threat`, :mod:`~jaxadv.analysis.compare`,
:mod:`~jaxadv.analysis.defences`, :mod:`~jaxadv.analysis.fixed_points` (fixed points of the ODE and the
best errors).
"""
