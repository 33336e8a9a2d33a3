r"""A training rule as data: loss, attack, eps law and gate, with their traced parameters.

One on-line step on the example :math:`(\xi,\tau)` under the rule draws the radius
:math:`\epsilon` from the eps law, perturbs the example with the attack, and updates the
student on :math:`L(w\cdot\tilde\xi-b,\tau)` where the gate is open:

.. math::
    \epsilon\sim\text{eps law},\qquad \tilde\xi = \text{attack}(\xi,\tau,w,\epsilon),\qquad
    g = \text{gate}(w\cdot\xi-b,\tau,\epsilon)\in\{0,1\}.

:class:`TrainingRule` is static (hashable: it selects code, and ``jit`` keys its cache on it);
its floats live in a *rule parameter dict* ``{name: array}`` (:func:`rule_params`), a pytree
of traced leaves, so a grid over them is a ``vmap``, not a recompile. Each part is a record
with faces (:mod:`jaxadv.model.perturbations`, :mod:`jaxadv.model.eps_laws`,
:mod:`jaxadv.model.gates`, :mod:`jaxadv.model.losses`); the engines call the faces:

* the Monte Carlo calls :func:`perturb_example` (draw, perturb, mask);
* the ODE (:mod:`jaxadv.ode.vector_field`) sums the attack's field face over the eps law's nodes,
  truncated by the gate's cut (:func:`check_ode_supported` says when the faces are missing);
* the reduced sampler (:mod:`jaxadv.mc.reduced`) needs the attack's ``along_w`` face
  (:func:`check_reduced_supported`).

``TrainingRule()`` is the talk's rule: quadratic loss, L2 attack at ``params.eps``, every
example used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .. import threefry
from ..schedule import at_knots, cast, is_schedule
from ..validation import check_value
from .eps_laws import FIXED, EpsLaw, get_eps_law
from .gates import ALWAYS, NONROBUST, Gate, get_gate
from .losses import QUADRATIC, Loss, get_loss
from .params import ModelParams, Param
from .perturbations import L2, Attack, get_attack

if TYPE_CHECKING:
    from .student import Student

__all__ = [
    "TrainingRule",
    "DEFAULT_RULE",
    "registered_parts",
    "registered_params",
    "training_rule",
    "rule_params",
    "rule_param_specs",
    "validate_rule",
    "perturb_example",
    "check_ode_supported",
    "check_reduced_supported",
    "describe_rule",
]


class TrainingRule(NamedTuple):
    """The static part of a training rule.

    Attributes:
        loss: :class:`jaxadv.model.losses.Loss` of the pre-activation.
        attack: :class:`jaxadv.model.perturbations.Attack`.
        eps_law: :class:`jaxadv.model.eps_laws.EpsLaw` of the per-example radius.
        gate: :class:`jaxadv.model.gates.Gate`.
        n_eps_nodes: nodes of the ODE's average over a continuous eps law.
    """

    loss: Loss = QUADRATIC
    attack: Attack = L2
    eps_law: EpsLaw = FIXED
    gate: Gate = ALWAYS
    n_eps_nodes: int = 16

    @property
    def random(self) -> bool:
        """The rule draws random numbers beyond the example (a random eps law or attack)."""
        return self.eps_law.random or self.attack.random


DEFAULT_RULE = TrainingRule()


def registered_parts() -> tuple[Loss | Attack | EpsLaw | Gate, ...]:
    """Every registered loss, attack, eps law and gate (read from the registries when called)."""
    from .eps_laws import EPS_LAWS
    from .gates import GATES
    from .losses import LOSSES
    from .perturbations import ATTACKS

    return (*LOSSES.values(), *ATTACKS.values(), *EPS_LAWS.values(), *GATES.values())


def registered_params() -> dict[str, Param]:
    """``{name: Param}`` of every parameter a registered part declares (the first declaration wins)."""
    out: dict[str, Param] = {}
    for part in registered_parts():
        for p in part.params:
            out.setdefault(p.name, p)
    return out


def rule_param_specs(rule: TrainingRule) -> dict[str, Param]:
    """``{name: Param}`` of every traced parameter the rule's parts read."""
    specs = {}
    for part in (rule.loss, rule.attack, rule.eps_law, rule.gate):
        for p in part.params:
            specs[p.name] = p
    return specs


def _values(rule: TrainingRule, given: dict[str, Any]) -> dict[str, Any]:
    specs = rule_param_specs(rule)
    for k in given:
        if k not in specs:
            raise ValueError(
                f"{k}={given[k]!r} is not a parameter of the rule ({describe_rule(rule)}); "
                f"its parameters: {sorted(specs) or 'none'}"
            )
    return {k: given.get(k, p.default) for k, p in specs.items()}


