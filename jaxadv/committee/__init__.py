"""Two-layer committee machines under adversarial training (issue 11).

Modules, one concept each:

* :mod:`jaxadv.committee.params` -- :class:`Mixture` data, :class:`CommitteeParams` (swept),
  :class:`CommitteeSpec` (static) and their validation
* :mod:`jaxadv.committee.fields` -- the committee, its loss and the L2 attacks in field space
* :mod:`jaxadv.committee.quadrature` -- K-dimensional Gaussian averages and their error control
* :mod:`jaxadv.committee.ode` -- the large-N ODEs of :math:`(Q, R, b, v)`
* :mod:`jaxadv.committee.montecarlo` -- N-dimensional simulation of many replicas
* :mod:`jaxadv.committee.measures` -- clean and eps-robust errors, robustness curves
* :mod:`jaxadv.committee.lipschitz` -- the Lipschitz bound and Lipschitz-normalised training
* :mod:`jaxadv.committee.certified` -- certified errors (Lipschitz and interval bounds) beside PGD
"""

from .attacks import attack_coefficients
from .certified import CERTIFICATES, certified_error, example_errors, sampled_errors
from .fields import (
    Geometry,
    committee_output,
    fgm,
    forces,
    geometry,
    loss_value,
    min_margin,
    pgd,
    worst_case,
)
from .lipschitz import lipschitz_bound, project_state, project_weights
from .measures import clean_error, columns, robust_error, robustness_curve
from .montecarlo import CommitteeMCResult, committee_sampler, simulate_committee
from .ode import (
    Averages,
    CommitteeODEResult,
    CommitteeState,
    QuadratureReport,
    averages,
    committee_drift,
    solve_committee_ode,
)
from .params import (
    ATTACKS,
    COMMITTEE_LOSSES,
    CommitteeParams,
    CommitteeSpec,
    Mixture,
    from_dicts,
    mixture_from_vectors,
    two_cluster,
    validate_mixture,
    validate_params,
    validate_spec,
    xor,
)
from .quadrature import DEFAULT_RULE, DEFAULT_TOL, GaussRule, gaussian_mean, rule_ladder, tensor_nodes

__all__ = [
    "ATTACKS",
    "COMMITTEE_LOSSES",
    "CommitteeParams",
    "CommitteeSpec",
    "Mixture",
    "mixture_from_vectors",
    "two_cluster",
    "xor",
    "validate_mixture",
    "validate_params",
    "validate_spec",
    "Geometry",
    "geometry",
    "committee_output",
    "loss_value",
    "forces",
    "fgm",
    "pgd",
    "worst_case",
    "min_margin",
    "attack_coefficients",
    "GaussRule",
    "DEFAULT_RULE",
    "DEFAULT_TOL",
    "rule_ladder",
    "gaussian_mean",
    "tensor_nodes",
    "CommitteeState",
    "CommitteeODEResult",
    "QuadratureReport",
    "Averages",
    "averages",
    "committee_drift",
    "solve_committee_ode",
    "CommitteeMCResult",
    "committee_sampler",
    "simulate_committee",
    "clean_error",
    "robust_error",
    "robustness_curve",
    "columns",
    "from_dicts",
    "lipschitz_bound",
    "project_state",
    "project_weights",
    "CERTIFICATES",
    "certified_error",
    "example_errors",
    "sampled_errors",
]
