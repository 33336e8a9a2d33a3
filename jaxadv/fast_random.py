r"""A counter-based random stream that spends every cipher word: threefry2x32 words, Box--Muller normals.

:mod:`jaxadv.threefry` reproduces ``jax.random`` bit for bit, and so inherits its costs: one
20-round Threefry-2x32 block per 32-bit word (the two output words are XOR-folded,
:math:`y_0\oplus y_1`) and one inverse error function per normal. This module draws from the same
cipher :math:`T_k` under the same keys (so ``fold_in(replica_key, step)`` per-step keys, and with
them chunking, resumption and sharding, work unchanged) but keeps both words of each block,

.. math::
    (y_{2i}, y_{2i+1}) = T_k(0, i),\qquad i = 0, 1, \dots

(:func:`bits`), and turns each block into two normals by the Box--Muller transform
(:func:`normal`; float32):

.. math::
    u_1 = \big(\lfloor y_{2i}/2\rfloor + \tfrac12\big)\,2^{-31}\in(0,1),\quad
    \theta = 2\pi\,\lfloor y_{2i+1}/2^{8}\rfloor\,2^{-24},\qquad
    z_{2i} = \sqrt{-2\ln u_1}\,\cos\theta,\quad z_{2i+1} = \sqrt{-2\ln u_1}\,\sin\theta .

If :math:`u_1` and :math:`\theta/2\pi` are independent and uniform on (0, 1), :math:`(z_{2i},
z_{2i+1})` are two independent standard normals *exactly* (the polar form of the bivariate normal
density: :math:`R^2 = -2\ln u_1` is exponential with mean 2, the angle uniform and independent).
The only departures are the discretisation of the words (:math:`2^{-31}` and :math:`2^{-24}`)
and float rounding; no approximation of the distribution is made (no sum of uniforms, no
truncated series). The largest radius is :math:`\sqrt{2\cdot 32\ln 2} = 6.66` (``jax.random``'s
float32 normal stops at 5.29). :math:`\cos\theta` and :math:`\sin\theta` are evaluated after an
exact reduction to :math:`|\varphi|\le\pi/4` by odd/even polynomials (Cephes ``sinf``/``cosf``,
error below :math:`2^{-23}`, tested against float64 over all :math:`2^{24}` angles), because XLA's
CPU ``cos``/``sin`` are scalar library calls, ten times the cost. Float64 draws take one block
per 64-bit word, :math:`u_1` and :math:`\theta` with 53 bits, and ``jnp.cos``/``jnp.sin``.

Both numbers of a pair come from one block, so the pair is computed once and stored
(:func:`_stored`): left to itself, XLA's fusion would recompute the whole block for each output
element, which gives back the saving. The result: about half the cipher work and a cheaper
transform than ``jax.random.normal`` (see ``benchmarks/mc_throughput.py``, ``fast`` columns).

The stream is a different stream from ``jax.random``'s: same key, other numbers. It is the
Monte Carlo's ``generator="fast"`` (:mod:`jaxadv.generators`); ``docs/theory.md`` §8.1 has the
construction and the argument.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from .threefry import is_threefry, threefry2x32

__all__ = ["bits", "uniform", "normal", "box_muller", "cos_sin_turn"]

_U32 = jnp.uint32

# Cephes sinf / cosf on |x| <= pi/4 (S. Moshier), relative error below 2^-23 in float32
_SIN = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
_COS = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)


def _check_key(key):
    if not is_threefry(key):
        raise ValueError(
            f"key: the fast stream needs a threefry2x32 key (jax.random.key(seed)), got impl={jax.random.key_impl(key)}"
        )


def _stored(f, key):
    """``f(key_data(key))`` computed as a branch of a ``lax.cond`` whose predicate XLA cannot see (the
    constant ``True`` behind an optimisation barrier), so the result is written to memory once and
    read by every consumer, instead of being recomputed, cipher and all, inside each consumer's
    fusion. The other branch (zeros) never runs. The predicate does not depend on the key, so under
    ``vmap`` the ``cond`` stays a ``cond`` (no per-replica select, no reduction over replicas or
    devices), and nothing is copied or zero-filled.
    """
    taken = jax.lax.optimization_barrier(jnp.bool_(True))  # always True, not a constant to XLA
    words = jax.random.key_data(key)
    shapes = jax.eval_shape(f, words)
    return jax.lax.cond(taken, f, lambda w: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), words)


def _blocks(words, m: int, hi: int = 0):
    """The two words of the blocks ``T_k(hi, i)``, ``i < m``, for key words ``words`` (shape ``(2,)``,
    ``jax.random.key_data``): uint32 arrays of shape ``(m,)``."""
    if m >= 2**32:
        raise ValueError(f"shape: {m} cipher blocks needed; at most 2**32 - 1 are supported")
    return threefry2x32(words, jnp.full((m,), hi, _U32), jnp.arange(m, dtype=_U32))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _interleave(a, b, shape):
    """``(a_0, b_0, a_1, b_1, ...)`` cut to ``prod(shape)`` and reshaped."""
    n = _size(shape)
    return jnp.stack([a, b], axis=-1).reshape(-1)[:n].reshape(shape)


@functools.partial(jax.jit, static_argnames=("shape",))
def bits(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    r"""The stream's uint32 words :math:`y_0, y_1, \dots` (both words of block :math:`i` are
    :math:`y_{2i}, y_{2i+1}`), reshaped to ``shape``."""
    _check_key(key)
    shape = tuple(shape)
    y0, y1 = _blocks(jax.random.key_data(key), (_size(shape) + 1) // 2)
    return _interleave(y0, y1, shape)


def _words64(words, m: int, hi: int = 0):
    """One 64-bit word per block, ``(y_0 << 32) | y_1`` of ``T_k(hi, i)``, ``i < m`` (needs x64)."""
    y0, y1 = _blocks(words, m, hi)
    return (y0.astype(jnp.uint64) << jnp.uint64(32)) | y1.astype(jnp.uint64)


def _dtype(dtype):
    dtype = jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype))
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype={dtype} must be float32 or float64")
    return dtype


def _unit_float32(w):
    """``[0, 1)`` from the top 23 bits of uint32 words (as ``jax.random.uniform``)."""
    return jax.lax.bitcast_convert_type((w >> _U32(9)) | _U32(0x3F800000), jnp.float32) - jnp.float32(1)


def _unit_float64(w):
    """``[0, 1)`` from the top 52 bits of uint64 words (as ``jax.random.uniform``)."""
    one = jnp.uint64(0x3FF0000000000000)
    return jax.lax.bitcast_convert_type((w >> jnp.uint64(12)) | one, jnp.float64) - jnp.float64(1)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def uniform(
    key: jax.Array,
    shape: tuple[int, ...] = (),
    dtype: DTypeLike | None = None,
    minval: ArrayLike = 0.0,
    maxval: ArrayLike = 1.0,
) -> jax.Array:
    r"""Uniform on ``[minval, maxval)``: float32 from every word of the stream (two per block, top 23
    bits each), float64 from one 64-bit word per block (top 52 bits)."""
    _check_key(key)
    dtype, shape = _dtype(dtype), tuple(shape)
    n = _size(shape)
    if dtype == jnp.float32:

        def pair(k):
            y0, y1 = _blocks(k, (n + 1) // 2)
            return jax.lax.complex(_unit_float32(y0), _unit_float32(y1))

        c = _stored(pair, key) if n > 2 else pair(jax.random.key_data(key))
        u = _interleave(jnp.real(c), jnp.imag(c), shape)
    else:
        u = _unit_float64(_words64(jax.random.key_data(key), n)).reshape(shape)
    lo, hi = jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype)
    return jnp.maximum(lo, u * (hi - lo) + lo)


def cos_sin_turn(j: jax.Array) -> tuple[jax.Array, jax.Array]:
    r""":math:`(\cos 2\pi t, \sin 2\pi t)` in float32 for :math:`t = j\,2^{-24}`, ``j`` integers in
    :math:`[0, 2^{24})` (int32).

    The quadrant :math:`q = \operatorname{round}(4t) \bmod 4` and the remainder
    :math:`\varphi = 2\pi(t - q'/4)\in[-\pi/4, \pi/4]` are computed in integers (exact), then
    :math:`\sin\varphi`, :math:`\cos\varphi` by polynomials and rotated by :math:`q\pi/2`.
    """
    q4 = (j + (1 << 21)) >> 22  # round(4t), 0..4
    phi = (j - (q4 << 22)).astype(jnp.float32) * jnp.float32(2 * np.pi / 2**24)
    q = q4 & 3
    z = phi * phi
    s = phi + phi * z * (_SIN[0] + z * (_SIN[1] + z * _SIN[2]))
    c = 1 - jnp.float32(0.5) * z + z * z * (_COS[0] + z * (_COS[1] + z * _COS[2]))
    odd = (q & 1) == 1
    cos, sin = jnp.where(odd, s, c), jnp.where(odd, c, s)
    return jnp.where((q == 1) | (q == 2), -cos, cos), jnp.where(q >= 2, -sin, sin)


def box_muller(y0: jax.Array, y1: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Two independent standard normals (float32) from two uint32 words each:
    :math:`\sqrt{-2\ln u_1}\,(\cos\theta, \sin\theta)` with :math:`u_1 = (\lfloor y_0/2\rfloor
    + 1/2)\,2^{-31}` and :math:`\theta = 2\pi\lfloor y_1/2^8\rfloor 2^{-24}`."""
    u1 = ((y0 >> _U32(1)).astype(jnp.int32).astype(jnp.float32) + jnp.float32(0.5)) * jnp.float32(2.0**-31)
    r = jnp.sqrt(jnp.maximum(jnp.float32(-2) * jnp.log(u1), jnp.float32(0)))
    cos, sin = cos_sin_turn((y1 >> _U32(8)).astype(jnp.int32))
    return r * cos, r * sin


