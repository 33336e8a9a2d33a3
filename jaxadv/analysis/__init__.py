"""Analysis: error measures under each threat model, MC-vs-ODE comparisons and defences.

:mod:`~jaxadv.analysis.measures`, :mod:`~jaxadv.analysis.threat`, :mod:`~jaxadv.analysis.compare`,
:mod:`~jaxadv.analysis.defences`.
"""
