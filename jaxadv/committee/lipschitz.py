r"""The committee's Lipschitz bound and the Lipschitz normalisation of training.

For :math:`\sigma(\xi)=\sum_kv_k\operatorname{erf}(w_k\cdot\xi-b_k)`

.. math::
    \nabla_\xi\sigma=\frac{2}{\sqrt\pi}\sum_kv_ke^{-x_k^2}w_k,\qquad
    \|\nabla_\xi\sigma\|\le\frac{2}{\sqrt\pi}\sum_k|v_k|\,\|w_k\|
    =\frac{2}{\sqrt\pi}\sum_k|v_k|\sqrt{Q_{kk}}\equiv L

(triangle inequality and :math:`e^{-x^2}\le1`), so :math:`|\sigma(\xi+\delta)-\sigma(\xi)|\le L\|\delta\|`
(:func:`lipschitz_bound`).

**Lipschitz normalisation** (``CommitteeSpec.lipschitz`` :math:`=L_\max`). After every SGD step, if
:math:`L>L_\max`, every :math:`w_k` is multiplied by the common factor :math:`s=L_\max/L`
(:math:`s=\min(1,L_\max/L)`, :func:`lipschitz_scale`); biases and the second layer are untouched.
:math:`L` is homogeneous of degree 1 in :math:`W`, so afterwards :math:`L=\min(L,L_\max)`. With
per-unit normalisation (:math:`\|w_k\|=1`) :math:`L=\frac{2}{\sqrt\pi}\sum_k|v_k|` depends on
:math:`v` alone and rescaling :math:`W` would undo the normalisation, so the option requires
``normalise=False`` (:func:`jaxadv.committee.params.validate_spec`). With a trained second layer the
projection still scales :math:`W` only, computed with the *updated* :math:`v`: the constraint holds
after every step, and a growing :math:`v` is paid for by smaller first-layer weights (the output
scale :math:`\sum|v_k|` stays free, which the quadratic loss needs to reach :math:`\pm1`).

Monte Carlo face: :func:`project_weights` after each step (:func:`jaxadv.committee.montecarlo.update`).
ODE face: :func:`project_state`, :math:`Q\to s^2Q`, :math:`R\to sR`, after every RK4 step
(:func:`jaxadv.ode.rk4.integrate` with ``project``): a splitting of the flow and the projection that converges to the
constrained dynamics as the step shrinks (tested). The initial state is projected in both faces.

**The constrained flow** (:func:`constrained_drift`, the adaptive step's field). As :math:`N\to\infty` the Monte
Carlo's steps of :math:`O(1/N)`, each followed by the projection, follow the flow :math:`f` of the order parameters
while :math:`L<L_\max`, and on :math:`L=L_\max` with :math:`f` pointing out (:math:`\dot L_f>0`) its component along
the scaling :math:`g=\tfrac{d}{ds}(s^2Q,sR)|_{s=1}=(2Q,R,0,0)` that keeps :math:`L` fixed is removed:

.. math::
    f_c=f-\mu g,\qquad \mu=\frac{\dot L_f}{\dot L_g}=\frac{\dot L_f}{L},\qquad
    \dot L_f=\frac{2}{\sqrt\pi}\sum_k\Big(|v_k|\frac{\dot Q_{kk}}{2\sqrt{Q_{kk}}}
    +\operatorname{sgn}(v_k)\,\dot v_k\sqrt{Q_{kk}}\Big)

(:math:`L` is homogeneous of degree 1 in :math:`W`, so :math:`\dot L_g=L`). The fixed step's splitting converges
to it at first order in the step; an adaptive step on the splitting alone would see an error of
:math:`O(h^2)` a step and need :math:`O(\mathrm{tol}^{-1/2})` steps (measured on a model problem,
``tests/test_rk4.py``), so the adaptive committee ODE integrates :math:`f_c` (smooth but at the switch) and
keeps the projection after every step for the round-off and the first crossing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from .ode import CommitteeState

__all__ = [
    "lipschitz_bound",
    "lipschitz_bound_weights",
    "lipschitz_scale",
    "project_weights",
    "project_state",
    "constrained_drift",
]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def lipschitz_bound(Q: ArrayLike, v: ArrayLike) -> jax.Array:
    r""":math:`L=\frac{2}{\sqrt\pi}\sum_k|v_k|\sqrt{Q_{kk}}` from the order parameters.

    Args:
        Q: ``(..., K, K)``; v: ``(..., K)`` (same leading shape).

    Returns:
        ``(...)``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(lipschitz_bound(jnp.eye(2), jnp.array([0.5, -0.5]))), 6)
        1.128379
    """
    Q, v = jnp.asarray(Q), jnp.asarray(v)
    diag = jnp.diagonal(Q, axis1=-2, axis2=-1)
    return _TWO_OVER_SQRT_PI * jnp.sum(jnp.abs(v) * jnp.sqrt(jnp.maximum(diag, 0.0)), axis=-1)


def lipschitz_bound_weights(W: ArrayLike, v: ArrayLike) -> jax.Array:
    r""":math:`L=\frac{2}{\sqrt\pi}\sum_k|v_k|\,\|w_k\|` from the weights ``W`` ``(..., K, N)``, ``v`` ``(..., K)``."""
    W, v = jnp.asarray(W), jnp.asarray(v)
    return _TWO_OVER_SQRT_PI * jnp.sum(jnp.abs(v) * jnp.linalg.norm(W, axis=-1), axis=-1)


def lipschitz_scale(L: ArrayLike, L_max: float | jax.Array) -> jax.Array:
    r""":math:`s=\min(1, L_\max/L)` (1 where :math:`L=0`)."""
    L = jnp.asarray(L)
    return jnp.where(L_max < L, L_max / jnp.where(L > 0, L, 1.0), jnp.ones_like(L))


def project_weights(W: jax.Array, v: ArrayLike, L_max: float | jax.Array) -> jax.Array:
    r"""Monte Carlo face: :math:`W\to sW`, :math:`s=\min(1,L_\max/L(W,v))`; ``W`` ``(K, N)``, ``v`` ``(K,)``."""
    s = lipschitz_scale(lipschitz_bound_weights(W, v), L_max)
    return W * s


def project_state(state: CommitteeState, L_max: float | jax.Array) -> CommitteeState:
    r"""ODE face: :math:`(Q,R)\to(s^2Q,sR)` of a :class:`~jaxadv.committee.ode.CommitteeState`
    (``b``, ``v`` untouched), :math:`s=\min(1,L_\max/L(Q,v))`."""
    s = lipschitz_scale(lipschitz_bound(state.Q, state.v), L_max)
    return state._replace(Q=state.Q * (s * s), R=state.R * s)


def constrained_drift(state: Any, drift: Any, L_max: float | jax.Array, rtol: float = 1e-10) -> Any:
    r"""The drift ``drift`` (a :class:`~jaxadv.committee.ode.CommitteeState` of rates) of the flow constrained to
    :math:`L\le L_\max` (module docstring): :math:`f-\mu(2Q,R,0,0)` with :math:`\mu=\dot L_f/L` where
    :math:`L\ge L_\max(1-\mathrm{rtol})` and :math:`\dot L_f>0`, else ``drift`` unchanged."""
    Q, v = state.Q, state.v
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(Q), 0.0))
    L = lipschitz_bound(Q, v)
    dL = _TWO_OVER_SQRT_PI * jnp.sum(
        jnp.abs(v) * jnp.diagonal(drift.Q) / (2 * jnp.where(d > 0, d, 1.0)) + jnp.sign(v) * drift.v * d
    )
    mu = jnp.where((L_max * (1 - rtol) <= L) & (dL > 0), dL / jnp.where(L > 0, L, 1.0), 0.0)
    return drift._replace(Q=drift.Q - 2 * mu * Q, R=drift.R - mu * state.R)
