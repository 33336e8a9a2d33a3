r"""The large-N vector field of the order parameters :math:`y=(R, b)` under a training rule.

With :math:`\alpha=\mu/N`, :math:`\delta(\tilde x,\tau) = -\partial L/\partial\tilde x` the force
of the loss and weights :math:`p_{+1}=p`, :math:`p_{-1}=1-p` (derivation in ``docs/theory.md``):

.. math::
    \frac{dR}{d\alpha} = \eta_w\,(1-R^2)\,\frac{\rho}{2}\sum_\tau p_\tau\,\tau\,d_1^\tau
        \;-\;\frac{\eta_w^2}{2}\,R\sum_\tau p_\tau\, v^\text{eff}_\tau\,d_2^\tau ,\qquad
    \frac{db}{d\alpha} = -\eta_b\sum_\tau p_\tau\,d_1^\tau ,

with the per-cluster averages over the rule's faces (:func:`field_moments`)

.. math::
    d_k^\tau = \sum_j \pi_j\,\big\langle g\,\delta(x + s_\tau(\epsilon_j) + \sqrt{e_\tau}\,n,\ \tau)^k\big\rangle,
    \qquad x\mid\tau\sim\mathcal N(\tau\tfrac{\rho}{2}R - b,\ v_\tau),

where :math:`(\epsilon_j,\pi_j)` are the eps law's nodes, :math:`(s_\tau, e_\tau)` the attack's field
face (shift and extra variance; :math:`v^\text{eff}_\tau = v_\tau + e_\tau`) and :math:`g` the gate,
open where the clean margin :math:`\tau x` is below its cut. :func:`vector_field` is the one
``f(t, y, args)`` that RK4, Newton and the fluctuation theory use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..model.data import cluster_table, field_mean
from ..model.losses import force, force_moments
from ..model.params import ModelParams
from ..model.rule import DEFAULT_RULE, TrainingRule, check_ode_supported
from ..quadrature import truncated_gauss_mean

__all__ = ["field_moments", "drift", "vector_field"]


def field_moments(
    R: float | jax.Array,
    b: float | jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    method: str = "auto",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Per-cluster averages ``(d1, d2, v_eff)``, each of shape ``(2,) + params' shape``.

    ``d1``, ``d2``: :math:`d_1^\tau`, :math:`d_2^\tau` of the module docstring; ``v_eff``: the
    variance :math:`v_\tau + e_\tau` of :math:`\|\tilde\xi\|^2/N` in the :math:`\eta_w^2` term.
    Without a gate the moments come from :func:`jaxadv.model.losses.force_moments` (closed form
    when the loss has one); with a gate from :func:`jaxadv.ode.quadrature.truncated_gauss_mean`.
    """
    check_ode_supported(rule)
    attack_field, eps_nodes, gate_cut = rule.attack.field, rule.eps_law.nodes, rule.gate.margin_cut
    assert attack_field is not None and eps_nodes is not None  # check_ode_supported raised otherwise
    rp = {} if rp is None else rp
    loss = rule.loss
    tau, weight, var = cluster_table(params)  # (2,) + G
    mean = field_mean(R, b, tau, params)
    eps_k, pi_k = eps_nodes(params.eps, rp, rule.n_eps_nodes)  # G + (K,) or (K,)
    # shapes: clusters (2,) + G + nodes (K,), every operand lifted to that rank
    rank = mean.ndim + 1
    lift = lambda x: jnp.reshape(x, (1,) * (rank - jnp.ndim(x)) + jnp.shape(x))
    t2, eps2, pi2 = tau[..., None], lift(eps_k), lift(pi_k)
    shift, extra = attack_field(t2, eps2, rp)
    m = mean[..., None] + shift
    v_eff = var + attack_field(tau, lift(params.eps)[..., 0], rp)[1]
    v2 = var[..., None] + extra
    # the averages run on flat arrays: XLA's CPU loops over a trailing unit axis (one eps node) are
    # more than twice slower than over the same elements flattened
    shape, flat = m.shape, lambda x: jnp.broadcast_to(x, m.shape).reshape(-1)
    if rule.gate.open is None or gate_cut is None:
        d1, d2 = force_moments(loss, flat(m), flat(v2), flat(t2), method, rp)
    else:
        # open where tau x < c on the clean field: integrate y = tau x ~ N(tau mean, v) below c, at x~ = tau y + shift
        t1, s1 = flat(t2), flat(shift)
        f1 = lambda y: force(loss, t1[..., None] * y + s1[..., None], jnp.broadcast_to(t1[..., None], y.shape), rp)
        ym, cut = flat(t2 * mean[..., None]), flat(gate_cut(eps2))
        d1 = truncated_gauss_mean(f1, ym, flat(v2), cut, "below")
        d2 = truncated_gauss_mean(lambda y: f1(y) ** 2, ym, flat(v2), cut, "below")
    return jnp.sum(pi2 * d1.reshape(shape), axis=-1), jnp.sum(pi2 * d2.reshape(shape), axis=-1), v_eff


def drift(
    R: float | jax.Array,
    b: float | jax.Array,
    params: ModelParams,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    method: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    r"""The right-hand side :math:`(dR/d\alpha, db/d\alpha)` at one point (scalars or a grid).

    Raises ``ValueError`` for rules without an ODE in (R, b) (the L-infinity and L1 attacks).

    Example:
        >>> from jaxadv import ModelParams
        >>> from jaxadv.ode.vector_field import drift
        >>> dR, db = drift(0.0, 0.0, ModelParams(prior=0.5))
        >>> float(dR) > 0
        True
    """
    d1, d2, var = field_moments(R, b, params, rule, rp, method)
    tau, weight, _ = cluster_table(params)
    dR = params.eta_w * (1 - R * R) * (params.rho / 2) * jnp.sum(weight * tau * d1, axis=0) - (
        params.eta_w**2 / 2
    ) * R * jnp.sum(weight * var * d2, axis=0)
    db = -params.eta_b * jnp.sum(weight * d1, axis=0)
    # NumPy leaves of params times jax.Arrays are jax.Arrays at run time (JAX's __array_priority__), which
    # NumPy's type information does not know
    return dR, db  # type: ignore[return-value]


def vector_field(
    rule: TrainingRule = DEFAULT_RULE, method: str = "auto"
) -> Callable[[Any, jax.Array, tuple[ModelParams, dict[str, jax.Array]]], jax.Array]:
    """``f(alpha, y, args)`` with ``y = jnp.array([R, b])`` and ``args = (params, rp)``: the one
    vector field of :mod:`jaxadv.ode.rk4`, Newton's method and the fluctuation theory."""

    def f(alpha: Any, y: jax.Array, args: tuple[ModelParams, dict[str, jax.Array]]) -> jax.Array:
        params, rp = args
        return jnp.stack(drift(y[0], y[1], params, rule, rp, method))

    return f