def _box_muller64(a, b):
    """Float64 Box--Muller from two uint64 words (53 bits each)."""
    u1 = ((a >> jnp.uint64(11)).astype(jnp.float64) + 0.5) * 2.0**-53
    theta = (b >> jnp.uint64(11)).astype(jnp.float64) * (2 * np.pi * 2.0**-53)
    r = jnp.sqrt(-2 * jnp.log(u1))
    return r * jnp.cos(theta), r * jnp.sin(theta)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def normal(key: jax.Array, shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> jax.Array:
    r"""Standard normals of ``shape``: pair :math:`(z_{2i}, z_{2i+1})` from block :math:`i` by
    Box--Muller (float32); float64 pairs from the 64-bit words of blocks ``T_k(0, i)`` (radius) and
    ``T_k(1, i)`` (angle).

    Example:
        >>> import jax
        >>> from jaxadv import fast_random
        >>> z = fast_random.normal(jax.random.key(0), (1000,), "float32")
        >>> z.shape, bool(abs(float(z.mean())) < 0.2)
        ((1000,), True)
    """
    _check_key(key)
    dtype, shape = _dtype(dtype), tuple(shape)
    m = (_size(shape) + 1) // 2
    if dtype == jnp.float32:
        pair = lambda k: jax.lax.complex(*box_muller(*_blocks(k, m)))
    else:
        pair = lambda k: jax.lax.complex(*_box_muller64(_words64(k, m, 0), _words64(k, m, 1)))
    c = _stored(pair, key) if m > 1 else pair(jax.random.key_data(key))
    return _interleave(jnp.real(c), jnp.imag(c), shape)
