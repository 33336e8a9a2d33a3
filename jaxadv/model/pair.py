r"""Two students at once: a surrogate :math:`s` and a target :math:`t`, and how their streams relate.

Each student takes the single-student step (:func:`jaxadv.model.student.sgd_step`) with its own
learning rates, attack radius and training rule. The three stream modes:

* ``"independent"``: each student draws its own example every step;
* ``"same"``: one example :math:`(\xi,\tau)` a step, both students update on it;
* ``"blackbox"``: one example a step; the surrogate trains on the target's clean prediction
  :math:`\hat y=\operatorname{sign}(w_t\cdot\xi-b_t)` (taken before the target's own update) instead of
  :math:`\tau`; the target keeps training on :math:`\tau`, or is frozen with ``eta_w = eta_b = 0``.

The attack in each student's training uses that student's training label. Order parameters:
:math:`R_s=w_s\cdot B`, :math:`R_t=w_t\cdot B`, :math:`Q=w_s\cdot w_t`, :math:`b_s`, :math:`b_t`
(``docs/theory.md``, section 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .. import threefry
from ..typing import Real
from ..validation import check_value
from .data import sample_example
from .params import ModelParams, validate_params
from .rule import DEFAULT_RULE, TrainingRule, validate_rule
from .student import Student, sgd_step

__all__ = ["STREAMS", "DEFAULT_PAIR_SPEC", "PairParams", "PairSpec", "PairState", "pair_params", "pair_step"]

STREAMS = ("independent", "same", "blackbox")
"""Stream modes of a pair (module docstring)."""


class PairSpec(NamedTuple):
    """The static part of a pair (hashable).

    Attributes:
        stream: one of :data:`STREAMS`.
        rule_s, rule_t: the surrogate's and the target's :class:`jaxadv.TrainingRule`.
    """

    stream: str = "independent"
    rule_s: TrainingRule = DEFAULT_RULE
    rule_t: TrainingRule = DEFAULT_RULE


DEFAULT_PAIR_SPEC = PairSpec()
"""The default :class:`PairSpec`: independent streams, the default training rule for both students."""


class PairParams(NamedTuple):
    """The traced part of a pair: one :class:`jaxadv.ModelParams` per student (the data fields
    ``prior``, ``rho``, ``v1``, ``v2`` equal; ``eta_w``, ``eta_b``, ``eps`` each student's own) and
    each rule's parameter dict.

    Attributes:
        s, t: the surrogate's and the target's model parameters (scalars).
        rp_s, rp_t: the rules' parameter dicts.
    """

    s: ModelParams
    t: ModelParams
    rp_s: dict = {}
    rp_t: dict = {}


class PairState(NamedTuple):
    """One replica: ``s`` and ``t`` are :class:`jaxadv.Student` (``w`` of shape ``(N,)``, ``b`` of shape ``()``)."""

    s: Student
    t: Student


def pair_params(
    data: ModelParams,
    *,
    eps_s: Real = 0.0,
    eps_t: Real = 0.0,
    eta_w_s: Real | None = None,
    eta_b_s: Real | None = None,
    eta_w_t: Real | None = None,
    eta_b_t: Real | None = None,
    rp_s: dict[str, Any] | None = None,
    rp_t: dict[str, Any] | None = None,
    spec: PairSpec = DEFAULT_PAIR_SPEC,
) -> PairParams:
    """Build and validate :class:`PairParams` from shared data parameters and each student's own values.

    Learning rates default to ``data``'s. The target may be frozen (``eta_w_t = eta_b_t = 0``); every
    other learning rate must be > 0. ``ValueError`` names the parameter and its value.

    Example:
        >>> from jaxadv import ModelParams
        >>> from jaxadv.model.pair import pair_params
        >>> pp = pair_params(ModelParams(), eps_t=0.5)
        >>> float(pp.t.eps), float(pp.s.eps)
        (0.5, 0.0)
    """
    if not isinstance(spec, PairSpec):
        raise ValueError(f"spec={spec!r} must be a jaxadv.model.pair.PairSpec")
    if spec.stream not in STREAMS:
        raise ValueError(f"stream={spec.stream!r} must be one of {list(STREAMS)}")
    validate_params(data)
    pick = lambda v, d: float(d if v is None else v)
    vals = {
        "eps_s": eps_s,
        "eps_t": eps_t,
        "eta_w_s": pick(eta_w_s, data.eta_w),
        "eta_b_s": pick(eta_b_s, data.eta_b),
        "eta_w_t": pick(eta_w_t, data.eta_w),
        "eta_b_t": pick(eta_b_t, data.eta_b),
    }
    for k, v in vals.items():
        if k.startswith("eps"):
            check_value(k, v, lambda x: x >= 0, "must be >= 0")
        elif k.endswith("_s"):
            check_value(k, v, lambda x: x > 0, "must be > 0")
        else:
            check_value(k, v, lambda x: x >= 0, "must be >= 0 (0 freezes the target)")
    validate_rule(spec.rule_s, rp_s)
    validate_rule(spec.rule_t, rp_t)
    s = data._replace(eta_w=vals["eta_w_s"], eta_b=vals["eta_b_s"], eps=float(eps_s))
    t = data._replace(eta_w=vals["eta_w_t"], eta_b=vals["eta_b_t"], eps=float(eps_t))
    from .rule import rule_params

    return PairParams(s, t, rule_params(spec.rule_s, **(rp_s or {})), rule_params(spec.rule_t, **(rp_t or {})))


def pair_step(key: jax.Array, state: PairState, B: jax.Array, pp: PairParams, spec: PairSpec) -> PairState:
    r"""One on-line step of both students (stream mode ``spec.stream``).

    Keys: the example(s) come from ``fold_in(key, 0)`` (``"independent"``: the surrogate's from
    ``fold_in(key, 0)``, the target's from ``fold_in(key, 1)``); the rules' random numbers from
    ``fold_in(key, 2)`` (surrogate) and ``fold_in(key, 3)`` (target).

    Args:
        key: PRNG key of this step.
        state: :class:`PairState`.
        B: cluster axis, shape ``(N,)``.
        pp: :class:`PairParams`.
        spec: :class:`PairSpec` (static).

    Returns:
        The new :class:`PairState`.
    """
    k_s, k_t = threefry.fold_in(key, 2), threefry.fold_in(key, 3)
    xi, tau = sample_example(threefry.fold_in(key, 0), pp.s, B)
    if spec.stream == "independent":
        xi_t, tau_t = sample_example(threefry.fold_in(key, 1), pp.t, B)
        label_s = tau
    else:
        xi_t, tau_t = xi, tau
        if spec.stream == "blackbox":
            label_s = jnp.where(jnp.dot(state.t.w, xi) - state.t.b > 0, 1.0, -1.0).astype(tau.dtype)
        else:
            label_s = tau
    s = sgd_step(state.s, xi, label_s, pp.s, spec.rule_s, pp.rp_s, k_s if spec.rule_s.random else None)
    t = sgd_step(state.t, xi_t, tau_t, pp.t, spec.rule_t, pp.rp_t, k_t if spec.rule_t.random else None)
    return PairState(s, t)


def check_pair_overlaps(R_s: float, R_t: float, Q: float) -> None:
    r"""``ValueError`` unless :math:`(R_s, R_t, Q)` are overlaps of two unit vectors with a unit B
    (the Gram matrix of :math:`B, w_s, w_t` is positive semi-definite)."""
    for name, v in (("R_s", R_s), ("R_t", R_t), ("Q", Q)):
        check_value(name, v, lambda x: -1.0 <= x <= 1.0, "must lie in [-1, 1]")
    gram = np.array([[1.0, R_s, R_t], [R_s, 1.0, Q], [R_t, Q, 1.0]])
    if np.linalg.eigvalsh(gram)[0] < -1e-12:
        raise ValueError(
            f"(R_s, R_t, Q)={(R_s, R_t, Q)!r} are not overlaps of unit vectors (the Gram matrix of "
            "B, w_s, w_t is not positive semi-definite)"
        )


def check_pair_start(R0: Sequence[float], b0: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The validated start ``(R_s, R_t, Q)`` and ``(b_s, b_t)`` of a pair, as float tuples
    (:func:`check_pair_overlaps`; the biases finite); shared by the pair ODE and Monte Carlo."""
    R0, b0 = tuple(float(x) for x in R0), tuple(float(x) for x in b0)
    if len(R0) != 3:
        raise ValueError(f"R0={R0!r} must be (R_s, R_t, Q)")
    if len(b0) != 2:
        raise ValueError(f"b0={b0!r} must be (b_s, b_t)")
    check_pair_overlaps(*R0)
    for name, v in zip(("b_s", "b_t"), b0, strict=True):
        check_value(name, v, lambda x: True, "")
    return R0, b0


def pair_as_arrays(pp: PairParams, dtype: DTypeLike) -> PairParams:
    """Every leaf of ``pp`` (both students' model and rule parameters) as a ``jnp`` array of ``dtype``."""
    import jax

    return jax.tree.map(lambda x: jnp.asarray(x, dtype), pp)


__all__ += ["check_pair_overlaps", "check_pair_start", "pair_as_arrays"]
