"""Test and robust error: closed forms against a large sample with the actual attack applied."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxadv import ModelParams, l2_attack, robust_error, sample_example, test_error


@functools.partial(jax.jit, static_argnums=(1, 5))  # one fused program (the same draws as op by op)
def _empirical(params, N, w, b, eps_test, n, seed):
    B = jnp.zeros(N).at[0].set(1.0)
    keys = jax.random.split(jax.random.key(seed), n)
    xi, tau = jax.vmap(sample_example, (0, None, None))(keys, params, B)
    clean_wrong = jnp.sign(xi @ w - b) != tau
    xi_adv = jax.vmap(l2_attack, (0, 0, None, None))(xi, tau, w, eps_test)
    adv_wrong = jnp.sign(xi_adv @ w - b) != tau
    return jnp.mean(clean_wrong), jnp.mean(adv_wrong), w @ B


def test_errors_match_empirical_sample_with_attack():
    # Allowance: 4 binomial standard errors (fixed seed).
    N, n = 40, 400_000
    params = ModelParams(prior=0.65, rho=1.7, v1=1.4, v2=0.6, eps=0.5)
    rng = np.random.default_rng(1)
    for trial, eps_test in enumerate((0.3, 1.0)):
        w = rng.normal(size=N) + 3.0 * np.eye(N)[0]
        w = jnp.asarray(w / np.linalg.norm(w))
        b = 0.25 - 0.5 * trial
        e_clean, e_adv, R = (float(x) for x in _empirical(params, N, w, b, eps_test, n, trial))
        E = float(test_error(R, b, params))
        S = float(robust_error(R, b, eps_test, params))
        for emp, th in ((e_clean, E), (e_adv, S)):
            se = np.sqrt(th * (1 - th) / n)
            assert abs(emp - th) < 4 * se, (emp, th, se)


def test_robust_error_monotone_and_reduces_to_test_error():
    p = ModelParams(prior=0.3, rho=2.0, v1=0.5, v2=2.0)
    eps = jnp.linspace(0, 3, 31)
    S = robust_error(0.8, -0.2, eps, p)
    assert np.all(np.diff(np.asarray(S)) > 0)
    assert abs(float(S[0]) - float(test_error(0.8, -0.2, p))) < 1e-15


def test_mean_sem_leaves_a_diverged_replica_out_whole_and_is_the_textbook_formula():
    from jaxadv.analysis.stats import finite_replicas, mean_sem

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3, 2)).astype(np.float32)
    x[7, 1, 0] = np.nan  # replica 7 diverged at one save point
    x[11, 2, 1] = np.inf
    mean, sem = mean_sem(x)
    keep = np.delete(x.astype(np.float64), [7, 11], axis=0)
    assert finite_replicas(x).tolist() == [r not in (7, 11) for r in range(40)]
    assert mean.dtype == np.float64
    np.testing.assert_array_equal(mean, keep.mean(0))
    np.testing.assert_array_equal(sem, keep.std(0, ddof=1) / np.sqrt(38))
    # an explicit per-entry mask keeps the other entries of a replica
    fin = np.isfinite(x)
    m2, s2 = mean_sem(x, fin)
    col = x[:, 1, 0].astype(np.float64)[fin[:, 1, 0]]
    assert m2[1, 0] == col.mean() and s2[1, 0] == col.std(ddof=1) / np.sqrt(39)
    # fewer than two replicas: no standard error
    assert np.isnan(mean_sem(x[:1])[1]).all()
