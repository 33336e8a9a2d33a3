r"""The committee's training attacks as records: FGM, PGD, the worst case and none.

A committee :math:`\sigma=\sum_kv_k\operatorname{erf}(w_k\cdot\xi-b_k)` is attacked in the L2 ball of
radius :math:`\epsilon` through the gradient of its loss (:mod:`jaxadv.model.losses`; the attacks ascend
:func:`jaxadv.model.losses.ascent_value`, the loss itself except for the hinge, which hands them its margin
:math:`c-\tau\sigma`). A :class:`CommitteeAttack` carries the two faces the committee's engines call:

* the **Monte Carlo face** ``perturb(key, state, xi, tau, eps, spec, loss, rp) -> delta``: the perturbation
  of the N-dimensional example, shape ``(N,)`` (``state`` a
  :class:`jaxadv.committee.montecarlo.CommitteeMC`; ``key`` used only when ``random``);
* the **field-space face** ``coefficients(x, geom, v, tau, eps, spec, loss, rp) -> gamma``: the same attack
  as the coefficients :math:`\gamma` of :math:`\delta=W^\top\gamma` (the fields move by :math:`Q\gamma`), for
  one field ``x`` of shape ``(K,)`` or ``n`` fields ``(K, n)`` (:mod:`jaxadv.committee.fields`), which the ODE
  averages over the Gaussian law of the fields.

``loss`` is a :class:`jaxadv.model.losses.Loss` record and ``rp`` the rule's parameter dict
(:func:`jaxadv.committee.params.rule_params`). The tests check that both faces of every record agree
(``tests/test_committee.py``, ``tests/test_committee_records.py``). :func:`committee_attack` is the one
place where the name ``CommitteeSpec.attack`` (a string, so configurations keep their keys) becomes the
record; no engine compares names. A new committee attack is one record here, in
:data:`COMMITTEE_ATTACKS`, and its test.

Why a module of its own rather than more faces on :class:`jaxadv.model.perturbations.Attack`: the unit's
attacks are fixed moves of a linear field (:math:`\tilde\xi=\xi-\tau\epsilon w` and the like, independent of
the loss) and its registry :data:`jaxadv.model.perturbations.ATTACKS` is what the unit's configuration, the
threat models (:mod:`jaxadv.analysis.threat`) and the rule validation read; the committee's attacks are
gradient attacks on a K-field student that depend on the loss and on the committee's state, with names
(``fgm``, ``pgd``, ``worst``) that are no unit attack. Registering them there would make
``attack="worst"`` a unit configuration with no unit face and add threat models that do not exist. The
record pattern (a NamedTuple of faces, a registry, one lookup with an error naming ``attack``) is the same.

=========  =====================================================================  ==========================
name       Monte Carlo face                                                       field-space face (fields)
=========  =====================================================================  ==========================
``fgm``    :math:`\epsilon\,\nabla_\xi A/\|\nabla_\xi A\|` (0 where it vanishes)  :func:`.fields.fgm`
``pgd``    ``pgd_steps`` normalised steps of ``pgd_step``, projected on the       :func:`.fields.pgd`
           ball, from 0 or a uniform point of the ball
``worst``  :math:`W^\top\gamma` of the field-space worst case                     :func:`.fields.worst_case`
``none``   0                                                                      0
=========  =====================================================================  ==========================

(:math:`A` the function the attacks ascend, :func:`jaxadv.model.losses.ascent_value` of :math:`\sigma`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from ..model.losses import Loss, ascent_value
from ..sharding import one_at_a_time
from .fields import Geometry, _loss_record, committee_output, fgm, geometry, pgd, worst_case

if TYPE_CHECKING:
    from .params import CommitteeSpec

__all__ = [
    "CommitteeAttack",
    "FGM",
    "PGD",
    "WORST",
    "NONE",
    "COMMITTEE_ATTACKS",
    "committee_attack",
    "attack_coefficients",
]


class CommitteeAttack(NamedTuple):
    """A training attack of the committee (see the module docstring for the faces).

    Attributes:
        name: registry name (``CommitteeSpec.attack``).
        perturb: Monte Carlo face ``perturb(key, state, xi, tau, eps, spec, loss, rp) -> delta`` ``(N,)``.
        coefficients: field-space face ``coefficients(x, geom, v, tau, eps, spec, loss, rp) -> gamma`` (shape of ``x``).
        random: ``perturb`` may draw random numbers (PGD's random start).
    """

    name: str
    perturb: Callable
    coefficients: Callable
    random: bool = False


# LAPACK one matrix at a time under the driver's vmap: batched, it deadlocks a run split over host
# devices (jaxadv.sharding.one_at_a_time)
_geometry = one_at_a_time(lambda Q: geometry(Q))


def _ascent(state: Any, xi: jax.Array, tau: Any, loss: Loss, rp: dict | None) -> jax.Array:
    """The function the attacks ascend at the N-dimensional input ``xi``."""
    return ascent_value(loss, committee_output(state.W @ xi - state.b, state.v), tau, rp)


def _unit(g: jax.Array) -> jax.Array:
    n = jnp.linalg.norm(g)
    return jnp.where(n > 0, g / jnp.where(n > 0, n, 1.0), 0.0)


def _each_field(one: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``one`` on one field ``(K,)`` or on each column of ``(K, n)``."""
    return one(x) if x.ndim == 1 else jax.vmap(one, in_axes=1, out_axes=1)(x)


# --- FGM -------------------------------------------------------------------------------------------


def _fgm_perturb(key, state, xi, tau, eps, spec, loss, rp):
    return eps * _unit(jax.grad(lambda z: _ascent(state, z, tau, loss, rp))(xi))


def _fgm_coefficients(x, geom: Geometry, v, tau, eps, spec, loss, rp):
    return fgm(x, geom, v, tau, eps, loss, rp)


FGM = CommitteeAttack("fgm", _fgm_perturb, _fgm_coefficients)


# --- PGD -------------------------------------------------------------------------------------------


def _pgd_perturb(key, state, xi, tau, eps, spec, loss, rp):
    grad_xi = jax.grad(lambda z: _ascent(state, z, tau, loss, rp))
    N = xi.shape[0]
    if spec.pgd_random_start:
        k_dir, k_rad = jax.random.split(key)
        r = eps * jax.random.uniform(k_rad, (), xi.dtype) ** (1.0 / N)
        delta0 = r * _unit(jax.random.normal(k_dir, xi.shape, xi.dtype))
    else:
        delta0 = jnp.zeros_like(xi)

    def body(_, delta):
        delta = delta + spec.pgd_step * _unit(grad_xi(xi + delta))
        n = jnp.linalg.norm(delta)
        return delta * jnp.where(n > eps, eps / jnp.where(n > eps, n, 1.0), 1.0)

    return jax.lax.fori_loop(0, spec.pgd_steps, body, delta0)


def _pgd_coefficients(x, geom, v, tau, eps, spec, loss, rp):
    perp0 = eps if spec.pgd_random_start else 0.0
    return _each_field(lambda xx: pgd(xx, geom, v, tau, eps, spec.pgd_steps, spec.pgd_step, loss, perp0, rp), x)


PGD = CommitteeAttack("pgd", _pgd_perturb, _pgd_coefficients, random=True)


# --- the worst case --------------------------------------------------------------------------------


def _worst_perturb(key, state, xi, tau, eps, spec, loss, rp):
    x = state.W @ xi - state.b
    gamma = worst_case(x, _geometry(state.W @ state.W.T), state.v, tau, eps, loss, rp=rp)
    return state.W.T @ gamma


def _worst_coefficients(x, geom, v, tau, eps, spec, loss, rp):
    return _each_field(lambda xx: worst_case(xx, geom, v, tau, eps, loss, rp=rp), x)


WORST = CommitteeAttack("worst", _worst_perturb, _worst_coefficients)


# --- no attack -------------------------------------------------------------------------------------

NONE = CommitteeAttack(
    "none",
    lambda key, state, xi, tau, eps, spec, loss, rp: jnp.zeros_like(xi),
    lambda x, geom, v, tau, eps, spec, loss, rp: jnp.zeros_like(x),
)

COMMITTEE_ATTACKS = {a.name: a for a in (FGM, PGD, WORST, NONE)}


def committee_attack(name_or_attack: str | CommitteeAttack | CommitteeSpec) -> CommitteeAttack:
    """The record of a committee attack: by name, from a :class:`~jaxadv.committee.params.CommitteeSpec`
    (its ``attack``), or a record passed through. The one place where the name becomes the record.

    Raises:
        ValueError: naming ``attack`` and echoing its value when the name is unknown.
    """
    if isinstance(name_or_attack, CommitteeAttack):
        return name_or_attack
    name: Any = getattr(name_or_attack, "attack", name_or_attack)
    try:
        return COMMITTEE_ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"attack={name!r} must be one of {tuple(COMMITTEE_ATTACKS)}") from None


def attack_coefficients(
    x: jax.Array,
    geom: Geometry,
    v: jax.Array,
    tau: float | jax.Array,
    eps: float | jax.Array,
    spec: CommitteeSpec,
    rp: dict | None = None,
) -> jax.Array:
    r"""The training attack of ``spec`` (:class:`~jaxadv.committee.params.CommitteeSpec`) in field space:
    :math:`\gamma` with :math:`\delta=W^\top\gamma`, the field-space face of its record
    (:func:`jaxadv.committee.attacks.committee_attack`); ``"none"`` gives 0. ``x``: one field ``(K,)`` or ``n``
    fields ``(K, n)``; FGM works on the whole array, PGD and the worst case field by field (``vmap``).
    ``rp``: the rule's parameters (:func:`jaxadv.committee.params.rule_params`)."""
    return committee_attack(spec).coefficients(x, geom, v, tau, eps, spec, _loss_record(spec.loss), rp)
