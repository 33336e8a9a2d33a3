"""Gaussian averages of the force against scipy.integrate.quad (float64, 1e-13)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf

from jaxadv.model.losses import QUADRATIC, force, force_moments
from jaxadv.quadrature import gauss_hermite_mean, gauss_legendre_mean


def _delta(x, tau):
    return (tau - erf(x)) * 2 / np.sqrt(np.pi) * np.exp(-x * x)


def _quad_mean(f, m, v):
    s = np.sqrt(v)
    g = lambda x: f(x) * np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)
    lo, hi = m - 40 * s, m + 40 * s
    pts = [p for p in (-3.0, 0.0, 3.0) if lo < p < hi]
    return quad(g, lo, hi, points=pts, epsabs=1e-15, epsrel=1e-13, limit=500)[0]


GRID = list(itertools.product([-5.0, -1.3, 0.0, 0.4, 2.5], [0.05, 0.5, 1.0, 2.0, 8.0], [1.0, -1.0]))


def test_force_is_minus_derivative_of_quadratic_loss():
    x = jnp.linspace(-3, 3, 13)
    for tau in (1.0, -1.0):
        np.testing.assert_allclose(force(QUADRATIC, x, tau), _delta(np.asarray(x), tau), atol=1e-14)


@pytest.mark.parametrize("method", ["closed", "quadrature"])
def test_force_moments_against_quad(method):
    m, v, tau = (jnp.asarray(a) for a in zip(*GRID, strict=True))
    d1, d2 = force_moments(QUADRATIC, m, v, tau, method)
    for i, (mi, vi, ti) in enumerate(GRID):
        assert abs(float(d1[i]) - _quad_mean(lambda x, ti=ti: _delta(x, ti), mi, vi)) < 1e-13, (mi, vi, ti)
        assert abs(float(d2[i]) - _quad_mean(lambda x, ti=ti: _delta(x, ti) ** 2, mi, vi)) < 1e-13, (mi, vi, ti)


def test_rules_on_polynomials_and_smooth_functions():
    m, v = 0.3, 1.7
    # E[x^4] = m^4 + 6 m^2 v + 3 v^2 (exact for both rules)
    exact = m**4 + 6 * m**2 * v + 3 * v**2
    assert abs(float(gauss_hermite_mean(lambda x: x**4, m, v)) - exact) < 1e-11
    assert abs(float(gauss_legendre_mean(lambda x: x**4, m, v)) - exact) < 1e-11
    # E[cos x] = cos(m) exp(-v/2)
    assert abs(float(gauss_legendre_mean(jnp.cos, m, v)) - np.cos(m) * np.exp(-v / 2)) < 1e-13


def test_owens_t_against_scipy():
    from scipy.special import owens_t as scipy_owens_t

    from jaxadv.model.losses import owens_t

    h = np.linspace(-12.0, 12.0, 801)
    for a in (0.05, 0.5, 1 / np.sqrt(2), 0.9, 1.0):
        np.testing.assert_allclose(np.asarray(owens_t(jnp.asarray(h), a)), scipy_owens_t(h, a), rtol=0, atol=1e-15)


def test_closed_form_moments_to_machine_precision_on_a_wide_grid():
    """<delta>, <delta^2> of the quadratic loss (Owen's T form) against quad, m in [-8, 8], v in [0.01, 100]."""
    worst = 0.0
    for mi, vi, ti in itertools.product(np.linspace(-8, 8, 9), np.geomspace(0.01, 100, 9), (1.0, -1.0)):
        d1, d2 = force_moments(QUADRATIC, jnp.asarray(mi), jnp.asarray(vi), jnp.asarray(ti), "closed")
        worst = max(
            worst,
            abs(float(d1) - _quad_mean(lambda x, ti=ti: _delta(x, ti), mi, vi)),
            abs(float(d2) - _quad_mean(lambda x, ti=ti: _delta(x, ti) ** 2, mi, vi)),
        )
    assert worst < 1e-14, worst
