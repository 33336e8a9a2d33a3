r"""Threefry draws written out in ``jnp`` operations, bit-identical to :mod:`jax.random`.

For a threefry2x32 key JAX (``jax_threefry_partitionable``, the default since 0.5) derives every
random word from the Threefry-2x32 block cipher :math:`T_k` applied to a 64-bit counter
:math:`i = (i_{hi}, i_{lo})`:

.. math::
    \mathrm{bits}_{32}(k)_i = y_0 \oplus y_1,\quad (y_0, y_1) = T_k(i_{hi}, i_{lo}),\qquad
    \mathrm{split}(k)_i = T_k(0, i),\qquad \mathrm{fold\_in}(k, d) = T_k(0, d),

and a float in :math:`[1, 2)` from the top mantissa bits, :math:`u = \mathrm{bitcast}(w \gg 9 \,|\,
\mathtt{0x3F800000}) - 1` (float32; float64 takes 64-bit words, ``>> 12`` and the float64
exponent), mapped to :math:`[\mathrm{lo}, \mathrm{hi})`; normals are
:math:`\sqrt2\,\operatorname{erf}^{-1}(u)` with :math:`u` uniform on :math:`(-1, 1)`.

``jax.random`` lowers the cipher on CPU as a rolled loop per call; inside a ``vmap`` over
replicas and a loop over steps that costs about three times the arithmetic. The functions here
compute the same words with the 20 rounds unrolled, so XLA fuses them with the rest of a step.
They are jitted like their ``jax.random`` counterparts (``shape`` and ``dtype`` static; pass
``shape`` as a tuple) and return exactly what ``jax.random`` returns (tested bit for bit); for any other key
implementation, or with ``jax_threefry_partitionable`` off, they call ``jax.random`` itself.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

__all__ = ["threefry2x32", "is_threefry", "is_fusable", "fold_in", "split", "bits", "uniform", "normal"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(key_words: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""The Threefry-2x32 block cipher (20 rounds; Salmon et al., SC'11), unrolled in ``jnp`` ops.

    Bit-identical to ``jax.extend.random.threefry_2x32`` (tested).

    Args:
        key_words: the two uint32 words of a threefry key (``jax.random.key_data``), shape ``(2,)``.
        x0, x1: counter words (uint32, equal shapes).

    Returns:
        ``(y0, y1)``: the enciphered words.
    """
    k0, k1 = key_words[0], key_words[1]
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def is_threefry(key: jax.Array) -> bool:
    """Whether ``key`` is a threefry2x32 key."""
    return "threefry" in str(jax.random.key_impl(key))


def is_fusable(key: jax.Array) -> bool:
    """Whether ``key`` is a threefry2x32 key drawn the partitionable way (then the unrolled forms apply)."""
    # jax.config's flags are attributes set at run time, which its type information does not declare
    return is_threefry(key) and bool(jax.config.jax_threefry_partitionable)  # type: ignore[attr-defined]


def _counters(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The 64-bit flat index of every element of ``shape`` as ``(hi, lo)`` uint32 words."""
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError(f"shape={shape!r} has {n} elements; at most 2**32 - 1 are supported")
    lo = jnp.arange(n, dtype=jnp.uint32).reshape(shape)
    return jnp.zeros(shape, jnp.uint32), lo


def _default(dtype: DTypeLike | None, widest: DTypeLike) -> np.dtype:
    """``dtype``, or ``jax.random``'s default: ``widest`` canonicalised (32 bits unless x64 is on)."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(widest if dtype is None else dtype))


def _wrap(words: jax.Array, key: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(words, impl=jax.random.key_impl(key))


def fold_in(key: jax.Array, data: ArrayLike) -> jax.Array:
    """``jax.random.fold_in(key, data)``, bit for bit: the cipher of the counter ``(0, data)``."""
    if not is_fusable(key):
        return jax.random.fold_in(key, data)
    y0, y1 = threefry2x32(jax.random.key_data(key), jnp.uint32(0), jnp.asarray(data, jnp.uint32))
    return _wrap(jnp.stack([y0, y1]), key)


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split(key, num)``, bit for bit: key ``i`` is the cipher of the counter ``(0, i)``."""
    if not is_fusable(key):
        return jax.random.split(key, num)
    hi, lo = _counters((num,))
    y0, y1 = threefry2x32(jax.random.key_data(key), hi, lo)
    return _wrap(jnp.stack([y0, y1], axis=-1), key)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def bits(key: jax.Array, shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> jax.Array:
    """``jax.random.bits(key, shape, dtype)`` for uint32 and uint64, bit for bit (default dtype as there)."""
    dtype = _default(dtype, np.uint64)
    shape = tuple(shape)
    if not is_fusable(key) or dtype not in (jnp.dtype(jnp.uint32), jnp.dtype(jnp.uint64)):
        return jax.random.bits(key, shape, dtype)
    hi, lo = _counters(shape)
    y0, y1 = threefry2x32(jax.random.key_data(key), hi, lo)
    if dtype == jnp.uint32:
        return y0 ^ y1
    return (y0.astype(jnp.uint64) << jnp.uint64(32)) | y1.astype(jnp.uint64)


_FLOAT_LAYOUT = {  # dtype -> (unsigned word, exponent-and-sign bits of 1.0, mantissa shift)
    jnp.dtype(jnp.float32): (jnp.uint32, 0x3F800000, 9),
    jnp.dtype(jnp.float64): (jnp.uint64, 0x3FF0000000000000, 12),
}


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def uniform(
    key: jax.Array,
    shape: tuple[int, ...] = (),
    dtype: DTypeLike | None = None,
    minval: ArrayLike = 0.0,
    maxval: ArrayLike = 1.0,
) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)`` (float32/float64), bit for bit."""
    dtype = _default(dtype, np.float64)
    if not is_fusable(key) or dtype not in _FLOAT_LAYOUT:
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    word, one, shift = _FLOAT_LAYOUT[dtype]
    w = bits(key, shape, word)
    floats = jax.lax.bitcast_convert_type((w >> word(shift)) | word(one), dtype) - jnp.asarray(1, dtype)
    lo = jnp.asarray(minval, dtype)
    hi = jnp.asarray(maxval, dtype)
    return jnp.maximum(lo, floats * (hi - lo) + lo)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def normal(key: jax.Array, shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> jax.Array:
    r"""``jax.random.normal(key, shape, dtype)`` (real float32/float64), bit for bit:
    :math:`\sqrt2\,\operatorname{erf}^{-1}(u)`, :math:`u` uniform on ``(nextafter(-1, 0), 1)``."""
    dtype = _default(dtype, np.float64)
    if not is_fusable(key) or dtype not in _FLOAT_LAYOUT:
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = uniform(key, shape, dtype, lo, 1.0)
    return jnp.asarray(np.sqrt(2), dtype) * jax.lax.erf_inv(u)