def validate_rule(rule: TrainingRule, values: dict[str, Any] | None = None) -> TrainingRule:
    """Check the rule and its parameter values eagerly; ``ValueError`` names the field and its value."""
    if not isinstance(rule, TrainingRule):
        raise ValueError(f"rule={rule!r} must be a jaxadv.TrainingRule")
    for name, part, kind in (
        ("loss", rule.loss, Loss),
        ("attack", rule.attack, Attack),
        ("eps_dist", rule.eps_law, EpsLaw),
        ("gate", rule.gate, Gate),
    ):
        if not isinstance(part, kind):
            raise ValueError(f"{name}={part!r} must be a jaxadv {kind.__name__} record")
    n = rule.n_eps_nodes
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_eps_nodes={n!r} must be an integer >= 1")
    values = at_knots(_values(rule, {} if values is None else dict(values)))  # a schedule: at its knots
    specs = rule_param_specs(rule)
    for k, v in values.items():
        spec = specs[k]
        ok = spec.check if spec.check is not None else (lambda x: True)
        if spec.vector:
            try:
                arr = np.atleast_1d(np.asarray(v, dtype=float))
            except (TypeError, ValueError):
                raise ValueError(f"{k}={v!r} is not a list of numbers") from None
            for x in arr.ravel():
                check_value(k, float(x), ok, spec.rule)
        else:
            for x in np.atleast_1d(np.asarray(v, dtype=float)).ravel():
                check_value(k, x, ok, spec.rule)
    scalar = [k for k in values if not specs[k].vector]
    shape = np.broadcast_shapes(*(np.shape(values[k]) for k in scalar)) if scalar else ()
    flat = {k: np.broadcast_to(np.asarray(values[k], float), shape).ravel() for k in scalar}
    for i in range(int(np.prod(shape))):
        point = {k: (float(flat[k][i]) if k in flat else v) for k, v in values.items()}
        for part in (rule.attack, rule.eps_law, rule.gate):
            validate = getattr(part, "validate", None)
            if validate is not None:
                validate(point)
    if not rule.attack.uses_eps and rule.eps_law.random and rule.gate.open is None:
        raise ValueError(
            f"eps_dist={rule.eps_law.name!r} has no effect with attack={rule.attack.name!r} (it does "
            f"not use eps); use eps_dist='fixed'"
        )
    return rule


def rule_params(
    rule: TrainingRule = DEFAULT_RULE, dtype: DTypeLike | None = None, *, validate: bool = True, **values: Any
) -> dict[str, jax.Array]:
    """The rule's traced parameters as ``{name: array}`` of ``dtype`` (default: JAX's float).

    Missing values take the parts' defaults; scalars may be arrays of one grid shape; a scalar may be a
    schedule (:mod:`jaxadv.schedule`). Validates eagerly (see :func:`validate_rule`) unless ``validate=False``
    (values that are traced, e.g. under ``jax.grad``: :func:`jaxadv.ode.solve.unit_trajectory`).

    Example:
        >>> from jaxadv.model.rule import training_rule, rule_params
        >>> rule = training_rule(eps_dist="uniform")
        >>> sorted(rule_params(rule, eps_max=2.0))
        ['eps_max', 'eps_min']
    """
    if validate:
        validate_rule(rule, values)
    dtype = jnp.result_type(float) if dtype is None else dtype
    specs = rule_param_specs(rule)
    out = {}
    for k, v in _values(rule, values).items():
        if is_schedule(v):
            if specs[k].vector:
                raise ValueError(f"{k}={v!r}: a list parameter cannot follow a schedule")
            out[k] = cast(v, dtype)
            continue
        a = jnp.asarray(v, dtype)
        out[k] = jnp.atleast_1d(a) if specs[k].vector else a
    return out


