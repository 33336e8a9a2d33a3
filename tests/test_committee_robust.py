"""The committee's robust error by one ball maximisation per node (``method="threshold"``, the default)
against the bisection reference (``method="bisect"``) and against brute force: sampled examples, each
attacked by a dense search of the ball."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv.committee import CommitteeState, GaussRule, committee_output, geometry, two_cluster, xor
from jaxadv.committee.measures import clean_error, robust_error

SMALL = GaussRule(2, 4, 6.0)


def _state(K, signed):
    R = np.array([[0.5, -0.1], [-0.4, 0.2], [0.1, -0.45], [-0.2, -0.3]])[:K]
    Q = R @ R.T + np.diag(1 - np.sum(R * R, 1))
    Q[0, 1] = Q[1, 0] = Q[0, 1] - 0.2
    v = np.array([0.7, -0.3, 0.4, 0.25])[:K] if signed else np.full(K, 1.0 / K)
    return CommitteeState(jnp.asarray(Q), jnp.asarray(R), jnp.asarray([0.1, -0.2, 0.05, 0.0][:K]), jnp.asarray(v))


@pytest.mark.parametrize(
    "K,signed,rule",
    [
        pytest.param(2, True, SMALL, marks=pytest.mark.slow),
        pytest.param(3, True, SMALL, marks=pytest.mark.slow),
        pytest.param(3, False, SMALL, marks=pytest.mark.slow),
        pytest.param(2, True, None, marks=pytest.mark.slow),
    ],
)
def test_threshold_equals_bisection_reference(K, signed, rule):
    st, mix = _state(K, signed), xor(3.0, 0.7)
    for eps in (0.0, 0.4, 1.2):
        fast = float(robust_error(st, mix, eps, rule))
        ref = float(robust_error(st, mix, eps, rule, method="bisect"))
        # the bisection's own resolution: 30 halvings of [-10, 10], 2e-8 in t
        assert abs(fast - ref) <= 1e-7, (eps, fast, ref)
    assert abs(float(robust_error(st, mix, 0.0, rule)) - float(clean_error(st, mix, rule))) <= 1e-7


def test_threshold_two_clusters_k1_closed_form_limit():
    """K = 1 (the single-layer closed form is tested in test_committee.py) and a zero second layer."""
    st = CommitteeState(jnp.eye(1), jnp.array([[0.6]]), jnp.array([0.1]), jnp.array([1.0]))
    import jaxadv

    mp = jaxadv.ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.5)
    mix = two_cluster(0.7, 2.0, 1.0, 1.5)
    ref = float(jaxadv.robust_error(0.6, 0.1, 0.5, mp))
    assert abs(float(robust_error(st, mix, 0.5)) - ref) <= 1e-10
    zero = st._replace(v=jnp.array([0.0]))
    assert float(robust_error(zero, mix, 0.5)) == 1.0


@pytest.mark.parametrize(
    "n,n_dir,rule",
    [
        (2000, 4000, None),  # measured: 0.6726 against 0.6765, -0.37 SE
        pytest.param(20000, 20000, None, marks=pytest.mark.slow),
    ],
)
def test_robust_error_k3_against_dense_search_of_sampled_examples(n, n_dir, rule):
    """K = 3, signed second layer: the fraction of ``n`` sampled examples that some point of a dense set of
    ``n_dir`` directions on the ball's boundary turns into errors, within 4 standard errors (the dense set
    can only miss attacks, so the brute-force fraction is, if anything, low)."""
    K, eps = 3, 0.5
    st, mix = _state(K, True), xor(3.0, 0.7)
    Q, R, b, v = st
    k1, k2 = jax.random.split(jax.random.key(7))
    c = jax.random.categorical(k1, jnp.log(mix.priors), shape=(n,))
    L = geometry(Q).L
    x = (mix.centres[c] @ R.T - b[None, :]) + jnp.sqrt(mix.variances[c])[:, None] * (
        jax.random.normal(k2, (n, K), jnp.float64) @ L.T
    )
    tau = mix.labels[c]
    E = np.random.default_rng(3).normal(size=(n_dir, K))
    U = jnp.asarray(eps * (E / np.linalg.norm(E, axis=1, keepdims=True))) @ L.T
    worst = jax.jit(jax.vmap(lambda a, t: jnp.min(t * committee_output(a[None, :] + U, v))))(x, tau)
    brute = float(jnp.mean(worst <= 0))
    got = float(robust_error(st, mix, eps, rule))
    se = np.sqrt(brute * (1 - brute) / n)
    assert abs(got - brute) <= 4 * se, (got, brute, se)
    assert got > float(clean_error(st, mix, rule))
