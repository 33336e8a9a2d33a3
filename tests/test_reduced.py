"""The exact reduced sampler against brute force: the step map against the N-dimensional
update, its random numbers against their exact laws, and whole runs against the full simulation
(two-sample KS tests and moments within stated standard errors, at fixed seeds)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jaxadv.mc.reduced as red
from jaxadv import Attack, ModelParams, load_config, simulate, training_rule
from jaxadv.app.checkpoint import simulate_resumable
from jaxadv.mc.full import init_replica
from jaxadv.model.losses import QUADRATIC, Loss
from jaxadv.model.params import as_array_params
from jaxadv.model.student import Student, sgd_step

PARAMS = ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=2.0, eta_w=0.5, eta_b=0.5, eps=0.5)
KS_P_MIN = 1e-3  # smallest accepted p-value of a KS test (fixed seeds, a handful of tests)
K_SE = 4.0  # allowed deviation of a mean or a variance, in standard errors


REPS = 400  # one replica count for all reduced runs: one compilation (N and alpha are traced)


@jax.jit
def _chi2_batch(keys, dof):
    return jax.vmap(red.chi2, (0, None))(keys, dof)


@jax.jit
def _init_batch(keys, N):
    return jax.vmap(lambda k: red.init_reduced(k, N).R)(keys)


def _draw(fn, seed, n, *args):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(fn(keys, *args), dtype=np.float64)


@pytest.mark.parametrize("dof", [1.0, 3.0, 18.0, 998.0, 99998.0])
def test_chi2_matches_scipy(dof):
    x = _draw(_chi2_batch, 1, 20000, jnp.float32(dof))
    assert st.kstest(x, st.chi2(dof).cdf).pvalue > KS_P_MIN
    n = x.size
    assert abs(x.mean() - dof) < K_SE * np.sqrt(2 * dof / n)
    # variance 2k; standard error of the sample variance sqrt((mu4 - sigma^4)/n), mu4 = 12k(k+4)
    se_var = np.sqrt((12 * dof * (dof + 4) - (2 * dof) ** 2) / n)
    assert abs(x.var(ddof=1) - 2 * dof) < K_SE * se_var


def test_chi2_zero_dof_is_zero():
    assert np.all(_draw(_chi2_batch, 2, 20000, jnp.float32(0.0)) == 0.0)


@pytest.mark.parametrize("dof", [998.0])
def test_gamma_fallback_loop_alone_is_exact(monkeypatch, dof):
    """With no unconditional rounds every draw goes through the rejection loop."""
    monkeypatch.setattr(red, "GAMMA_ROUNDS", 0)
    fn = jax.jit(jax.vmap(red.chi2, (0, None)))  # traced afresh with the patched constant
    x = _draw(fn, 3, 10000, jnp.float32(dof))
    assert st.kstest(x, st.chi2(dof).cdf).pvalue > KS_P_MIN


@pytest.mark.parametrize("N", [3, 20, 1000])
def test_initial_overlap_is_exact(N):
    """R0 of a uniform w: (R0 + 1)/2 ~ Beta((N-1)/2, (N-1)/2); compared with the full init too."""
    R = _draw(_init_batch, 5, 20000, jnp.float32(N))
    a = (N - 1) / 2
    assert st.kstest((R + 1) / 2, st.beta(a, a).cdf).pvalue > KS_P_MIN
    B = jnp.zeros(N).at[0].set(1.0)
    Rf = _draw(jax.vmap(lambda k: init_replica(k, B).w[0]), 6, 5000)
    assert st.ks_2samp(R, Rf).pvalue > KS_P_MIN


LOGISTIC = Loss("logistic", lambda x, t: jnp.log1p(jnp.exp(-2 * t * x)))


@pytest.mark.parametrize(
    "R,tau,loss",
    [
        (0.3, 1.0, QUADRATIC),
        (0.3, -1.0, QUADRATIC),
        (-0.8, 1.0, QUADRATIC),
        (1.0, -1.0, QUADRATIC),
        (-1.0, 1.0, QUADRATIC),
        (0.5, -1.0, LOGISTIC),
    ],
)
def test_step_map_equals_n_dimensional_update(R, tau, loss):
    """Same example, same numbers: the reduced map equals optax SGD + projection in N dims (float64).
    Any loss of the field goes through `force` unchanged (here also a logistic loss)."""
    N = 50
    p = as_array_params(PARAMS, jnp.float64)
    kz, ku = jax.random.split(jax.random.key(7))
    B = jnp.zeros(N, jnp.float64).at[0].set(1.0)
    perp = jax.random.normal(ku, (N,), jnp.float64).at[0].set(0.0)
    perp = perp / jnp.linalg.norm(perp)
    w = R * B + np.sqrt(max(1 - R * R, 0.0)) * perp
    b = 0.3
    z = jax.random.normal(kz, (N,), jnp.float64)
    v = PARAMS.v1 if tau > 0 else PARAMS.v2
    xi = tau * PARAMS.rho / 2 * B + np.sqrt(v) * z
    rule = training_rule(loss=loss)
    full = sgd_step(Student(w=w, b=jnp.asarray(b)), xi, jnp.asarray(tau), p, rule)
    g1 = jnp.dot(w, z)
    u = B - R * w
    nu = jnp.linalg.norm(u)
    g2 = jnp.where(nu > 0, jnp.dot(u, z) / jnp.where(nu > 0, nu, 1.0), 0.0)
    rest = jnp.dot(z, z) - g1**2 - g2**2
    new = red.reduced_update(jnp.asarray(R), jnp.asarray(b), tau, g1, g2, rest, p, N, rule)
    np.testing.assert_allclose(float(new.R), float(jnp.dot(full.w, B)), rtol=0, atol=1e-13)
    np.testing.assert_allclose(float(new.b), float(full.b), rtol=0, atol=1e-14)


def test_overlap_at_the_boundary_stays_finite_float64():
    mc = simulate(
        jax.random.key(1),
        PARAMS,
        N=20,
        alpha_max=2.0,
        n_save=2,
        replicas=REPS,
        R0=1.0,
        sampler="reduced",
        dtype=jnp.float64,
    )
    assert mc.R.dtype == np.float64
    assert mc.finite.all() and np.all(np.abs(mc.R) <= 1)
    np.testing.assert_array_equal(mc.norm, 1.0)


def test_refusal_hook_names_the_option():
    from jaxadv.model.rule import check_reduced_supported

    check_reduced_supported(training_rule("l2"))
    with pytest.raises(ValueError, match=r"sampler='reduced' cannot represent attack='linf'"):
        check_reduced_supported(training_rule("linf"))
    with pytest.raises(ValueError, match=r"sampler='reduced' cannot represent attack='noise'"):
        red.reduced_sampler(training_rule("noise"))
    # a user's attack without the along-w face is refused by name
    colour = Attack("colour", perturb=lambda key, xi, tau, w, eps, rp: xi)
    with pytest.raises(ValueError, match=r"sampler='reduced' cannot represent attack='colour'"):
        simulate(jax.random.key(0), PARAMS, N=10, alpha_max=1.0, sampler="reduced", rule=training_rule(colour))


def test_sampler_argument_and_config_key():
    with pytest.raises(ValueError, match=r"sampler='fast' is not one of"):
        simulate(jax.random.key(0), PARAMS, N=10, alpha_max=1.0, sampler="fast")
    assert load_config("scenario1", ["sampler=reduced"]).sampler == "reduced"
    assert load_config("scenario1").sampler == "full"
    with pytest.raises(ValueError, match=r"sampler='fast'"):
        load_config("scenario1", ["sampler=fast"])


def test_chunking_and_checkpoint_do_not_change_bits(tmp_path):
    """Step keys are fold_in(replica_key, step): the save interval and checkpointing are invisible."""
    kw = dict(N=40, alpha_max=2.0, replicas=REPS, sampler="reduced")
    a = simulate(jax.random.key(3), PARAMS, n_save=4, **kw)
    b = simulate(jax.random.key(3), PARAMS, n_save=2, **kw)
    np.testing.assert_array_equal(a.R[:, ::2], b.R)
    ck = tmp_path / "ck.npz"
    c = simulate_resumable(jax.random.key(3), PARAMS, n_save=4, checkpoint=str(ck), checkpoint_every=0.0, **kw)
    np.testing.assert_array_equal(a.R, c.R)
    assert not ck.exists()


def _compare_full_reduced(N, alpha_max, replicas, seed):
    kw = dict(N=N, alpha_max=alpha_max, n_save=4, replicas=replicas)
    full = simulate(jax.random.key(seed), PARAMS, sampler="full", **kw)
    redu = simulate(jax.random.key(seed + 1000), PARAMS, sampler="reduced", **kw)
    assert full.finite.all() and redu.finite.all()
    n = replicas
    for name in ("R", "b"):
        X, Y = getattr(full, name).astype(np.float64), getattr(redu, name).astype(np.float64)
        for j in (2, 4):  # two save points, alpha_max/2 and alpha_max
            x, y = X[:, j], Y[:, j]
            assert st.ks_2samp(x, y).pvalue > KS_P_MIN, (name, j)
            se_mean = np.sqrt(x.var(ddof=1) / n + y.var(ddof=1) / n)
            assert abs(x.mean() - y.mean()) < K_SE * se_mean, (name, j)
            # log variance ratio: standard error sqrt(2/(n-1)) per sample (Gaussian approximation)
            se_logvar = np.sqrt(2 * 2 / (n - 1))
            assert abs(np.log(x.var(ddof=1) / y.var(ddof=1))) < K_SE * se_logvar, (name, j)


@pytest.mark.parametrize("N,alpha_max,replicas", [(20, 8.0, REPS), (200, 3.0, REPS), (2000, 0.15, REPS)])
def test_reduced_matches_full_simulation(N, alpha_max, replicas):
    _compare_full_reduced(N, alpha_max, replicas, seed=N)


@pytest.mark.slow
@pytest.mark.parametrize("N,alpha_max,replicas", [(20, 20.0, 20000), (200, 5.0, 4000), (2000, 1.0, 1000)])
def test_reduced_matches_full_simulation_slow(N, alpha_max, replicas):
    _compare_full_reduced(N, alpha_max, replicas, seed=N + 1)


def test_step_uniforms_are_the_threefry_words_of_their_counters():
    """step_uniforms against jax's own cipher: threefry_2x32(key, 0..2h-1), top 23 bits, (k + 1/2) / 2^23."""
    from jax.extend.random import threefry_2x32

    from jaxadv.mc.reduced import step_uniforms

    keys = jax.random.split(jax.random.key(11), 64)
    for n in (1, 2, 5, 6):
        h = (n + 1) // 2
        got = np.asarray(jax.vmap(lambda k, n=n: step_uniforms(k, n, jnp.float32))(keys))
        # jax's cipher on each key (vmapped: one dispatch for the 64 keys, as the loop over them gave)
        cipher = jax.vmap(lambda k, h=h: threefry_2x32(jax.random.key_data(k), jnp.arange(2 * h, dtype=jnp.uint32)))
        words = np.asarray(cipher(keys))[:, :n]
        k23 = got * 2.0**23 - 0.5
        np.testing.assert_array_equal(k23, (words >> 9).astype(np.float64))
        assert got.min() > 0 and got.max() < 1


def test_a_reduced_plan_at_huge_N_holds_no_N_vector(monkeypatch):
    """`verify --N-list 100,1000000000` grew to 8 GB before its first step: the reduced plan built the
    cluster axis B, a vector of length N the reduced chain never reads. Now no N-vector is built for it (the
    full sampler still builds its B)."""
    from jaxadv.mc import driver

    built = []
    real = driver.unit_direction
    monkeypatch.setattr(driver, "unit_direction", lambda N, dtype: built.append(N) or real(N, dtype))
    plan = driver.plan_simulation(
        jax.random.key(0), ModelParams(), N=10**9, alpha_max=2.0, n_save=4, replicas=2, sampler="reduced"
    )
    assert built == [] and np.shape(plan.sp.const) == () and float(plan.sp.const) == 1e9
    driver.plan_simulation(jax.random.key(0), ModelParams(), N=50, alpha_max=1.0, n_save=2, replicas=2)
    assert built == [50]
