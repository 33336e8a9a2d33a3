"""The fast generator (jaxadv.fast_random, generator="fast"): its law against the normal and the
uniform (moments in standard errors, KS, chi-square on bytes, correlations), its key scheme
(chunking, resumption, vmap against a loop, several devices) and the Monte Carlo against the ODE."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_k_se, interrupting
from scipy import stats

from jaxadv import ModelParams, fast_random, load_config, mc_summary, ode_table, simulate, solve_ode
from jaxadv.analysis.compare import compare
from jaxadv.app.checkpoint import simulate_resumable
from jaxadv.generators import FAST, JAX, get_generator
from jaxadv.mc import driver
from jaxadv.mc.full import SamplerParams, full_sampler
from jaxadv.model.data import unit_direction
from jaxadv.model.params import as_array_params

K = 4.0  # allowance in standard errors (fixed seeds)
P_MIN = 1e-3  # smallest accepted p-value of the KS and chi-square tests (fixed seeds)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def normals32():
    """10^6 float32 normals: 1000 per-step keys fold_in(key, step) x 1000 numbers, as the sampler draws."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(2024), jnp.arange(1000, dtype=jnp.uint32))
    z = jax.jit(jax.vmap(lambda k: fast_random.normal(k, (1000,), jnp.float32)))(keys)
    return np.asarray(z, np.float64)


def _moments(z, what):
    """Mean, variance, third and fourth moments against 0, 1, 0, 3 in standard errors (SE of the
    sample moment: sqrt(Var(z^k) / n) with Var z = 2 for z^2, 15 for z^3, 96 for z^4)."""
    z = z.ravel()
    n = z.size
    for k, expect, var in ((1, 0.0, 1.0), (2, 1.0, 2.0), (3, 0.0, 15.0), (4, 3.0, 96.0)):
        assert_within_k_se(np.mean(z**k), np.sqrt(var / n), expect, K, f"{what}: moment {k}")


def test_normal_moments_and_ks_float32(normals32):
    _moments(normals32, "float32")
    z = normals32.ravel()
    # skewness and excess kurtosis themselves (SE sqrt(6/n), sqrt(24/n))
    assert_within_k_se(stats.skew(z), np.sqrt(6 / z.size), 0.0, K, "skewness")
    assert_within_k_se(stats.kurtosis(z), np.sqrt(24 / z.size), 0.0, K, "excess kurtosis")
    assert stats.kstest(z, "norm").pvalue > P_MIN
    # tails: P(|z| > 3) and P(|z| > 4) (binomial SE), Box-Muller's radius law
    for t in (3.0, 4.0):
        p = 2 * stats.norm.sf(t)
        assert_within_k_se(np.mean(np.abs(z) > t), np.sqrt(p * (1 - p) / z.size), p, K, f"P(|z| > {t})")
    assert np.all(np.isfinite(z)) and np.max(np.abs(z)) < 6.7


def test_normal_float64():
    z = np.asarray(fast_random.normal(jax.random.key(5), (200_001,), jnp.float64))
    assert z.dtype == np.float64 and z.shape == (200_001,)
    _moments(z, "float64")
    assert stats.kstest(z, "norm").pvalue > P_MIN


def test_pairs_and_neighbours_are_uncorrelated(normals32):
    """Both numbers of a block (same radius), neighbouring blocks and neighbouring step keys:
    correlations of z and of z^2 (the shared radius would show there) within K/sqrt(n)."""
    z = normals32
    pairs = {
        "within a block (z_2i, z_2i+1)": (z[:, 0::2], z[:, 1::2]),
        "across blocks (z_2i+1, z_2i+2)": (z[:, 1:-1:2], z[:, 2::2]),
        "across step keys (same index)": (z[:-1], z[1:]),
    }
    for what, (a, b) in pairs.items():
        a, b = a.ravel(), b.ravel()
        se = 1 / np.sqrt(a.size)
        assert_within_k_se(np.corrcoef(a, b)[0, 1], se, 0.0, K, what)
        assert_within_k_se(np.corrcoef(a * a, b * b)[0, 1], se, 0.0, K, what + " (squares)")


