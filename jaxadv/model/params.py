"""Model parameters of the prototype model and their validation.

The floats a user sweeps (priors, separations, variances, learning rates and
the attack strength) live in :class:`ModelParams`, a NamedTuple whose leaves
are traced by ``jit`` and batched by ``vmap``: a grid over them is a ``vmap``,
not a recompile. Shapes and control flow (``N``, step counts, the loss) are
static and are passed separately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from jax.typing import DTypeLike

from ..schedule import cast, is_schedule, schedule_values
from ..typing import Real
from ..validation import check_value

__all__ = ["ModelParams", "Param", "PARAM_RULES", "SCHEDULABLE", "validate_params", "as_array_params"]


class ModelParams(NamedTuple):
    r"""Parameters of data, attack and learning rule (all scalars, or equal-shape batches).

    Data: with probability ``prior`` :math:`=p` an example has label
    :math:`\tau=+1` and :math:`\xi\sim\mathcal N(+\tfrac{\rho}{2}B, v_1 I)`,
    otherwise :math:`\tau=-1` and :math:`\xi\sim\mathcal N(-\tfrac{\rho}{2}B, v_2 I)`.

    Attributes:
        prior: :math:`p\in(0,1)`, probability of cluster 1 (label +1).
        rho: :math:`\rho\ge 0`, distance between the cluster centres.
        v1: :math:`v_1>0`, per-component variance of cluster 1.
        v2: :math:`v_2>0`, per-component variance of cluster 2.
        eta_w: :math:`\eta_w>0`, learning rate of the weights (step :math:`\eta_w/N`).
        eta_b: :math:`\eta_b>0`, learning rate of the bias (step :math:`\eta_b/N`).
        eps: :math:`\epsilon\ge 0`, L2 radius of the training attack (0: standard training).
    """

    prior: Real = 0.5
    rho: Real = 2.0
    v1: Real = 1.0
    v2: Real = 1.0
    eta_w: Real = 0.04
    eta_b: Real = 0.2
    eps: Real = 1.0


#: The fields of :class:`ModelParams` that may follow a schedule in alpha (:mod:`jaxadv.schedule`): the
#: training rule's; the data's are fixed.
SCHEDULABLE = ("eta_w", "eta_b", "eps")

#: The valid range of each field of :class:`ModelParams`: ``{name: (predicate, description)}``.
PARAM_RULES = {
    "prior": (lambda x: (x > 0.0) & (x < 1.0), "must lie in the open interval (0, 1)"),
    "rho": (lambda x: x >= 0.0, "must be >= 0"),
    "v1": (lambda x: x > 0.0, "must be > 0"),
    "v2": (lambda x: x > 0.0, "must be > 0"),
    "eta_w": (lambda x: x > 0.0, "must be > 0"),
    "eta_b": (lambda x: x > 0.0, "must be > 0"),
    "eps": (lambda x: x >= 0.0, "must be >= 0"),
}


def validate_params(params: ModelParams) -> ModelParams:
    """Check every field of ``params`` (scalars or arrays) and return it unchanged.

    Raises:
        ValueError: naming the first offending parameter and its value.
    """
    import numpy as np

    for name, (ok, rule) in PARAM_RULES.items():
        if is_schedule(getattr(params, name)) and name not in SCHEDULABLE:
            raise ValueError(
                f"{name}={getattr(params, name)!r}: only the training rule's parameters may follow a schedule "
                f"({', '.join(SCHEDULABLE)}), not the data's"
            )
        try:
            values = schedule_values(getattr(params, name))
        except (TypeError, ValueError):
            check_value(name, getattr(params, name), ok, rule)
            raise
        with np.errstate(invalid="ignore"):
            good = np.isfinite(values) & ok(values)
        if not np.all(good):
            check_value(name, values[np.argmin(good)], ok, rule)
    return params


def as_array_params(params: ModelParams, dtype: DTypeLike) -> ModelParams:
    """Cast every leaf to a ``jnp`` array of ``dtype`` (one jit signature for all values; a schedule's
    values, :func:`jaxadv.schedule.cast`)."""
    return ModelParams(*(cast(x, dtype) for x in params))


class Param(NamedTuple):
    r"""A traced float of a training-rule part (an attack, an eps law or a gate).

    Each part declares the parameters it reads; :func:`jaxadv.model.rule.rule_params` collects
    them into the rule's parameter dict, the configuration accepts each as a key, and sweeps
    may put the scalar ones on a grid axis.

    Attributes:
        name: key in the rule's parameter dict and in configurations.
        default: value when not given (a float, or a tuple for ``vector`` parameters).
        check: ``check(x) -> bool`` for one value, or ``None`` for any finite value.
        rule: what ``check`` demands, for the error message (e.g. ``"must be >= 0"``).
        vector: a 1-d array (e.g. the support of a discrete law) rather than a scalar.
    """

    name: str
    default: float | tuple[float, ...] = 0.0
    check: Callable[[float], Any] | None = None
    rule: str = ""
    vector: bool = False
