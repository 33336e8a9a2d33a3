r"""Laws of the per-example attack radius :math:`\epsilon`, each a record with two faces.

An :class:`EpsLaw` has a **draw face** for the Monte Carlo, ``draw(key, eps, rp, dtype)``
(one exact draw per example; ``eps`` is ``ModelParams.eps``, ``rp`` the rule's parameter dict),
and a **nodes face** for the ODE, ``nodes(eps, rp, n) -> (eps_k, pi_k)`` with
:math:`E[f(\epsilon)]\approx\sum_k\pi_k f(\epsilon_k)` (weights summing to 1, the nodes on a
trailing axis that broadcasts against the parameters' grid shape; ``n`` the rule's ``n_eps_nodes``).
A new law is one record here, added to :data:`EPS_LAWS`; its parameters become configuration keys
and sweep axes.

==============  ===============================================================  =======================================
name            law                                                              ODE nodes
==============  ===============================================================  =======================================
``fixed``       :math:`\epsilon=` ``params.eps``                                 exact (one node)
``uniform``     :math:`U[\epsilon_\min,\epsilon_\max]`                           Gauss--Legendre
``discrete``    :math:`\epsilon_k` with probability :math:`\pi_k`                exact (the support)
``loguniform``  :math:`\log\epsilon\sim U[\log\epsilon_\min,\log\epsilon_\max]`  Gauss--Legendre in :math:`\log\epsilon`
==============  ===============================================================  =======================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from .. import threefry
from ..quadrature import lift, nodes
from ..validation import check_value
from .params import Param

__all__ = ["EpsLaw", "FIXED", "UNIFORM", "DISCRETE", "LOGUNIFORM", "EPS_LAWS", "get_eps_law", "gauss_legendre_on"]


class EpsLaw(NamedTuple):
    """A law of the per-example radius (see the module docstring for the faces).

    Attributes:
        name: registry name (``eps_dist=`` in configurations).
        draw: ``draw(key, eps, rp, dtype) -> scalar``; ``key`` is ``None`` unless ``random``.
        nodes: ``nodes(eps, rp, n) -> (eps_k, pi_k)`` of shape ``(K,)``, or ``None`` (no ODE).
        random: the draw uses random numbers.
        params: the :class:`jaxadv.model.params.Param` s it reads.
        validate: ``validate(values) -> None``: checks across its parameters (``values`` a dict of
            floats / tuples), raising ``ValueError`` naming the parameter and its value.
    """

    name: str
    draw: Callable
    nodes: Callable | None
    random: bool = False
    params: tuple[Param, ...] = ()
    validate: Callable[[dict[str, Any]], None] = lambda values: None


def gauss_legendre_on(lo: ArrayLike, hi: ArrayLike, n: int) -> tuple[jax.Array, jax.Array]:
    r"""``n``-point Gauss--Legendre nodes and weights (summing to 1) of the uniform law on
    :math:`[lo, hi]`: exact for polynomials of degree :math:`2n-1`."""
    x, w = nodes("legendre", int(n))
    lo, hi = jnp.asarray(lo)[..., None], jnp.asarray(hi)[..., None]
    return (lo + hi) / 2 + (hi - lo) / 2 * lift(jnp.asarray(x, lo.dtype), lo.ndim), jnp.asarray(w / 2, lo.dtype)


FIXED = EpsLaw(
    name="fixed",
    draw=lambda key, eps, rp, dtype: jnp.asarray(eps, dtype),
    nodes=lambda eps, rp, n: (jnp.asarray(eps)[..., None], jnp.ones((1,), jnp.asarray(eps).dtype)),
)


def _check_range(values: dict[str, Any]) -> None:
    check_value("eps_min", values["eps_min"], lambda x: x >= 0, "must be >= 0")
    check_value(
        "eps_max",
        values["eps_max"],
        lambda x: x >= float(values["eps_min"]),
        f"must be >= eps_min={values['eps_min']!r}",
    )


_RANGE = (Param("eps_min", 0.0, lambda x: x >= 0, "must be >= 0"), Param("eps_max", 0.0))

UNIFORM = EpsLaw(
    name="uniform",
    draw=lambda key, eps, rp, dtype: (
        rp["eps_min"] + (rp["eps_max"] - rp["eps_min"]) * threefry.uniform(key, (), dtype)
    ).astype(dtype),
    nodes=lambda eps, rp, n: gauss_legendre_on(rp["eps_min"], rp["eps_max"], n),
    random=True,
    params=_RANGE,
    validate=_check_range,
)


def _discrete_draw(key: jax.Array, eps: float | jax.Array, rp: dict[str, jax.Array], dtype: DTypeLike) -> jax.Array:
    # jax.random.choice(key, K, p=weights) written out, with its uniform from the fused threefry
    vals, wts = rp["eps_values"], rp["eps_weights"] / jnp.sum(rp["eps_weights"])
    cum = jnp.cumsum(wts)
    k = jnp.searchsorted(cum, cum[-1] * (1 - threefry.uniform(key, (), cum.dtype)))
    return vals[k].astype(dtype)


def _check_discrete(values: dict[str, Any]) -> None:
    vals = np.atleast_1d(np.asarray(values["eps_values"], dtype=float))
    wts = np.atleast_1d(np.asarray(values["eps_weights"], dtype=float))
    if vals.size == 0:
        raise ValueError("eps_values=() must hold at least one value for eps_dist='discrete'")
    if wts.shape != vals.shape:
        raise ValueError(
            f"eps_weights={values['eps_weights']!r} must have the length of eps_values={values['eps_values']!r}"
        )
    for v in vals:
        check_value("eps_values", float(v), lambda x: x >= 0, "must be >= 0")
    for v in wts:
        check_value("eps_weights", float(v), lambda x: x >= 0, "must be >= 0")
    if wts.sum() <= 0:
        raise ValueError(f"eps_weights={values['eps_weights']!r} must have a positive sum")


DISCRETE = EpsLaw(
    name="discrete",
    draw=_discrete_draw,
    nodes=lambda eps, rp, n: (rp["eps_values"], rp["eps_weights"] / jnp.sum(rp["eps_weights"])),
    random=True,
    params=(Param("eps_values", (), vector=True), Param("eps_weights", (), vector=True)),
    validate=_check_discrete,
)


def _check_log_range(values: dict[str, Any]) -> None:
    check_value("eps_min", values["eps_min"], lambda x: x > 0, "must be > 0 for eps_dist='loguniform'")
    check_value(
        "eps_max",
        values["eps_max"],
        lambda x: x >= float(values["eps_min"]),
        f"must be >= eps_min={values['eps_min']!r}",
    )


def _log_nodes(eps: float | jax.Array, rp: dict[str, jax.Array], n: int) -> tuple[jax.Array, jax.Array]:
    # Gauss--Legendre in t = log(eps), where the law is uniform: eps_k = exp(t_k)
    t, w = gauss_legendre_on(jnp.log(rp["eps_min"]), jnp.log(rp["eps_max"]), n)
    return jnp.exp(t), w


LOGUNIFORM = EpsLaw(
    name="loguniform",
    draw=lambda key, eps, rp, dtype: jnp.exp(
        jnp.log(rp["eps_min"]) + (jnp.log(rp["eps_max"]) - jnp.log(rp["eps_min"])) * threefry.uniform(key, (), dtype)
    ).astype(dtype),
    nodes=_log_nodes,
    random=True,
    params=_RANGE,
    validate=_check_log_range,
)
r"""Log-uniform radius on :math:`[\epsilon_\min, \epsilon_\max]`, :math:`0<\epsilon_\min`: density
:math:`1/(\epsilon\log(\epsilon_\max/\epsilon_\min))`, equal mass per decade. Draw
:math:`\epsilon = \epsilon_\min(\epsilon_\max/\epsilon_\min)^U`; ODE nodes: Gauss--Legendre in
:math:`\log\epsilon`, where the law is uniform."""

EPS_LAWS = {law.name: law for law in (FIXED, UNIFORM, DISCRETE, LOGUNIFORM)}


def get_eps_law(name_or_law: str | EpsLaw) -> EpsLaw:
    """Look an eps law up by name (or pass an :class:`EpsLaw` through)."""
    if isinstance(name_or_law, EpsLaw):
        return name_or_law
    try:
        return EPS_LAWS[name_or_law]
    except (KeyError, TypeError):
        raise ValueError(f"eps_dist={name_or_law!r} is not one of {list(EPS_LAWS)}") from None