def test_words_are_uniform_bytes_and_independent():
    w = np.asarray(fast_random.bits(jax.random.key(77), (1 << 20,)))
    assert w.dtype == np.uint32
    by = w.view(np.uint8)
    assert stats.chisquare(np.bincount(by, minlength=256)).pvalue > P_MIN
    for pos in range(4):  # every byte of the word, the top one included
        assert stats.chisquare(np.bincount(by[pos::4], minlength=256)).pvalue > P_MIN, f"byte {pos}"
    u = w.astype(np.float64) / 2.0**32
    se = 1 / np.sqrt(u.size // 2)
    assert_within_k_se(np.corrcoef(u[0::2], u[1::2])[0, 1], se, 0.0, K, "the two words of a block")
    assert_within_k_se(np.corrcoef(u[1:-1:2], u[2::2])[0, 1], se, 0.0, K, "neighbouring blocks")
    # both words are the cipher's: the XOR of the pair is what jax.random.bits returns
    y = w.reshape(-1, 2)
    np.testing.assert_array_equal(
        y[:8, 0] ^ y[:8, 1], np.asarray(jax.random.bits(jax.random.key(77), (8,), jnp.uint32))
    )


def test_uniform_float32_and_float64():
    for dtype, n in ((jnp.float32, 400_000), (jnp.float64, 100_000)):
        u = np.asarray(fast_random.uniform(jax.random.key(3), (n,), dtype), np.float64)
        assert u.min() >= 0 and u.max() < 1
        assert_within_k_se(u.mean(), np.sqrt(1 / 12 / n), 0.5, K, f"{dtype} mean")
        assert_within_k_se(u.var(), np.sqrt(1 / 180 / n), 1 / 12, K, f"{dtype} variance")
        assert stats.kstest(u, "uniform").pvalue > P_MIN
    v = np.asarray(fast_random.uniform(jax.random.key(3), (1000,), jnp.float32, -2.0, 3.0))
    assert v.min() >= -2 and v.max() < 3
    # a scalar is the first number of the stream
    assert float(fast_random.uniform(jax.random.key(3), (), jnp.float32)) == float(
        fast_random.uniform(jax.random.key(3), (4,), jnp.float32)[0]
    )


def test_cos_sin_polynomials_over_every_angle():
    j = jnp.arange(2**24, dtype=jnp.int32)
    c, s = jax.jit(fast_random.cos_sin_turn)(j)
    t = 2 * np.pi * np.arange(2**24, dtype=np.float64) / 2**24
    assert np.max(np.abs(np.asarray(c, np.float64) - np.cos(t))) < 2**-23
    assert np.max(np.abs(np.asarray(s, np.float64) - np.sin(t))) < 2**-23


def test_same_draws_inside_vmap_jit_and_alone():
    keys = jax.random.split(jax.random.key(9), 3)
    batched = jax.jit(jax.vmap(lambda k: fast_random.normal(k, (101,), jnp.float32)))(keys)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], fast_random.normal(keys[i], (101,), jnp.float32))
    # a longer draw starts with the shorter one (counter-based: number i depends on i and the key only)
    long = fast_random.normal(keys[0], (300,), jnp.float32)
    np.testing.assert_array_equal(long[:101], batched[0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="threefry2x32 key"):
        fast_random.normal(jax.random.key(0, impl="philox4x32"), (4,))
    with pytest.raises(ValueError, match="dtype=int32"):
        fast_random.normal(jax.random.key(0), (4,), jnp.int32)
    with pytest.raises(ValueError, match=r"generator='xor' is not one of \['fast', 'jax'\]"):
        get_generator("xor")
    assert get_generator("fast") is FAST and get_generator(JAX) is JAX
    kw = dict(N=20, alpha_max=0.5, n_save=1, replicas=2)
    with pytest.raises(ValueError, match="generator='nope'"):
        simulate(jax.random.key(0), ModelParams(), generator="nope", **kw)
    with pytest.raises(ValueError, match="generator='fast' needs sampler='full'"):
        simulate(jax.random.key(0), ModelParams(), generator="fast", sampler="reduced", **kw)
    with pytest.raises(ValueError, match="generator='fast' needs a threefry2x32 key"):
        simulate(jax.random.key(0, impl="philox4x32"), ModelParams(), generator="fast", **kw)
    assert load_config("scenario1", ["generator=fast"]).generator == "fast"
    for over, msg in (
        (["generator=bad"], "generator='bad' is not one of"),
        (["generator=fast", "sampler=reduced"], "generator='fast' needs sampler='full'"),
        (["generator=fast", "prng=rbg"], "generator='fast' needs prng='threefry2x32'"),
    ):
        with pytest.raises(ValueError, match=msg):
            load_config("scenario1", over)


# --- the key scheme: the same bits however the run is cut ---------------------------------------

KW = dict(N=48, alpha_max=2.0, replicas=5, generator="fast")
P = ModelParams(prior=0.6, eps=0.7)


@pytest.fixture(scope="module")
def reference():
    return simulate(jax.random.key(5), P, n_save=4, **KW)


def test_default_is_jax_and_fast_differs(reference):
    a = simulate(jax.random.key(5), P, n_save=4, **{**KW, "generator": "jax"})
    b = simulate(jax.random.key(5), P, n_save=4, **{k: v for k, v in KW.items() if k != "generator"})
    np.testing.assert_array_equal(a.R, b.R)
    assert not np.array_equal(a.R, reference.R)
    assert reference.finite.all() and np.max(np.abs(reference.norm - 1)) < 1e-5


def test_chunking_does_not_change_the_bits(reference):
    coarse = simulate(jax.random.key(5), P, n_save=2, **KW)
    np.testing.assert_array_equal(coarse.R, reference.R[:, ::2])
    np.testing.assert_array_equal(coarse.b, reference.b[:, ::2])


@pytest.mark.slow
def test_grid_point_is_the_simulation_of_its_key():
    grid = simulate(
        jax.random.key(4),
        ModelParams(eps=np.array([0.2, 0.9])),
        N=20,
        alpha_max=1.0,
        n_save=2,
        replicas=3,
        generator="fast",
    )
    one = simulate(
        jax.random.fold_in(jax.random.key(4), 1),
        ModelParams(eps=0.9),
        N=20,
        alpha_max=1.0,
        n_save=2,
        replicas=3,
        generator="fast",
    )
    np.testing.assert_array_equal(grid.R[1], one.R)


@pytest.mark.slow
def test_vmap_equals_loop_over_replicas_and_steps():
    N, replicas, steps = 24, 2, 12
    p = ModelParams(prior=0.4, v1=1.3, v2=0.7, eps=0.8, eta_w=0.5, eta_b=0.5)
    key = jax.random.key(11)
    mc = simulate(key, p, N=N, alpha_max=steps / N, n_save=1, replicas=replicas, dtype=jnp.float64, generator="fast")
    sampler = full_sampler(generator="fast")
    sp = SamplerParams(as_array_params(p, jnp.float64), {}, unit_direction(N, jnp.float64))
    step = jax.jit(sampler.step)
    for r, rkey in enumerate(jax.random.split(key, replicas)):
        k_init, k_run = jax.random.split(rkey)
        st = sampler.init(k_init, sp, None, 0.0)
        for mu in range(steps):
            st, obs = step(jax.random.fold_in(k_run, mu), st, sp)
        assert abs(float(obs.R) - mc.R[r, -1]) < 1e-12 and abs(float(obs.b) - mc.b[r, -1]) < 1e-12


def test_interrupted_run_resumes_to_identical_result(reference, tmp_path, monkeypatch):
    ck = str(tmp_path / "ck.npz")
    real = driver._advance
    monkeypatch.setattr(driver, "_advance", interrupting(real, 2))
    with pytest.raises(KeyboardInterrupt):
        simulate_resumable(jax.random.key(5), P, n_save=4, checkpoint=ck, checkpoint_every=0.0, **KW)
    monkeypatch.setattr(driver, "_advance", real)
    # the default generator does not pick up the fast run's checkpoint
    plan_fast = driver.plan_simulation(jax.random.key(5), P, n_save=4, **KW)
    plan_jax = driver.plan_simulation(jax.random.key(5), P, n_save=4, **{**KW, "generator": "jax"})
    assert plan_fast.identity != plan_jax.identity
    res = simulate_resumable(jax.random.key(5), P, n_save=4, checkpoint=ck, **KW)
    np.testing.assert_array_equal(res.R, reference.R)
    np.testing.assert_array_equal(res.b, reference.b)


_SCRIPT = r"""
import sys
import jax, numpy as np
jax.config.update("jax_enable_x64", True)   # as in this process (tests/conftest.py); the run is float32
from jaxadv import ModelParams, simulate
mc = simulate(jax.random.key(3), ModelParams(eps=0.5), N=40, alpha_max=0.5, n_save=2, replicas=4, generator="fast")
np.save(sys.argv[1], np.stack([mc.R, mc.b, mc.norm]))
print(jax.local_device_count())
"""


@pytest.mark.slow
def test_two_host_devices_same_bits_as_one(tmp_path):
    out = tmp_path / "two.npy"
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
    )
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "2"
    one = simulate(jax.random.key(3), ModelParams(eps=0.5), N=40, alpha_max=0.5, n_save=2, replicas=4, generator="fast")
    np.testing.assert_array_equal(np.load(out), np.stack([one.R, one.b, one.norm]))


