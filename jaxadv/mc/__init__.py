"""The Monte Carlo: public ``(init, step)`` samplers and the pure driver.

:mod:`~jaxadv.mc.full` (N-dimensional), :mod:`~jaxadv.mc.reduced` (the exact O(1) chain of
(R, b)) and :mod:`~jaxadv.mc.driver` (:func:`jaxadv.simulate`). The public names are
re-exported by :mod:`jaxadv`.
"""
