"""Fixed points against long integrations; best achievable errors against closed forms and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from jaxadv import (
    ModelParams,
    best_robust_error,
    best_robust_error_closed,
    best_test_error,
    drift,
    fixed_point,
    robust_error,
    solve_ode,
    test_error,
)

E, P = np.meshgrid([0.0, 0.5, 1.0], [0.5, 0.6, 0.75], indexing="ij")
GRID = ModelParams(prior=P, eps=E)


@pytest.fixture(scope="module")
def fp_grid():
    return fixed_point(GRID)  # one compilation serves every test below


def test_fixed_points_match_long_integration(fp_grid):
    fp = fp_grid
    assert fp.R.shape == (3, 3)
    assert bool(jnp.all(fp.converged)) and not bool(jnp.any(fp.degenerate))
    assert float(jnp.max(fp.residual)) < 1e-12
    # every one is a stable node or focus, except p = 1/2 with eps = 1 (see below)
    assert bool(jnp.all(fp.stable[:, 1:]))
    sol = solve_ode(GRID, 6000.0, 1, dt=1.0)
    np.testing.assert_allclose(sol.R[..., -1], fp.R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.b[..., -1], fp.b, rtol=0, atol=1e-12)
    # the drift vanishes there
    # jitted: one program for the grid instead of one per operation of the drift (the same arithmetic)
    dR, db = jax.jit(jax.vmap(jax.vmap(drift)))(fp.R, fp.b, ModelParams(*(jnp.broadcast_to(x, E.shape) for x in GRID)))
    assert float(jnp.max(jnp.abs(dR))) < 1e-12 and float(jnp.max(jnp.abs(db))) < 1e-12


def test_symmetric_prior_gives_zero_bias_and_stability_from_eigenvalues(fp_grid):
    fp = jax.tree.map(lambda x: x[1, 0], fp_grid)  # prior = 0.5, eps = 0.5
    assert abs(float(fp.b)) < 1e-12
    ev = np.asarray(fp.eigenvalues)
    assert bool(fp.stable) == bool(np.all(ev.real < 0))
    assert np.all(np.asarray(fp_grid.stable) == np.all(np.asarray(fp_grid.eigenvalues).real < 0, axis=-1))
    # eigenvalues of the Jacobian by numpy agree with the 2x2 formula
    from jaxadv.analysis.fixed_points import jacobian

    J = np.asarray(jacobian(fp.R, fp.b, ModelParams(prior=0.5, eps=0.5)))
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(J)), np.sort_complex(ev), atol=1e-12)


def test_fixed_point_validation():
    with pytest.raises(ValueError, match="alpha_warm=-1"):
        fixed_point(ModelParams(), alpha_warm=-1)
    with pytest.raises(ValueError, match="iters=0"):
        fixed_point(ModelParams(), iters=0)


def _scipy_best(p, rho, v1, v2, eps):
    f = lambda b: (
        p * norm.cdf((eps + b - rho / 2) / np.sqrt(v1)) + (1 - p) * norm.cdf((eps - b - rho / 2) / np.sqrt(v2))
    )
    # S may have a local minimum besides the global one (unequal variances): scan, then refine
    xs = np.linspace(-15, 15, 30001)
    x0 = xs[np.argmin(f(xs))]
    r = minimize_scalar(f, bounds=(x0 - 2e-3, x0 + 2e-3), method="bounded", options={"xatol": 1e-12})
    return r.fun, r.x


@pytest.mark.parametrize(
    "p,rho,v1,v2,eps",
    [
        (0.5, 2.0, 1.0, 1.0, 0.0),
        (0.7, 2.0, 1.0, 1.0, 0.0),
        (0.7, 2.0, 1.0, 1.0, 0.5),
        (0.6, 3.0, 0.5, 2.0, 0.3),
        (0.6, 1.5, 2.0, 0.7, 0.2),
        (0.8, 1.5, 2.0, 0.7, 0.2),
    ],
)
def test_best_error_against_scipy(p, rho, v1, v2, eps):
    params = ModelParams(prior=p, rho=rho, v1=v1, v2=v2)
    best = best_robust_error(params, eps)
    f, b = _scipy_best(p, rho, v1, v2, eps)
    assert abs(float(best.error) - f) < 1e-10
    if np.isfinite(float(best.b)):
        assert abs(float(best.b) - b) < 1e-5
    else:  # constant classifier: scipy runs to the edge of its bracket on the same side
        assert abs(b) > 10 and np.sign(b) == np.sign(float(best.b))
    if v1 == v2:
        closed = best_robust_error_closed(params, eps)
        assert abs(float(closed.error) - float(best.error)) < 1e-12
        np.testing.assert_allclose(float(closed.b), -(v1 / (rho - 2 * eps)) * np.log(p / (1 - p)), atol=1e-12)
    # R = 1 is optimal: no R < 1 beats it at the optimal threshold, and S matches robust_error
    Rs = jnp.linspace(0.0, 1.0, 11)
    vals = robust_error(Rs, best.b, eps, params)
    assert float(jnp.min(vals)) >= float(best.error) - 1e-14
    assert abs(float(vals[-1]) - float(best.error)) < 1e-14


def test_best_errors_are_lower_bounds_and_trivial_regime(fp_grid):
    best = best_test_error(GRID)
    assert bool(jnp.all(test_error(fp_grid.R, fp_grid.b, GRID) >= best.error))
    rob = best_robust_error(GRID, GRID.eps)
    assert bool(jnp.all(robust_error(fp_grid.R, fp_grid.b, GRID.eps, GRID) >= rob.error))
    # eps >= rho/2 with equal variances: only the constant classifier, S* = min(p, 1-p)
    params = ModelParams(prior=0.7)
    b = best_robust_error(params, 1.2)
    assert abs(float(b.error) - 0.3) < 1e-12 and float(b.b) == -np.inf
    c = best_robust_error_closed(params, 1.2)
    assert abs(float(c.error) - 0.3) < 1e-12
    # vmapped over a grid
    g = best_robust_error(ModelParams(prior=jnp.array([0.5, 0.7, 0.9])), jnp.array([[0.0], [0.5]]))
    assert g.error.shape == (2, 3)
