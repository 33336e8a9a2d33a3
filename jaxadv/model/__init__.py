"""What is simulated: model parameters, the two-cluster data, losses and the training rule.

A training rule (:mod:`jaxadv.model.rule`) is made of records with faces: a loss
(:mod:`~jaxadv.model.losses`), an attack (:mod:`~jaxadv.model.perturbations`), an eps law
(:mod:`~jaxadv.model.eps_laws`) and a gate (:mod:`~jaxadv.model.gates`); :mod:`~jaxadv.model.student`
applies it to the student. The public names are re-exported by :mod:`jaxadv`.
"""
