"""RK4: order of convergence, pytree states, save grid."""
import jax.numpy as jnp
import numpy as np

from jaxadv.rk4 import EULER, RK4, integrate


def _linear(t, y, args):
    # y' = A y + sin(t) forcing, exact solution known in closed form for A = -lam
    lam = args
    return -lam * y + jnp.sin(t)


def _exact(t, lam, y0):
    # y(t) = (y0 + 1/(1+lam^2)) e^{-lam t} + (lam sin t - cos t)/(1+lam^2)
    c = 1.0 / (1 + lam**2)
    return (y0 + c) * np.exp(-lam * t) + c * (lam * np.sin(t) - np.cos(t))


def _error(tableau, h_steps):
    lam, y0, T = 1.3, 0.7, 2.0
    errs = []
    for n in h_steps:
        ts, ys = integrate(_linear, jnp.asarray(y0), 0.0, T / n, n, 1, lam, tableau)
        errs.append(abs(float(ys[-1]) - _exact(T, lam, y0)))
    return np.array(errs)


def test_rk4_order_slope_is_four():
    ns = np.array([32, 64, 128, 256, 512])  # asymptotic range, above round-off
    err = _error(RK4, ns)
    slope = np.polyfit(np.log(1.0 / ns), np.log(err), 1)[0]
    assert 3.9 < slope < 4.1, slope


def test_euler_order_slope_is_one():
    ns = np.array([1024, 2048, 4096, 8192])
    slope = np.polyfit(np.log(1.0 / ns), np.log(_error(EULER, ns)), 1)[0]
    assert 0.9 < slope < 1.1, slope


def test_pytree_state_and_save_grid():
    def f(t, y, args):
        return {"a": -y["a"], "b": 2.0 * jnp.ones_like(y["b"])}

    ts, ys = integrate(f, {"a": jnp.asarray(1.0), "b": jnp.zeros(3)}, 0.5, 0.01, 10, 5)
    np.testing.assert_allclose(ts, 0.5 + 0.1 * np.arange(6), atol=1e-12)
    np.testing.assert_allclose(ys["a"], np.exp(-0.1 * np.arange(6)), rtol=1e-9)
    np.testing.assert_allclose(ys["b"][:, 0], 0.2 * np.arange(6), atol=1e-12)
    assert ys["b"].shape == (6, 3)
