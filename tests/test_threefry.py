"""jaxadv.threefry returns exactly what jax.random returns, and the kernels keep jax.random's bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv import threefry


def _eq(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _kd(k):
    return jax.random.key_data(k)


def test_cipher_matches_jax_extend():
    from jax.extend.random import threefry_2x32

    kd = _kd(jax.random.key(42))
    cnt = jnp.arange(8, dtype=jnp.uint32)
    y0, y1 = threefry.threefry2x32(kd, cnt[:4], cnt[4:])
    _eq(np.concatenate([y0, y1]), threefry_2x32(kd, cnt))


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_keys_match_jax_random(seed):
    key = jax.random.key(seed)
    for num in (1, 2, 7):
        _eq(_kd(threefry.split(key, num)), _kd(jax.random.split(key, num)))
    keys = jax.random.split(key, 5)
    for data in (0, 1, 123456, 2**32 - 1):
        ref = jax.vmap(jax.random.fold_in, (0, None))(keys, jnp.uint32(data))
        got = jax.vmap(threefry.fold_in, (0, None))(keys, jnp.uint32(data))
        _eq(_kd(got), _kd(ref))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(), (1,), (1001,), (3, 7)])
def test_draws_match_jax_random(dtype, shape):
    dtype = jnp.dtype(dtype)  # the suite enables float64 (conftest.py)
    for seed in range(4):
        key = jax.random.key(seed)
        _eq(threefry.normal(key, shape, dtype), jax.random.normal(key, shape, dtype))
        _eq(threefry.uniform(key, shape, dtype), jax.random.uniform(key, shape, dtype))
        _eq(threefry.uniform(key, shape, dtype, -2.0, 3.0), jax.random.uniform(key, shape, dtype, -2.0, 3.0))
        word = jnp.uint64 if dtype == jnp.float64 else jnp.uint32
        _eq(threefry.bits(key, shape, word), jax.random.bits(key, shape, word))


def test_draws_match_inside_vmap_and_jit():
    keys = jax.random.split(jax.random.key(3), 16)
    f = jax.jit(jax.vmap(lambda k: threefry.normal(threefry.fold_in(k, 9), (257,), jnp.float32)))
    g = jax.jit(jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 9), (257,), jnp.float32)))
    _eq(f(keys), g(keys))


def test_other_implementations_fall_back_to_jax_random():
    key = jax.random.key(0, impl="philox4x32")
    assert not threefry.is_fusable(key)
    _eq(threefry.normal(key, (5,)), jax.random.normal(key, (5,)))
    _eq(_kd(threefry.fold_in(key, 3)), _kd(jax.random.fold_in(key, 3)))
    _eq(_kd(threefry.split(key, 3)), _kd(jax.random.split(key, 3)))


def test_kernel_draws_the_examples_of_jax_random():
    """The example of a Monte Carlo step equals the draw written with jax.random directly (N-dimensional)."""
    from jaxadv import ModelParams
    from jaxadv.model.data import unit_direction
    from jaxadv.model.params import as_array_params

    N, p = 64, as_array_params(ModelParams(prior=0.3, v1=1.5, v2=0.5), jnp.float32)
    B = unit_direction(N, jnp.float32)
    key = jax.random.key(11)
    from jaxadv.model.data import sample_example

    xi, tau = sample_example(key, p, B)
    k_tau, k_z = jax.random.split(key)
    tau_ref = jnp.where(jax.random.uniform(k_tau, (), jnp.float32) < p.prior, 1.0, -1.0)
    v = jnp.where(tau_ref > 0, p.v1, p.v2)
    xi_ref = tau_ref * (p.rho / 2) * B + jnp.sqrt(v) * jax.random.normal(k_z, (N,), jnp.float32)
    _eq(tau, tau_ref)
    np.testing.assert_allclose(xi, xi_ref, rtol=0, atol=0)