# --- the Monte Carlo against the ODE, as tests/test_montecarlo.py with jax.random ----------------

CASES = [
    ModelParams(prior=0.5, rho=2.0, v1=1.0, v2=1.0, eta_w=0.04, eta_b=0.2, eps=1.0),
    ModelParams(prior=0.7, rho=2.0, v1=1.5, v2=0.6, eta_w=0.5, eta_b=0.5, eps=0.5),
    ModelParams(prior=0.3, rho=3.0, v1=0.7, v2=1.2, eta_w=1.0, eta_b=0.3, eps=0.0),
]


def _assert_mc_agrees_with_ode(p, seed, N, alpha_max, n_save, replicas):
    mc = simulate(jax.random.key(seed), p, N=N, alpha_max=alpha_max, n_save=n_save, replicas=replicas, generator="fast")
    ode = solve_ode(p, float(mc.alpha[-1]), n_save)
    cmp = compare(mc_summary(mc, p, 0.5), ode_table(ode, p, 0.5), allowance=0.0)
    assert cmp.worst[0] <= K, cmp.verdict()
    assert cmp.n_diverged == 0


@pytest.mark.parametrize("case", [0] + [pytest.param(c, marks=pytest.mark.slow) for c in range(1, len(CASES))])
def test_monte_carlo_agrees_with_ode(case):
    _assert_mc_agrees_with_ode(CASES[case], 100 + case, N=200, alpha_max=8.0, n_save=8, replicas=256)


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(CASES)))
def test_monte_carlo_agrees_with_ode_large(case):
    _assert_mc_agrees_with_ode(CASES[case], 200 + case, N=1000, alpha_max=40.0, n_save=20, replicas=512)
