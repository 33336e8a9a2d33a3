"""RK4: order of convergence, pytree states, save grid."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxadv.ode.rk4 import EULER, RK4, integrate


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


# --- adaptive step (step doubling) ---------------------------------------------------------------


def _forced(t, y, a):
    return -a * y + jnp.sin(t)


def _forced_exact(t, a, y0=1.0):
    t = np.asarray(t)
    return (a * np.sin(t) - np.cos(t)) / (a * a + 1) + (y0 + 1 / (a * a + 1)) * np.exp(-a * t)


def test_adaptive_error_follows_the_tolerance_and_hits_save_times():
    from jaxadv.ode.rk4 import integrate_adaptive

    t_save = jnp.array([1.0, 5.0, 20.0])
    errs, evals = [], []
    for rtol in (1e-5, 1e-7, 1e-9):
        ts, ys, st = integrate_adaptive(_forced, jnp.asarray(1.0), 0.0, t_save, 0.1, 0.7, rtol=rtol, atol=rtol * 1e-2)
        np.testing.assert_array_equal(np.asarray(ts), [0.0, 1.0, 5.0, 20.0])
        errs.append(np.abs(np.asarray(ys) - _forced_exact(ts, 0.7)).max())
        evals.append(int(st.n_evals))
        assert not bool(st.failed)
        assert int(st.n_evals) == 11 * (int(st.n_accepted) + int(st.n_rejected))
    # global error below the tolerance (measured 0.15-0.21 rtol), and falling with it by at least 30x per 100x
    assert errs[0] < 1e-5 and errs[1] < 1e-7 and errs[2] < 1e-9, errs
    assert errs[0] / errs[1] > 30 and errs[1] / errs[2] > 30, errs
    # local order 5: 100x tighter costs about 100**(1/5) = 2.5x more steps
    assert 1.8 < evals[1] / evals[0] < 3.5 and 1.8 < evals[2] / evals[1] < 3.5, evals


def test_adaptive_pytree_and_vmap():
    from jaxadv.ode.rk4 import integrate_adaptive

    def f(t, y, a):
        return {"x": -a * y["x"], "y": jnp.ones_like(y["y"])}

    run = lambda a: integrate_adaptive(
        f, {"x": jnp.asarray(1.0), "y": jnp.zeros(2)}, 0.0, jnp.array([1.0, 3.0]), 0.05, a, rtol=1e-10, atol=1e-12
    )
    ts, ys, st = jax.vmap(run)(jnp.array([0.5, 2.0]))
    np.testing.assert_allclose(ys["x"], np.exp(-np.outer([0.5, 2.0], [0.0, 1.0, 3.0])), rtol=1e-8)
    np.testing.assert_allclose(ys["y"][:, :, 0], np.tile([0.0, 1.0, 3.0], (2, 1)), atol=1e-12)
    assert st.n_evals.shape == (2,) and int(st.n_evals[1]) > int(st.n_evals[0])  # the stiffer point works harder


def test_adaptive_runs_out_of_steps_with_nan_and_a_flag():
    from jaxadv.ode.rk4 import integrate_adaptive

    ts, ys, st = integrate_adaptive(
        _forced, jnp.asarray(1.0), 0.0, jnp.array([0.01, 50.0]), 0.001, 0.7, rtol=1e-12, atol=1e-14, max_steps=20
    )
    assert bool(st.failed)
    assert np.isfinite(float(ys[1])) and np.isnan(float(ys[2]))
    assert int(st.n_accepted) + int(st.n_rejected) == 20


def test_embedded_weights_are_third_order_and_not_fourth():
    # RK4's stages plus k5 = f(t + h, y_new) (FSAL): b_hat = b - (0, 0, 0, 1/6, -1/6) on (k1..k5)
    from jaxadv.ode.rk4 import _RK4_EMBEDDED_DIFF

    A = np.zeros((5, 5))
    for i, row in enumerate(RK4.a):
        A[i, : len(row)] = row
    A[4, :4] = RK4.b
    c = np.array(RK4.c + (1.0,))
    np.testing.assert_allclose(A.sum(1), c, atol=1e-15)
    b_hat = np.array(RK4.b + (0.0,))
    b_hat[3:] -= np.array(_RK4_EMBEDDED_DIFF)
    np.testing.assert_allclose(b_hat, [1 / 6, 1 / 3, 1 / 3, 0, 1 / 6], atol=1e-15)
    conditions = [(b_hat.sum(), 1), (b_hat @ c, 1 / 2), (b_hat @ c**2, 1 / 3), (b_hat @ A @ c, 1 / 6)]
    for value, exact in conditions:
        assert abs(value - exact) < 1e-15
    # order 4 fails (else the difference would not estimate an error): sum b_hat A A c = 1/36, not 1/24
    assert abs(b_hat @ A @ A @ c - 1 / 36) < 1e-15


def test_embedded_estimate_meets_the_tolerance_with_four_evaluations_a_step():
    from jaxadv.ode.rk4 import integrate_adaptive

    t_save = jnp.array([1.0, 5.0, 20.0])
    errs, steps = [], []
    executed = []  # evaluations of f as they run (a host callback per evaluation), not as counted

    def counted(t, y, a):
        jax.debug.callback(lambda: executed.append(1))
        return _forced(t, y, a)

    for rtol in (1e-5, 1e-7, 1e-9):
        executed.clear()
        ts, ys, st = integrate_adaptive(
            counted, jnp.asarray(1.0), 0.0, t_save, 0.1, 0.7, rtol=rtol, atol=rtol * 1e-2, estimate="embedded"
        )
        jax.effects_barrier()
        np.testing.assert_array_equal(np.asarray(ts), [0.0, 1.0, 5.0, 20.0])
        errs.append(np.abs(np.asarray(ys) - _forced_exact(ts, 0.7)).max())
        n = int(st.n_accepted) + int(st.n_rejected)
        steps.append(n)
        assert not bool(st.failed)
        # 4 evaluations a step and one at the start: the first stage is carried from step to step
        assert len(executed) == int(st.n_evals) == 4 * n + 1, (len(executed), int(st.n_evals), n)
    assert errs[0] < 1e-5 and errs[1] < 1e-7 and errs[2] < 1e-9, errs
    # the estimate is O(h^4): 100x tighter takes about 100**(1/4) = 3.2x more steps
    assert 2.3 < steps[1] / steps[0] < 4.5 and 2.3 < steps[2] / steps[1] < 4.5, steps


def test_embedded_estimate_refuses_other_tableaus_and_unknown_names():
    import pytest

    from jaxadv.ode.rk4 import integrate_adaptive

    with pytest.raises(ValueError, match="estimate='embedded' needs tableau=RK4"):
        integrate_adaptive(
            _forced, jnp.asarray(1.0), 0.0, jnp.array([1.0]), 0.1, 0.7, tableau=EULER, estimate="embedded"
        )
    with pytest.raises(ValueError, match="estimate='pairs'"):
        integrate_adaptive(_forced, jnp.asarray(1.0), 0.0, jnp.array([1.0]), 0.1, 0.7, estimate="pairs")


# --- Dormand--Prince 5(4), rolled stages, projection in the adaptive step ----------------------------


def _full_a(tableau):
    s = len(tableau.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        A[i, : len(row)] = row
    return A


def _order_conditions(w, A, c):
    """The 17 conditions of order 5 (trees up to 5 nodes), as (value, exact) pairs, by order."""
    Ac = A @ c
    return {
        1: [(w.sum(), 1)],
        2: [(w @ c, 1 / 2)],
        3: [(w @ c**2, 1 / 3), (w @ Ac, 1 / 6)],
        4: [(w @ c**3, 1 / 4), ((w * c) @ Ac, 1 / 8), (w @ A @ c**2, 1 / 12), (w @ A @ Ac, 1 / 24)],
        5: [
            (w @ c**4, 1 / 5),
            ((w * c**2) @ Ac, 1 / 10),
            (w @ Ac**2, 1 / 20),
            ((w * c) @ A @ c**2, 1 / 15),
            (w @ A @ c**3, 1 / 20),
            ((w * c) @ A @ Ac, 1 / 30),
            (w @ A @ (c * Ac), 1 / 40),
            (w @ A @ A @ c**2, 1 / 60),
            (w @ A @ A @ Ac, 1 / 120),
        ],
    }


def test_dopri5_is_fifth_order_with_a_fourth_order_embedded_solution():
    from jaxadv.ode.rk4 import DOPRI5

    A, b, c = _full_a(DOPRI5), np.array(DOPRI5.b), np.array(DOPRI5.c)
    np.testing.assert_allclose(A.sum(1), c, atol=1e-15)
    np.testing.assert_array_equal(A[-1, :-1], b[:-1])  # the last stage is f(t + h, y_new): first same as last
    for order, conds in _order_conditions(b, A, c).items():
        assert all(abs(v - e) < 1e-15 for v, e in conds), order
    b_hat = b - np.array(DOPRI5.e)
    conds = _order_conditions(b_hat, A, c)
    assert all(abs(v - e) < 1e-15 for k in (1, 2, 3, 4) for v, e in conds[k])
    assert max(abs(v - e) for v, e in conds[5]) > 1e-4  # not fifth order: the difference estimates an error
    ns = np.array([8, 16, 32, 64])
    slope = np.polyfit(np.log(1.0 / ns), np.log(_error(DOPRI5, ns)), 1)[0]
    assert slope > 4.8, slope  # measured 6.2 on this linear equation, which meets more conditions than trees


def test_dopri5_embedded_meets_the_tolerance_with_six_evaluations_a_step():
    from jaxadv.ode.rk4 import DOPRI5, integrate_adaptive

    t_save = jnp.array([1.0, 5.0, 20.0])
    for rtol in (1e-6, 1e-9):
        ts, ys, st = integrate_adaptive(
            _forced,
            jnp.asarray(1.0),
            0.0,
            t_save,
            0.1,
            0.7,
            rtol=rtol,
            atol=rtol * 1e-2,
            estimate="embedded",
            tableau=DOPRI5,
        )
        assert np.abs(np.asarray(ys) - _forced_exact(ts, 0.7)).max() < rtol
        assert int(st.n_evals) == 6 * (int(st.n_accepted) + int(st.n_rejected)) + 1


def test_rolled_stages_equal_unrolled_ones():
    from jaxadv.ode.rk4 import DOPRI5, integrate_adaptive, rk_stages, rk_stages_rolled

    def f(t, y, a):
        return {"u": -a * y["u"] + jnp.sin(t) * y["w"][0], "w": jnp.cos(t) * y["w"] - 0.1 * y["u"]}

    y = {"u": jnp.asarray(0.3), "w": jnp.array([1.0, -0.5])}
    for tab in (RK4, DOPRI5):
        y1, k1 = rk_stages(f, 0.2, y, 0.1, 0.7, tab)
        y2, k2 = rk_stages_rolled(f, 0.2, y, 0.1, 0.7, tab)
        for a, b in zip(jax.tree.leaves((y1, k1)), jax.tree.leaves((y2, k2)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    kw = dict(rtol=1e-9, atol=1e-11, estimate="embedded", tableau=DOPRI5)
    a = integrate_adaptive(_forced, jnp.asarray(1.0), 0.0, jnp.array([5.0]), 0.1, 0.7, **kw)
    b = integrate_adaptive(_forced, jnp.asarray(1.0), 0.0, jnp.array([5.0]), 0.1, 0.7, rolled=True, **kw)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13)
    assert int(a[2].n_evals) == int(b[2].n_evals)


def test_adaptive_step_projects_onto_the_constraint():
    """y' = (1, 0.5 - u) pushes y out of the unit disc; a projection after every step keeps it on the circle.
    The fixed step's splitting converges at first order (its Richardson limit is the constrained flow); the
    adaptive step with the projection hook converges to the same limit, at the order the splitting allows:
    an error ~ tol^(1/2) (measured 2.6e-4 at rtol 1e-6 and 2.6e-5 at 1e-8, with 2065 and 20181 evaluations),
    which is why the committee integrates the constrained flow itself (jaxadv.committee.lipschitz)."""
    from jaxadv.ode.rk4 import integrate_adaptive

    def f(t, y, a):
        return jnp.array([1.0, 0.5 - y[0]])

    def project(y):
        n = jnp.sqrt(y @ y)
        return jnp.where(n > 1.0, y / n, y)

    y0, T = jnp.array([0.0, 0.5]), 2.0
    fixed = {n: integrate(f, y0, 0.0, T / n, n, 1, None, RK4, project=project)[1][-1] for n in (1600, 3200)}
    limit = 2 * fixed[3200] - fixed[1600]
    errs = []
    for rtol in (1e-6, 1e-8):
        ts, ys, st = integrate_adaptive(
            f, y0, 0.0, jnp.array([T]), 0.01, None, rtol=rtol, atol=rtol, estimate="embedded", project=project
        )
        assert abs(float(jnp.sqrt(ys[-1] @ ys[-1])) - 1.0) < 1e-12 and not bool(st.failed)
        errs.append(float(jnp.max(jnp.abs(ys[-1] - limit))))
    assert errs[1] < 1e-4 and 6 < errs[0] / errs[1] < 16, errs