def training_rule(
    attack: str | Attack = "l2",
    eps_dist: str | EpsLaw = "fixed",
    gate: str | Gate = "none",
    *,
    nonrobust_only: bool = False,
    loss: str | Loss = "quadratic",
    n_eps_nodes: int = 16,
) -> TrainingRule:
    """A :class:`TrainingRule` from part names (or records), as the configuration keys name them.

    ``nonrobust_only=True`` is ``gate="nonrobust"``.

    Example:
        >>> from jaxadv.model.rule import training_rule
        >>> training_rule("noise").attack.name
        'noise'
    """
    if not isinstance(nonrobust_only, (bool, np.bool_)):
        raise ValueError(f"nonrobust_only={nonrobust_only!r} must be True or False")
    g = get_gate(gate)
    if nonrobust_only:
        if g not in (ALWAYS, NONROBUST):
            raise ValueError(f"nonrobust_only=True contradicts gate={g.name!r}")
        g = NONROBUST
    rule = TrainingRule(
        loss=get_loss(loss), attack=get_attack(attack), eps_law=get_eps_law(eps_dist), gate=g, n_eps_nodes=n_eps_nodes
    )
    if isinstance(n_eps_nodes, bool) or not isinstance(n_eps_nodes, (int, np.integer)) or n_eps_nodes < 1:
        raise ValueError(f"n_eps_nodes={n_eps_nodes!r} must be an integer >= 1")
    return rule


def describe_rule(rule: TrainingRule) -> str:
    """``"loss='quadratic', attack='l2', eps_dist='fixed', gate='none'"`` (for messages and fingerprints)."""
    return (
        f"loss={rule.loss.name!r}, attack={rule.attack.name!r}, eps_dist={rule.eps_law.name!r}, gate={rule.gate.name!r}"
    )


# --- the Monte Carlo face of the whole rule ---------------------------------------------------


def perturb_example(
    key: jax.Array | None,
    student: Student,
    xi: jax.Array,
    tau: float | jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    r"""The perturbed example and the gate of one training step.

    Returns:
        ``(xi_adv, gate)``: the perturbed input and :math:`g` (``None`` when the gate is always
        open). The radius is drawn (:attr:`EpsLaw.draw`) with ``fold_in(key, 0)``, the attack's
        random numbers use ``fold_in(key, 1)``; a rule without randomness uses no key.
    """
    rp = {} if rp is None else rp
    if rule.random and key is None:
        raise ValueError(
            f"key=None: attack={rule.attack.name!r} with eps_dist={rule.eps_law.name!r} draws "
            "random numbers; pass a PRNG key"
        )
    k_eps = threefry.fold_in(key, 0) if rule.eps_law.random and key is not None else None
    k_att = threefry.fold_in(key, 1) if rule.attack.random and key is not None else None
    eps = rule.eps_law.draw(k_eps, params.eps, rp, xi.dtype)
    xi_adv = rule.attack.perturb(k_att, xi, tau, student.w, eps, rp)
    gate = None
    if rule.gate.open is not None:
        gate = rule.gate.open(jnp.dot(student.w, xi) - student.b, tau, eps)
    return xi_adv, gate


# --- what each engine can represent, from the faces --------------------------------------------


def check_ode_supported(rule: TrainingRule) -> None:
    """Raise ``ValueError`` when the large-N ODE in :math:`(R, b)` lacks a face the rule needs."""
    if rule.attack.field is None:
        raise ValueError(
            f"attack={rule.attack.name!r} has no ODE in (R, b): {rule.attack.no_ode or 'no field face'}; "
            "use the Monte Carlo (jaxadv.simulate)"
        )
    if rule.eps_law.nodes is None:
        raise ValueError(f"eps_dist={rule.eps_law.name!r} has no ODE (no nodes face); use the Monte Carlo")
    if rule.gate.open is not None:
        if rule.gate.margin_cut is None:
            raise ValueError(f"gate={rule.gate.name!r} has no ODE (no truncation face); use the Monte Carlo")
        if rule.attack.random:
            raise ValueError(
                f"attack={rule.attack.name!r} with nonrobust_only=True has no ODE (gate={rule.gate.name!r}: "
                "the gate acts on the clean field, the update on the noisy one); use the "
                "Monte Carlo"
            )


def check_reduced_supported(rule: TrainingRule) -> None:
    """Raise ``ValueError`` when the exact reduced sampler cannot represent the rule: its attack
    must act along ``w`` (the ``along_w`` face), which keeps the rotation symmetry.

    Example:
        >>> from jaxadv.model.rule import check_reduced_supported, training_rule
        >>> check_reduced_supported(training_rule("l2"))
        >>> check_reduced_supported(training_rule("linf"))
        Traceback (most recent call last):
        ...
        ValueError: sampler='reduced' cannot represent attack='linf': only attacks along w (l2) keep the rotation
        symmetry; use sampler='full'
    """
    if rule.attack.along_w is None:
        from .perturbations import ATTACKS

        ok = ", ".join(a.name for a in ATTACKS.values() if a.along_w is not None)
        raise ValueError(
            f"sampler='reduced' cannot represent attack={rule.attack.name!r}: only attacks along w "
            f"({ok}) keep the rotation symmetry; use sampler='full'"
        )
