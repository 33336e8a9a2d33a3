"""ODE right-hand side and trajectory against an independent SciPy implementation."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.special import erf

from jaxadv import ModelParams, drift, solve_ode
from jaxadv.ode import solve as ode_module


def _delta(x, tau):
    return (tau - erf(x)) * 2 / np.sqrt(np.pi) * np.exp(-x * x)


def _avg(f, m, v):
    g = lambda x: f(x) * np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)
    s = np.sqrt(v)
    return quad(g, m - 30 * s, m + 30 * s, epsabs=1e-14, epsrel=1e-12, limit=400)[0]


def rhs_reference(R, b, p):
    """The ODEs written out independently, Gaussian averages by scipy quad."""
    prior, rho, v1, v2, eta_w, eta_b, eps = p
    dR = db = 0.0
    for tau, wt, v in ((1.0, prior, v1), (-1.0, 1 - prior, v2)):
        m = tau * rho * R / 2 - b - tau * eps
        d1 = _avg(lambda x, tau=tau: _delta(x, tau), m, v)
        d2 = _avg(lambda x, tau=tau: _delta(x, tau) ** 2, m, v)
        dR += eta_w * (1 - R * R) * rho / 2 * wt * tau * d1 - eta_w**2 / 2 * R * wt * v * d2
        db += -eta_b * wt * d1
    return np.array([dR, db])


_X, _W = np.polynomial.legendre.leggauss(240)


def rhs_legendre(R, b, p, span=12.0):
    """The same right-hand side with each Gaussian average a 240-node Gauss-Legendre sum over the mean
    +- 12 standard deviations (equal to :func:`rhs_reference` to 1e-15, tested; 40 times cheaper, for the
    trajectories)."""
    prior, rho, v1, v2, eta_w, eta_b, eps = p
    dR = db = 0.0
    g = np.exp(-((span * _X) ** 2) / 2) / np.sqrt(2 * np.pi) * span * _W
    for tau, wt, v in ((1.0, prior, v1), (-1.0, 1 - prior, v2)):
        z = tau * rho * R / 2 - b - tau * eps + span * np.sqrt(v) * _X
        d = _delta(z, tau)
        d1, d2 = g @ d, g @ (d * d)
        dR += eta_w * (1 - R * R) * rho / 2 * wt * tau * d1 - eta_w**2 / 2 * R * wt * v * d2
        db += -eta_b * wt * d1
    return np.array([dR, db])


PARAMS = [
    ModelParams(prior=0.5, rho=2.0, v1=1.0, v2=1.0, eta_w=0.04, eta_b=0.2, eps=1.0),
    ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.0, eta_w=0.04, eta_b=0.2, eps=1.0),
    ModelParams(prior=0.35, rho=3.0, v1=1.7, v2=0.5, eta_w=0.5, eta_b=0.8, eps=0.3),
    ModelParams(prior=0.6, rho=1.0, v1=0.8, v2=2.5, eta_w=1.5, eta_b=0.1, eps=0.0),
]


def test_rhs_against_quad_reference():
    for p in PARAMS:
        for R, b in ((0.0, 0.0), (0.5, -0.7), (0.95, 1.2), (-0.3, 0.4)):
            got = np.array([float(x) for x in drift(jnp.asarray(R), jnp.asarray(b), p)])
            np.testing.assert_allclose(got, rhs_reference(R, b, p), atol=1e-13, rtol=0)
            np.testing.assert_allclose(rhs_legendre(R, b, p), rhs_reference(R, b, p), atol=1e-14, rtol=0)


@functools.cache
def reference_trajectory(i: int) -> np.ndarray:
    """DOP853 on the independent right-hand side (:func:`rhs_legendre`) for ``PARAMS[i]`` from
    (R, b) = (0.1, 0.2), at alpha = 0, 5, ..., 40, computed once for the tests that compare with it."""
    p = PARAMS[i]
    return solve_ivp(
        lambda t, y: rhs_legendre(y[0], y[1], p),
        (0, 40.0),
        [0.1, 0.2],
        method="DOP853",
        t_eval=np.linspace(0.0, 40.0, 9),
        rtol=1e-12,
        atol=1e-13,
    )


def test_trajectory_against_solve_ivp():
    for i, p in enumerate(PARAMS):
        sol = solve_ode(p, alpha_max=40.0, n_save=8, dt=0.02, R0=0.1, b0=0.2)
        ref = reference_trajectory(i)
        np.testing.assert_allclose(np.asarray(sol.alpha), ref.t, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(sol.R), ref.y[0], atol=1e-10)
        np.testing.assert_allclose(np.asarray(sol.b), ref.y[1], atol=1e-10)


def test_grid_is_vmap_of_points_and_no_recompile():
    prior = jnp.array([0.3, 0.5, 0.8])
    eps = jnp.array([0.0, 0.5, 1.0])
    grid = solve_ode(ModelParams(prior=prior, eps=eps), alpha_max=5.0, n_save=5)
    for i in range(3):
        one = solve_ode(ModelParams(prior=float(prior[i]), eps=float(eps[i])), alpha_max=5.0, n_save=5)
        np.testing.assert_allclose(grid.R[i], one.R, rtol=0, atol=1e-14)
        np.testing.assert_allclose(grid.b[i], one.b, rtol=0, atol=1e-14)
    before = ode_module._solve._cache_size()
    solve_ode(ModelParams(prior=0.61, rho=2.5, eps=0.2, eta_w=0.3), alpha_max=5.0, n_save=5)
    assert ode_module._solve._cache_size() == before


def test_symmetric_case_keeps_b_zero():
    sol = solve_ode(ModelParams(prior=0.5, v1=1.0, v2=1.0), alpha_max=50.0, n_save=5)
    assert float(jnp.max(jnp.abs(sol.b))) < 1e-14


def test_adaptive_trajectory_against_solve_ivp():
    """Adaptive RK4 (step doubling) at rtol 1e-10 against DOP853 on the independent right-hand side."""
    for i, p in enumerate(PARAMS):
        sol = solve_ode(p, alpha_max=40.0, n_save=8, R0=0.1, b0=0.2, rtol=1e-10)
        ref = reference_trajectory(i)
        np.testing.assert_allclose(np.asarray(sol.alpha), ref.t, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(sol.R), ref.y[0], atol=1e-10)
        np.testing.assert_allclose(np.asarray(sol.b), ref.y[1], atol=1e-10)
        assert int(sol.n_evals) < 3000  # measured 550-2310; the fixed step above makes 8000


def test_adaptive_long_horizon_grid_matches_fine_fixed_step():
    """To alpha = 1000 on a small grid: rtol 1e-9 within 1e-8 of RK4 at dt = 0.05, at a tenth of the work."""
    grid = ModelParams(prior=jnp.array([0.3, 0.5, 0.8]), eps=jnp.array([0.0, 1.0, 1.4]))
    fine = solve_ode(grid, 1000.0, 4, dt=0.05)
    ada = solve_ode(grid, 1000.0, 4, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ada.R), np.asarray(fine.R), atol=1e-8, rtol=0)
    np.testing.assert_allclose(np.asarray(ada.b), np.asarray(fine.b), atol=1e-8, rtol=0)
    assert ada.n_evals.shape == (3,) and int(ada.n_evals.max()) < int(fine.n_evals.max()) / 10


def test_embedded_estimate_against_solve_ivp():
    """RK4 with its embedded third-order estimate at rtol 1e-9: within 2e-9 of DOP853 (measured 1.5e-10 to
    5.9e-10; step doubling at the same rtol: 3e-11 to 1.4e-10 with 15-30 % fewer evaluations on these short
    horizons, the embedded estimate pays on long ones, see benchmarks/ode_throughput.py). Two of the four
    parameter sets: the quad reference is slow."""
    for i in (2, 3):
        sol = solve_ode(PARAMS[i], alpha_max=40.0, n_save=8, R0=0.1, b0=0.2, rtol=1e-9, estimate="embedded")
        ref = reference_trajectory(i)
        np.testing.assert_allclose(np.asarray(sol.alpha), ref.t, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(sol.R), ref.y[0], atol=2e-9, rtol=0)
        np.testing.assert_allclose(np.asarray(sol.b), ref.y[1], atol=2e-9, rtol=0)
    with pytest.raises(ValueError, match="estimate='rk45'"):
        solve_ode(PARAMS[0], 10.0, 2, rtol=1e-6, estimate="rk45")


def test_adaptive_bad_tolerances_and_step_budget():
    import pytest

    p = PARAMS[0]
    for kw, name in (
        (dict(rtol=-1.0), "rtol"),
        (dict(atol=float("nan")), "atol"),
        (dict(rtol=0.0, atol=0.0), "rtol=0"),
        (dict(rtol=1e-6, max_steps=0), "max_steps"),
    ):
        with pytest.raises(ValueError, match=name):
            solve_ode(p, 10.0, 2, **kw)
    with pytest.warns(RuntimeWarning, match="max_steps=5"):
        sol = solve_ode(p, 100.0, 2, rtol=1e-10, max_steps=5)
    assert np.isnan(float(sol.R[-1]))


def test_adaptive_pure_relative_tolerance_with_a_component_at_zero():
    """atol=0 while b stays exactly 0 (symmetric clusters): 0/0 in the error norm counts as 0."""
    sol = solve_ode(ModelParams(prior=0.5), 10.0, 2, rtol=1e-8, atol=0.0)
    assert np.all(np.asarray(sol.b) == 0.0) and np.all(np.isfinite(np.asarray(sol.R)))
    ref = solve_ode(ModelParams(prior=0.5), 10.0, 2, dt=0.01)
    np.testing.assert_allclose(np.asarray(sol.R), np.asarray(ref.R), rtol=1e-7, atol=0)
    assert int(sol.n_evals) < 2000
