r"""Exact reduced sampler: the N-dimensional on-line dynamics of :math:`(R, b)` at O(1) cost per step.

With :math:`\xi = \tau\frac{\rho}{2}B + \sqrt{v_\tau}\,z`, :math:`z\sim\mathcal N(0, I_N)`, and
:math:`\|w\| = \|B\| = 1`, everything one step needs depends on the state :math:`(R, b)`, the label
:math:`\tau` and three independent random numbers (rotation invariance of :math:`z`):

.. math::
    g_1 = w\cdot z\sim\mathcal N(0,1),\qquad g_2 = u\cdot z\sim\mathcal N(0,1),\qquad
    \chi^2 = \|z\|^2 - g_1^2 - g_2^2\sim\chi^2_{N-2},

with :math:`u = (B - Rw)/\sqrt{1-R^2}`, so :math:`B\cdot z = R g_1 + \sqrt{1-R^2}\,g_2`. Writing
:math:`s=\sqrt{v_\tau}`, the attacked example :math:`\tilde\xi = \xi - \tau\epsilon w` and
:math:`c = \frac{\eta_w}{N}\delta(\tilde x, \tau)` with :math:`\tilde x = w\cdot\xi - b - \tau\epsilon`:

.. math::
    w\cdot\xi = \tau\tfrac{\rho}{2}R + s g_1,\qquad
    B\cdot\xi = \tau\tfrac{\rho}{2} + s\,(R g_1 + \sqrt{1-R^2}\,g_2),

.. math::
    \|\xi\|^2 = \tfrac{\rho^2}{4} + \tau\rho s\,B\cdot z + v_\tau(g_1^2+g_2^2+\chi^2),\qquad
    \|\tilde\xi\|^2 = \|\xi\|^2 - 2\tau\epsilon\,w\cdot\xi + \epsilon^2,

.. math::
    R' = \frac{R + c\,(B\cdot\xi - \tau\epsilon R)}
              {\sqrt{1 + 2c\,(w\cdot\xi - \tau\epsilon) + c^2\|\tilde\xi\|^2}},\qquad
    b' = b - \frac{\eta_b}{N}\,\delta .

No formula divides by :math:`\sqrt{1-R^2}` (it only multiplies :math:`g_2`), so :math:`R=\pm1` is
regular. The initial overlap of a uniform :math:`w` is drawn exactly as
:math:`R_0 = g/\sqrt{g^2+\chi^2_{N-1}}`. Derivations: ``docs/theory.md (section 9)``.

The per-example pieces are the faces of the training rule the full simulation uses: the
attack's ``along_w`` face (:math:`\tilde\xi=\xi+a\,w`, :math:`a=-\tau\epsilon` for L2), the eps
law's draw, the gate's mask and the loss's force, so any loss, eps law and gate work. Attacks
without the ``along_w`` face break the rotation symmetry and are refused by
:func:`jaxadv.model.rule.check_reduced_supported`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from .. import threefry
from ..model.losses import force
from ..model.params import ModelParams
from ..model.rule import DEFAULT_RULE, TrainingRule, check_reduced_supported
from ..threefry import is_threefry, threefry2x32
from ..typing import Real
from .full import Observables, Sampler, SamplerParams

__all__ = [
    "ReducedState",
    "reduced_sampler",
    "chi2",
    "gamma_marsaglia_tsang",
    "step_uniforms",
    "normal_from_uniform",
    "init_reduced",
    "reduced_update",
    "step_reduced",
    "observe_reduced",
]


class ReducedState(NamedTuple):
    """Order parameters of one replica.

    Attributes:
        R: overlap :math:`w\\cdot B`, shape ``()``.
        b: bias, shape ``()``.
    """

    R: jax.Array
    b: jax.Array


# --- uniform and normal draws -----------------------------------------------------------------


def step_uniforms(key: jax.Array, n: int, dtype: DTypeLike) -> jax.Array:
    r"""``n`` independent uniforms on the open interval (0, 1) from one key, shape ``(n,)``.

    For a threefry key and float32 the words are ``jax.extend.random.threefry_2x32(key, 0..2h-1)``,
    :math:`h = \lceil n/2\rceil` (word ``j < h`` is the first word of the cipher of the counter pair
    ``(j, j + h)``, word ``h + j`` its second; the first ``n`` are kept), each mapped to
    ``(k + 1/2) / 2^23`` with ``k`` its top 23 bits; otherwise ``jax.random.uniform``.
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32 and is_threefry(key):
        half = (n + 1) // 2
        kd = jax.random.key_data(key)
        words: list[Any] = [None] * (2 * half)
        # one scalar cipher call per counter pair (j, j + half): under vmap each is one vector op over
        # the replicas (a (replicas, half) array would put the short axis innermost, 25 % slower)
        for j in range(half):
            words[j], words[j + half] = threefry2x32(kd, jnp.uint32(j), jnp.uint32(j + half))
        bits = jnp.stack(words[:n])
        return ((bits >> 9).astype(jnp.float32) + 0.5) * (2.0**-23)
    return jax.random.uniform(key, (n,), dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


def normal_from_uniform(u: jax.Array) -> jax.Array:
    r"""Standard normal by inversion, :math:`\sqrt2\,\operatorname{erf}^{-1}(2u-1)` (as ``jax.random.normal``)."""
    return jnp.sqrt(2.0).astype(u.dtype) * jax.scipy.special.erfinv(2 * u - 1)


# --- exact chi-squared draws -----------------------------------------------------------------


def _loop_uniforms(key, i, dtype):
    """Two uniforms for iteration ``i`` of the gamma fallback loop, disjoint from :func:`step_uniforms`.

    Threefry/float32: the hash of the counter pair ``(2^32 - 1 - i, 0)``, a pair that
    :func:`step_uniforms` (pairs ``(j, j + n/2)``) never uses; otherwise keys
    ``fold_in(fold_in(key, 2^32 - 2), i)``.
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32 and is_threefry(key):
        y0, y1 = threefry2x32(jax.random.key_data(key), jnp.uint32(0xFFFFFFFF) - i, jnp.uint32(0))
        return ((jnp.stack([y0, y1]) >> 9).astype(jnp.float32) + 0.5) * (2.0**-23)
    k = jax.random.fold_in(jax.random.fold_in(key, 0xFFFFFFFE), i)
    return jax.random.uniform(k, (2,), dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


def _mt_accept(x, u, d, c):
    """Marsaglia--Tsang test of proposal ``x`` (normal) with uniform ``u``: ``(value, accepted)``."""
    dtype = d.dtype
    t = c * x
    v = (1 + t) ** 3
    # log v + 1 - v written as 3[log1p(t) - t] - 3t^2 - t^3: no cancellation of O(d) terms
    lt = jnp.log1p(jnp.maximum(t, -1 + jnp.finfo(dtype).eps))
    logratio = 0.5 * x * x + d * (3 * (lt - t) - 3 * t * t - t**3)
    return d * v, (t > -1) & (jnp.log(u) < logratio)


GAMMA_ROUNDS = 1
"""Unconditional Marsaglia--Tsang proposals per gamma draw (each accepted with probability > 0.95;
the rare rejected lanes continue in the exact fallback loop). One is fastest on CPU."""


def gamma_marsaglia_tsang(key: jax.Array, shape: ArrayLike, uniforms: jax.Array | None = None) -> jax.Array:
    r"""Exact draw from :math:`\mathrm{Gamma}(a, 1)` (scalar, ``a\ge0`` traced) by Marsaglia--Tsang.

    For :math:`a\ge 1`: :math:`d = a - 1/3`, :math:`c = 1/\sqrt{9d}`; propose
    :math:`V = (1+cX)^3`, :math:`X\sim\mathcal N(0,1)`, accept :math:`dV` when :math:`V>0` and
    :math:`\log U < X^2/2 + d - dV + d\log V`. For :math:`a<1` the draw is
    :math:`\mathrm{Gamma}(a+1)\,U^{1/a}`, and :math:`a=0` gives 0.

    :data:`GAMMA_ROUNDS` proposals are made unconditionally; a lane that rejected all of them
    continues in a ``lax.while_loop`` (fresh words from :func:`_loop_uniforms`, disjoint from those
    of :func:`step_uniforms`) until it accepts, so the
    draw is exact. Under ``vmap`` the loop body runs only while some lane is unfinished.

    Args:
        key: PRNG key (used by the fallback loop, and for all draws when ``uniforms`` is None).
        shape: the shape parameter :math:`a\ge 0`, a scalar (its dtype sets the output dtype).
        uniforms: optional pre-drawn uniforms on (0, 1), shape ``(2 * GAMMA_ROUNDS + 1,)``.
    """
    a = jnp.asarray(shape)
    dtype = a.dtype
    if uniforms is None:
        uniforms = step_uniforms(jax.random.fold_in(key, 0xFFFFFFFF), 2 * GAMMA_ROUNDS + 1, dtype)
    a1 = jnp.where(a < 1, a + 1, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    value, done = jnp.zeros((), dtype), jnp.zeros((), bool)
    for i in range(GAMMA_ROUNDS):
        val, ok = _mt_accept(normal_from_uniform(uniforms[2 * i]), uniforms[2 * i + 1], d, c)
        value = jnp.where(done, value, val)
        done = done | ok

    def body(carry):
        value, done, i = carry
        u = _loop_uniforms(key, i, dtype)
        val, ok = _mt_accept(normal_from_uniform(u[0]), u[1], d, c)
        return jnp.where(done, value, val), done | ok, i + 1

    value, _, _ = jax.lax.while_loop(lambda cr: ~cr[1], body, (value, done, jnp.zeros((), jnp.uint32)))
    u = uniforms[2 * GAMMA_ROUNDS]
    boost = jnp.where(a < 1, u ** (1.0 / jnp.where(a > 0, a, 1.0)), 1.0)
    return jnp.where(a > 0, value * boost, 0.0)


def chi2(
    key: jax.Array, dof: ArrayLike, dtype: DTypeLike = jnp.float32, uniforms: jax.Array | None = None
) -> jax.Array:
    r"""Exact :math:`\chi^2_k` draw, :math:`k` = ``dof`` :math:`\ge 0` (traced): :math:`2\,\mathrm{Gamma}(k/2, 1)`."""
    return 2.0 * gamma_marsaglia_tsang(key, jnp.asarray(dof, dtype) / 2, uniforms)


# --- the kernel -------------------------------------------------------------------------------


def init_reduced(
    key: jax.Array,
    N: ArrayLike,
    R0: ArrayLike | None = None,
    b0: ArrayLike = 0.0,
    dtype: DTypeLike = jnp.float32,
) -> ReducedState:
    r"""Initial state. ``R0=None``: :math:`w` uniform on the sphere, :math:`R_0 = g/\sqrt{g^2+\chi^2_{N-1}}` exactly.

    Args:
        key: PRNG key.
        N: input dimension (may be a traced scalar).
        R0: given initial overlap, or ``None``.
        b0: initial bias.
    """
    if R0 is not None:
        return ReducedState(R=jnp.asarray(R0, dtype), b=jnp.asarray(b0, dtype))
    k_g, k_c = jax.random.split(key)
    g = jax.random.normal(k_g, (), dtype)
    rest = chi2(k_c, jnp.asarray(N, dtype) - 1, dtype)
    return ReducedState(R=g / jnp.sqrt(g * g + rest), b=jnp.asarray(b0, dtype))


def reduced_update(
    R: jax.Array,
    b: jax.Array,
    tau: jax.Array,
    g1: jax.Array,
    g2: jax.Array,
    rest: jax.Array,
    params: ModelParams,
    N: float | jax.Array,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
    eps: Real | None = None,
) -> ReducedState:
    r"""The exact step map :math:`(R, b) \to (R', b')` for given label and random numbers.

    The attack acts along ``w``, :math:`\tilde\xi=\xi+a\,w` with :math:`a` from the attack's
    ``along_w`` face (:math:`a=-\tau\epsilon` for L2), so

    .. math::
        w\cdot\tilde\xi = w\cdot\xi + a,\quad B\cdot\tilde\xi = B\cdot\xi + aR,\quad
        \|\tilde\xi\|^2 = \|\xi\|^2 + 2a\,w\cdot\xi + a^2 .

    Args:
        R, b: current overlap and bias (scalars).
        tau: label :math:`\pm1`.
        g1: :math:`w\cdot z`.
        g2: :math:`u\cdot z`, :math:`u` the unit vector along :math:`B - Rw`.
        rest: :math:`\|z\|^2 - g_1^2 - g_2^2`.
        params, N: as in :func:`reduced_sampler`'s step.
        rule, rp: the training rule and its parameter dict.
        eps: this example's radius (default ``params.eps``).
    """
    check_reduced_supported(rule)  # ValueError unless the attack has the along_w face
    along_w = rule.attack.along_w
    assert along_w is not None
    dtype = jnp.result_type(R)
    v = jnp.where(tau > 0, params.v1, params.v2).astype(dtype)
    s = jnp.sqrt(v)
    half_rho = params.rho / 2
    perp = jnp.sqrt(jnp.maximum(1 - R * R, 0.0))
    Bz = R * g1 + perp * g2
    w_xi = tau * half_rho * R + s * g1
    B_xi = tau * half_rho + s * Bz
    xi2 = half_rho**2 + 2 * tau * half_rho * s * Bz + v * (g1 * g1 + g2 * g2 + rest)
    eps = params.eps if eps is None else eps
    rp = {} if rp is None else rp
    a = along_w(tau, eps, rp)
    delta = force(rule.loss, (w_xi - b) + a, tau, rp)
    c = params.eta_w / N * delta
    xi_adv2 = xi2 + 2 * a * w_xi + a * a
    num = R + c * (B_xi + a * R)
    norm2 = 1 + 2 * c * (w_xi + a) + c * c * xi_adv2
    R_new = jnp.clip(num / jnp.sqrt(norm2), -1.0, 1.0)
    b_new = b - params.eta_b / N * delta
    if rule.gate.open is not None:
        g = rule.gate.open(w_xi - b, tau, eps)
        R_new, b_new = jnp.where(g, R_new, R), jnp.where(g, b_new, b)
    return ReducedState(R=R_new.astype(dtype), b=b_new.astype(dtype))


def step_reduced(
    key: jax.Array,
    state: ReducedState,
    params: ModelParams,
    N: float | jax.Array,
    rule: TrainingRule = DEFAULT_RULE,
    rp: dict[str, jax.Array] | None = None,
) -> ReducedState:
    """One exact on-line step of one replica (see the module docstring for the equations).

    Args:
        key: PRNG key of the step.
        state: :class:`ReducedState`.
        params: model parameters (scalars of the state's dtype).
        N: input dimension (a scalar; may be traced).
        rule, rp: the training rule (its attack needs the ``along_w`` face) and its parameters;
            a random eps law draws with ``fold_in(fold_in(key, 2), 0)``, as the full sampler does.
    """
    R, b = state
    dtype = R.dtype
    # one hash call for the label, g1, g2 and the gamma proposals; the gamma fallback derives its own keys
    u = step_uniforms(key, 4 + 2 * GAMMA_ROUNDS, dtype)
    tau = jnp.where(u[0] < params.prior, 1.0, -1.0).astype(dtype)
    g1, g2 = normal_from_uniform(u[1]), normal_from_uniform(u[2])
    rest = chi2(key, N - 2, dtype, u[3:])
    k_eps = threefry.fold_in(threefry.fold_in(key, 2), 0) if rule.eps_law.random else None
    eps = rule.eps_law.draw(k_eps, params.eps, {} if rp is None else rp, dtype)
    return reduced_update(R, b, tau, g1, g2, rest, params, N, rule, rp, eps)


def observe_reduced(state: ReducedState) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(R, b, |w|)``; the norm is 1 by construction."""
    return state.R, state.b, jnp.ones_like(state.R)


@functools.cache
def reduced_sampler(rule: TrainingRule = DEFAULT_RULE) -> Sampler[TrainingRule]:
    """The exact O(1)-per-step sampler of ``rule`` as an ``(init, step)`` pair (see
    :mod:`jaxadv.mc.full` for the interface; the constant of :class:`SamplerParams` is N as a
    scalar of the state's dtype). ``norm1``/``norm_inf`` are NaN (not represented).

    Raises:
        ValueError: the rule's attack has no ``along_w`` face (:func:`jaxadv.model.rule.check_reduced_supported`).
    """
    check_reduced_supported(rule)

    def _observe(state: ReducedState, sp: SamplerParams[ModelParams]) -> Observables:
        nan = jnp.full_like(state.R, jnp.nan)
        return Observables(*observe_reduced(state), nan, nan)

    def init(key: jax.Array, sp: SamplerParams[ModelParams], R0: float | None = None, b0: float = 0.0) -> ReducedState:
        return init_reduced(key, sp.const, R0, b0, sp.const.dtype)

    def step(key: jax.Array, state: ReducedState, sp: SamplerParams[ModelParams]) -> tuple[ReducedState, Observables]:
        new = step_reduced(key, state, sp.model, sp.const, rule, sp.rule)
        return new, _observe(new, sp)

    return Sampler("reduced", init, step, _observe, rule)
