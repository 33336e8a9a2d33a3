r"""The prototype model: two Gaussian clusters in N dimensions.

.. math::
    P(\xi) = p\,\mathcal N(\xi\mid \tfrac{\rho}{2}B, v_1 I) + (1-p)\,\mathcal N(\xi\mid -\tfrac{\rho}{2}B, v_2 I),
    \qquad \|B\|_2 = 1,

with label :math:`\tau=+1` for the first cluster and :math:`\tau=-1` for the second.
For a student with :math:`\|w\|=1`, :math:`R=w\cdot B` and bias :math:`b`, the
pre-activation :math:`x = w\cdot\xi - b` is exactly Gaussian at any N:

.. math::
    x\mid\tau \sim \mathcal N\big(\tau\tfrac{\rho}{2}R - b,\; v_\tau\big).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .. import threefry
from ..generators import JAX, Generator, get_generator
from .params import ModelParams

__all__ = ["sample_example", "cluster_table", "field_mean", "unit_direction", "cluster_axis"]


def unit_direction(N: int, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """The cluster axis B used by default: the first coordinate vector, shape ``(N,)``.

    The model is rotation invariant (isotropic clusters, L2 attack), so any unit
    vector gives the same statistics of (R, b); the coordinate vector is the cheapest.
    """
    return jnp.zeros((N,), dtype).at[0].set(1)


def cluster_axis(N: int, kind: str = "first", dtype: DTypeLike = jnp.float32) -> jax.Array:
    r"""The cluster axis B by name, shape ``(N,)``, unit L2 norm.

    ``"first"``: the first coordinate vector (:func:`unit_direction`, the default);
    ``"dense"``: :math:`(1,\dots,1)/\sqrt N`. The L2 attack and noise are rotation invariant,
    so the choice changes nothing for them; the L-infinity and L1 attacks are not, and there
    the orientation of B matters.
    """
    if kind == "first":
        return unit_direction(N, dtype)
    if kind == "dense":
        return jnp.full((N,), 1.0 / jnp.sqrt(N), dtype)
    raise ValueError(f"B={kind!r} must be 'first', 'dense' or a unit vector of shape (N,)")


def sample_example(
    key: jax.Array, params: ModelParams, B: jax.Array, generator: str | Generator = JAX
) -> tuple[jax.Array, jax.Array]:
    r"""Draw one labelled example :math:`(\xi, \tau)`.

    :math:`\tau=+1` with probability ``params.prior``;
    :math:`\xi = \tau\frac{\rho}{2}B + \sqrt{v_\tau}\,z`, :math:`z\sim\mathcal N(0, I_N)`.
    The label's uniform uses ``split(key)[0]``, the normals ``split(key)[1]``.

    Args:
        key: PRNG key.
        params: model parameters (scalars).
        B: cluster axis, unit vector of shape ``(N,)``; sets dtype and N.
        generator: the :class:`jaxadv.generators.Generator` (or its name) that draws the uniform
            and the normals: ``"jax"`` (``jax.random``'s numbers, the default) or ``"fast"``.

    Returns:
        ``(xi, tau)``: shape ``(N,)`` and a scalar of B's dtype (+1 or -1).
    """
    gen = get_generator(generator)
    k_tau, k_z = threefry.split(key)
    dtype = B.dtype
    tau = jnp.where(gen.uniform(k_tau, (), dtype) < params.prior, 1.0, -1.0).astype(dtype)
    v = jnp.where(tau > 0, params.v1, params.v2)
    z = gen.normal(k_z, B.shape, dtype)
    return tau * (params.rho / 2) * B + jnp.sqrt(v) * z, tau


def cluster_table(params: ModelParams) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Per-cluster ``(tau, weight, variance)`` arrays of shape ``(2, ...)``.

    Row 0 is cluster 1 (:math:`\tau=+1`, weight :math:`p`, variance :math:`v_1`),
    row 1 cluster 2 (:math:`\tau=-1`, weight :math:`1-p`, variance :math:`v_2`).
    """
    p = jnp.asarray(params.prior)
    tau = jnp.stack([jnp.ones_like(p), -jnp.ones_like(p)])
    weight = jnp.stack([p, 1 - p])
    var = jnp.stack([jnp.broadcast_to(params.v1, p.shape), jnp.broadcast_to(params.v2, p.shape)])
    return tau, weight, var


def field_mean(R: float | jax.Array, b: float | jax.Array, tau: jax.Array, params: ModelParams) -> jax.Array:
    r"""Mean of the clean pre-activation in cluster :math:`\tau`: :math:`\tau\rho R/2 - b`."""
    return tau * params.rho * R / 2 - b
