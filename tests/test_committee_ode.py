"""The committee ODE on the one solve (issue 26): quadrature with an error control, the symmetric whitening,
the fast erf of the nodes, the adaptive step with the Lipschitz projection, per-point status, and the
accuracy reached against converged references of our own (NumPy/SciPy, ``benchmarks/committee_ode.py``).
The long references (alpha = 10) are ``slow``."""

import math
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

import jaxadv
from jaxadv.committee import (
    CommitteeParams,
    CommitteeSpec,
    CommitteeState,
    GaussRule,
    averages,
    committee_drift,
    geometry,
    solve_committee_ode,
    two_cluster,
    xor,
)
from jaxadv.committee.fields import erf_gprime
from jaxadv.committee.ode import _grid_field, _sign_known, solve_fixed_step
from jaxadv.committee.quadrature import choose_rule, chunked_nodes, rule_ladder, tensor_nodes, weighted_sums
from jaxadv.ode.rk4 import RK4
from jaxadv.ode.solve import STATUS_OK, STATUS_STEP_FAILURE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.committee_ode import numpy_field, peer_solve, start, tensor_rule  # noqa: E402

sys.path.remove(ROOT)

averages_jit = jax.jit(averages, static_argnames=("spec", "rule"))
XOR_PRESET = (xor(3.0, 0.5), CommitteeParams(eta_w=1.0, eta_b=0.5, eta_v=0.0, eps=0.3))


def flat_end(sol):
    return np.concatenate([np.asarray(z)[-1].ravel() for z in (sol.Q, sol.R, sol.b, sol.v)])


# --- the pieces ---------------------------------------------------------------------------------------


def test_erf_gprime_matches_scipy():
    x = np.concatenate([np.linspace(-8, 8, 160_001), np.linspace(8, 80, 500), -np.linspace(8, 80, 500), [0.0]])
    g, gp = jax.jit(erf_gprime)(jnp.asarray(x))
    assert np.max(np.abs(np.asarray(g) - np_erf(x))) < 5e-15
    np.testing.assert_allclose(np.asarray(gp), 2 / np.sqrt(np.pi) * np.exp(-x * x), rtol=1e-15, atol=1e-300)
    assert float(g[-1]) == 0.0 and np.all(np.abs(np.asarray(g)) <= 1.0)


def test_symmetric_root_whitens_and_inverts_on_the_kept_eigenspace():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 5))
    for Q in (W @ W.T, W[:2].T @ W[:2] / 3):  # full rank, and rank 2 of 5 (clipped eigenvalues)
        g = geometry(jnp.asarray(Q))
        np.testing.assert_allclose(g.L_sym @ g.L_sym.T, Q, atol=1e-12)
        np.testing.assert_allclose(g.L_sym, g.L_sym.T, atol=1e-12)
        np.testing.assert_allclose(g.P_sym, np.linalg.pinv(np.asarray(g.L_sym), rcond=1e-6), atol=1e-8)
        np.testing.assert_allclose(g.L @ g.L.T, Q, atol=1e-12)


def test_chunked_nodes_and_weighted_sums_equal_the_tensor_rule():
    for K, rule, batch in ((2, GaussRule(7, 8, 7.0, "symmetric"), 2048), (3, GaussRule(2, 8, 7.0), 1000)):
        t, w = tensor_nodes(K, rule)
        tc, wc = chunked_nodes(K, rule, batch)
        assert tc.shape[1] == K and tc.shape[2] <= batch and tc.shape[0] * tc.shape[2] >= t.shape[0]
        assert np.sum(wc) == pytest.approx(np.sum(w), rel=1e-15) and np.all(wc.ravel()[t.shape[0] :] == 0)
        f = lambda tt, ww: (ww @ jnp.cos(tt).sum(0), ww @ (tt[0] ** 2))  # noqa: E731
        got = weighted_sums(f, jnp.asarray(tc), jnp.asarray(wc))
        np.testing.assert_allclose(got, (w @ np.cos(t).sum(1), w @ t[:, 0] ** 2), rtol=1e-13)


def test_rule_ladder_width_and_node_budget():
    ladder = rule_ladder(2, 1e-7)
    assert all(r.order == 8 and r.width == 7.0 and r.whitening == "symmetric" for r in ladder)
    assert [r.panels for r in ladder[:4]] == [2, 3, 4, 5] and ladder[-1].panels == 64
    assert rule_ladder(2, 1e-11)[0].width == 8.0 and rule_ladder(2, 1e-14)[0].width == 9.0
    assert (rule_ladder(3, 1e-7)[-1].size ** 3) <= 2**21 < ((rule_ladder(3, 1e-7)[-1].panels + 4) * 8) ** 3
    assert len(rule_ladder(6, 1e-7)) == 0  # 16^6 nodes is over the budget: no ladder


def test_choose_rule_takes_the_first_rung_that_agrees_with_the_next():
    ladder = tuple(GaussRule(p, 8, 7.0, "symmetric") for p in (2, 3, 4, 5, 6))
    exact = np.array([1.0, -2.0])
    err = {2: 1e-3, 3: 1e-5, 4: 1e-8, 5: 1e-10, 6: 1e-12}  # errors falling fast, as measured on the committee
    evaluate = lambda r: exact + err[r.panels]  # noqa: E731
    c = choose_rule(evaluate, ladder, 1e-7)
    assert c.rule.panels == 4 and c.met and c.error == pytest.approx(1e-8 - 1e-10, rel=1e-6)
    c = choose_rule(evaluate, ladder, 1e-7, start=3)  # from the fourth rung (panels 5)
    assert c.rule.panels == 5 and c.met
    c = choose_rule(evaluate, ladder, 1e-14)
    assert c.rule.panels == 5 and not c.met
    with pytest.raises(ValueError, match="two are needed"):
        choose_rule(evaluate, ladder[:1], 1e-7)


def test_symmetric_whitening_is_more_accurate_than_the_eigenbasis():
    """Same nodes, same cost: the averages on the former K = 2 rule (12 x 8 on [-8, 8]) at the XOR preset's start,
    against 32 x 8 nodes an axis: symmetric root 4.6e-11, eigenbasis 1.2e-9 (measured; the eigenbasis turns the
    grid by 45 degrees off the fields' axes when Q is near the identity). On 36 nodes an axis both are ~1e-6."""
    mixture, params = XOR_PRESET
    state = CommitteeState(*(jnp.asarray(z) for z in start(2)))
    spec = CommitteeSpec(K=2)
    fine = averages_jit(state, mixture, params.eps, spec, GaussRule(32, 8, 8.0, "symmetric"))

    def error(rule):
        a = averages_jit(state, mixture, params.eps, spec, rule)
        return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, fine, strict=True))

    e_sym, e_eig = error(GaussRule(12, 8, 8.0, "symmetric")), error(GaussRule(12, 8, 8.0, "eigen"))
    assert e_sym < 1e-10 and e_sym < 0.1 * e_eig, (e_sym, e_eig)
    assert error(GaussRule(24, 8, 8.0, "eigen")) < 1e-11


def test_fgm_with_the_slopes_sign_known_is_the_same_field():
    """FGM without the first erf (``sign_known``: fixed v with sum |v_k| <= 1, so the ascended slope has the sign
    -sgn(tau)) gives the drift of the full FGM to round-off (measured: 5.6e-17 at most, K = 2 and 3, quadratic and
    logistic loss, at the XOR start and end), for every loss it is used with, and is used only where the sign is
    known."""
    mixture, params = XOR_PRESET
    rng = np.random.default_rng(5)
    for K, loss in ((2, "quadratic"), (2, "logistic"), (2, "cross_entropy"), (2, "hinge"), (3, "quadratic")):
        spec = CommitteeSpec(K=K, loss=loss)
        t, w = (jnp.asarray(z) for z in chunked_nodes(K, GaussRule(4, 8, 7.0, "symmetric"), 2048))
        for _ in range(2):
            W = rng.normal(size=(K, 6))
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            y = CommitteeState(*(jnp.asarray(z) for z in (W @ W.T, W[:, :2], rng.normal(size=K) * 0.5, rng.random(K))))
            y = y._replace(v=y.v / jnp.sum(jnp.abs(y.v)))  # sum |v_k| = 1: the sign is known
            full, fixed = (
                jax.jit(_grid_field(spec, "symmetric", False, known))(0.0, y, (params, (mixture, t, w)))
                for known in (False, True)
            )
            for a, b in zip(full, fixed, strict=True):
                np.testing.assert_allclose(b, a, atol=1e-15, rtol=0)
    v = [0.5, 0.5]
    assert _sign_known(CommitteeSpec(K=2), v, mixture.labels)
    assert not _sign_known(CommitteeSpec(K=2), [0.7, 0.5], mixture.labels)  # |sigma| may exceed |tau|
    assert not _sign_known(CommitteeSpec(K=2, train_v=True), v, mixture.labels)  # v may grow
    assert not _sign_known(CommitteeSpec(K=2, attack="pgd"), v, mixture.labels)


def test_numpy_field_is_the_same_equations():
    """The benchmark's NumPy right-hand side (written from docs/theory.md, with the explicit regression
    R^T Q^{-1}(x - m)) against jaxadv's drift on the same rule: equal to round-off, K = 2 and 3."""
    mixture, params = XOR_PRESET
    rng = np.random.default_rng(3)
    for K in (2, 3):
        W = rng.normal(size=(K, 6))
        W[:, :2] *= 3
        W /= np.linalg.norm(W, axis=1, keepdims=True)
        y = np.concatenate([(W @ W.T).ravel(), W[:, :2].ravel(), rng.normal(size=K) * 0.3, np.full(K, 1.0 / K)])
        t, w = tensor_rule(K, 3, 8, 7.0)
        f_np = numpy_field(*mixture, 1.0, 0.5, 0.3, K, t, w)(0.0, y)
        st = CommitteeState(
            jnp.asarray(W @ W.T), jnp.asarray(W[:, :2]), jnp.asarray(y[-2 * K : -K]), jnp.full(K, 1 / K)
        )
        d = jax.jit(committee_drift, static_argnames=("spec", "rule"))(
            st, mixture, params, CommitteeSpec(K=K), GaussRule(3, 8, 7.0, "symmetric")
        )
        got = np.concatenate([np.asarray(z).ravel() for z in d])
        assert np.max(np.abs(got - f_np)) < 1e-13


# --- the solve -------------------------------------------------------------------------------------------


def test_fixed_step_and_fixed_rule_reproduce_the_former_outputs():
    """Frozen from the version before the error control (main at 79c3421, float64): dt and rule given by hand
    give the same numbers (the nodes' erf and the sums now run in another order: 1e-15)."""
    a = solve_committee_ode(
        xor(3.0, 1.0),
        CommitteeParams(1.0, 0.5, 0.0, 0.3),
        CommitteeSpec(K=2),
        0.4,
        2,
        dt=0.1,
        Q0=[[1, 0.2], [0.2, 1]],
        R0=[[0.4, 0.1], [-0.1, 0.3]],
        b0=[0.1, -0.1],
        rule=GaussRule(6, 6, 7.0),
    )
    np.testing.assert_allclose(a.Q[-1, 0, 1], 0.11443208331697086, atol=1e-13, rtol=0)
    np.testing.assert_allclose(
        a.R[-1], [[0.4051860762749493, 0.06784223611777056], [-0.13592123834073624, 0.28749756321293035]], atol=1e-13
    )
    np.testing.assert_allclose(a.b[-1], [0.10550146496240638, -0.1038627189994763], atol=1e-13)
    assert a.quadrature.tol is None and int(a.n_evals) == 16 and int(a.status) == STATUS_OK
    lip = CommitteeSpec(K=2, normalise=False, lipschitz=1.0)  # the projection after every fixed step
    b = solve_committee_ode(
        two_cluster(0.7, 2.0, 1.0, 1.0),
        CommitteeParams(1.0, 0.5, 0.0, 0.5),
        lip,
        1.0,
        2,
        dt=0.05,
        Q0=[[1, 0.2], [0.2, 1]],
        R0=[[0.3], [0.1]],
        b0=[0.1, -0.1],
        v0=[0.7, 0.3],
        rule=GaussRule(6, 6, 8.0),
    )
    np.testing.assert_allclose(
        b.Q[-1], [[0.8298943160453585, 0.085019292637618], [0.085019292637618, 0.6863414279403802]], atol=1e-13
    )
    np.testing.assert_allclose(b.R[-1, :, 0], [0.5444685262659801, 0.19827102993978196], atol=1e-13)
    np.testing.assert_allclose(b.b[-1], [0.0064005099655772245, -0.14420425512584326], atol=1e-13)
    # the committee sweep's compiled chunk (committee.ode.solve_fixed_step) is the same fixed step
    y0 = CommitteeState(
        *(jnp.asarray(z, jnp.float64) for z in ([[1, 0.2], [0.2, 1]], [[0.3], [0.1]], [0.1, -0.1], [0.7, 0.3]))
    )
    p = CommitteeParams(*(jnp.asarray(z, jnp.float64) for z in (1.0, 0.5, 0.0, 0.5)))
    _, ys = solve_fixed_step(
        y0, two_cluster(0.7, 2.0, 1.0, 1.0), p, jnp.asarray(0.05), lip, GaussRule(6, 6, 8.0), 10, 2
    )
    np.testing.assert_allclose(ys.Q, b.Q, atol=1e-14)


def test_adaptive_k1_committee_is_the_unit_engine_on_the_one_solve():
    """K = 1 on the committee's fine rule is the single-layer model (section 12.9); with the same adaptive
    RK4 (embedded estimate, rtol) through jaxadv.ode.solve.solve_grid both take the same steps."""
    mp = jaxadv.ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.5, eta_w=0.4, eta_b=0.2, eps=0.8)
    ref = jaxadv.solve_ode(mp, 4.0, 4, R0=0.1, b0=0.05, rtol=1e-8, atol=1e-10, estimate="embedded")
    sol = solve_committee_ode(
        two_cluster(0.7, 2.0, 1.0, 1.5),
        CommitteeParams(0.4, 0.2, 0.0, 0.8),
        CommitteeSpec(K=1, attack="fgm"),
        4.0,
        4,
        R0=[[0.1]],
        b0=[0.05],
        v0=[1.0],
        rule=GaussRule(32, 16, 9.0),
        rtol=1e-8,
        atol=1e-10,
        tableau=RK4,
        dt=0.05,
    )
    np.testing.assert_allclose(sol.R[:, 0, 0], ref.R, atol=1e-12, rtol=0)
    np.testing.assert_allclose(sol.b[:, 0], ref.b, atol=1e-12, rtol=0)
    assert int(sol.n_evals) == int(ref.n_evals) and int(sol.status) == STATUS_OK


def test_default_control_meets_the_tolerance_k2_short():
    """The defaults (tol 1e-6: the ladder, DOPRI5) on the XOR preset's data, K = 2, to alpha = 1, against the
    NumPy field on a rule six rungs finer with DOP853 at rtol 1e-12 (measured: 1.1e-7)."""
    mixture, params = XOR_PRESET
    Q0, R0, b0, v0 = start(2)
    sol = solve_committee_ode(mixture, params, CommitteeSpec(K=2), 1.0, 2, Q0=Q0, R0=R0, b0=b0, v0=v0)
    q = sol.quadrature
    assert q.met and q.tol == 1e-6 and q.field_error <= q.field_tol == 1e-6 and q.rule.whitening == "symmetric"
    assert int(sol.status) == STATUS_OK and 10 < int(sol.n_evals) < 200
    ref, _ = peer_solve(2, (16, 8, 7.0), 1.0, method="DOP853", rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(flat_end(sol) - ref)) < 1e-6
    again = solve_committee_ode(mixture, params, CommitteeSpec(K=2), 1.0, 2, Q0=Q0, R0=R0, b0=b0, v0=v0)
    assert again.quadrature == q  # cached: no second climb


def test_grid_points_share_one_rule_and_equal_single_runs():
    mixture, _ = XOR_PRESET
    Q0, R0, b0, v0 = start(2)
    kw = dict(Q0=Q0, R0=R0, b0=b0, v0=v0, tol=1e-4)
    grid = solve_committee_ode(
        mixture, CommitteeParams(jnp.array([0.5, 1.0]), 0.5, 0.0, 0.3), CommitteeSpec(K=2), 0.5, 1, **kw
    )
    assert grid.R.shape == (2, 2, 2, 2) and grid.status.shape == (2,) and grid.quadrature.met
    for i, eta in enumerate((0.5, 1.0)):
        one = solve_committee_ode(
            mixture, CommitteeParams(eta, 0.5, 0.0, 0.3), CommitteeSpec(K=2), 0.5, 1, rule=grid.quadrature.rule, **kw
        )
        np.testing.assert_allclose(grid.R[i], one.R, atol=1e-13)
        assert int(grid.n_evals[i]) == int(one.n_evals)


def test_max_steps_gives_status_and_a_warning():
    mixture, params = XOR_PRESET
    Q0, R0, b0, v0 = start(2)
    with pytest.warns(RuntimeWarning, match="max_steps=3"):
        sol = solve_committee_ode(
            mixture,
            params,
            CommitteeSpec(K=2),
            5.0,
            2,
            Q0=Q0,
            R0=R0,
            b0=b0,
            v0=v0,
            rule=GaussRule(2, 8, 7.0),
            max_steps=3,
        )
    assert int(sol.status) == STATUS_STEP_FAILURE and bool(sol.failed) and np.isnan(float(sol.R[-1, 0, 0]))


def test_adaptive_lipschitz_projection_is_the_limit_of_the_fixed_step():
    """The projection through the adaptive step's hook: the fixed step's splitting error is first order in dt,
    so its distance to the adaptive solution (tol 1e-7) halves with dt, and the bound L stays at the cap."""
    lip = CommitteeSpec(K=2, normalise=False, lipschitz=1.0)
    kw = dict(Q0=[[1, 0.2], [0.2, 1]], R0=[[0.3], [0.1]], b0=[0.1, -0.1], v0=[0.7, 0.3], rule=GaussRule(4, 8, 7.0))
    args = (two_cluster(0.7, 2.0, 1.0, 1.0), CommitteeParams(1.0, 0.5, 0.0, 0.5), lip, 2.0, 1)
    ada = solve_committee_ode(*args, tol=1e-7, **kw)
    assert int(ada.status) == STATUS_OK
    L = 2 / math.sqrt(math.pi) * np.sum(np.abs(np.asarray(ada.v[-1])) * np.sqrt(np.diag(np.asarray(ada.Q[-1]))))
    assert L <= 1.0 + 1e-12
    # save_alpha: the fixed steps per interval are traced, one compilation for both steps
    fixed = [solve_committee_ode(*args, dt=dt, save_alpha=[0.0, 2.0], **kw) for dt in (0.02, 0.01)]
    d = [np.max(np.abs(flat_end(f) - flat_end(ada))) for f in fixed]
    assert 1.6 < d[0] / d[1] < 2.4, d


def test_bad_options_are_refused_with_their_name():
    mixture, params = XOR_PRESET
    for kw, match in (
        (dict(tol=0.0), "tol=0.0"),
        (dict(tol=float("nan")), "tol=nan"),
        (dict(rule=(6, 6, 7.0)), r"rule=\(6, 6, 7.0\)"),
        (dict(rule=GaussRule(6, 6, 7.0, "cholesky")), "rule=GaussRule"),
        (dict(dt=-1.0), "dt=-1.0"),
        (dict(estimate="richardson"), "estimate='richardson'"),
    ):
        with pytest.raises(ValueError, match=match):
            solve_committee_ode(mixture, params, CommitteeSpec(K=2), 1.0, **kw)


# --- the accuracy reached at alpha = 10 (issue 26) ----------------------------------------------------


@pytest.mark.slow
def test_default_tolerance_k2_xor_alpha_10_within_1e6_of_a_converged_reference():
    """XOR preset data, K = 2, FGM, alpha = 10 at the defaults, against the NumPy field on 20 x 8 nodes an axis
    (six rungs above the rule chosen) with DOP853 at rtol 1e-12 (measured: 2.0e-7, 103 evaluations)."""
    mixture, params = XOR_PRESET
    Q0, R0, b0, v0 = start(2)
    sol = solve_committee_ode(mixture, params, CommitteeSpec(K=2), 10.0, 1, Q0=Q0, R0=R0, b0=b0, v0=v0)
    assert sol.quadrature.met and int(sol.status) == STATUS_OK
    ref, _ = peer_solve(2, (20, 8, 7.0), 10.0, method="DOP853", rtol=1e-12, atol=1e-14)
    err = np.max(np.abs(flat_end(sol) - ref))
    print("K=2 alpha=10 error", err, "rule", sol.quadrature.rule, "evals", int(sol.n_evals))
    assert err < 1e-6


@pytest.mark.slow
def test_default_tolerance_k3_xor_alpha_10_within_1e6_of_a_converged_reference():
    """K = 3, alpha = 10 at the defaults, against jaxadv on a rule two rungs finer (80 nodes an axis) with
    DOPRI5 at rtol 1e-10, whose vector field equals the independent NumPy one on that rule to 1e-13 at the start
    and the end (NumPy on 2 x 10^6 nodes is seconds an evaluation, too slow to integrate)."""
    mixture, params = XOR_PRESET
    Q0, R0, b0, v0 = start(3)
    kw = dict(Q0=Q0, R0=R0, b0=b0, v0=v0)
    args = (mixture, params, CommitteeSpec(K=3), 10.0, 1)
    sol = solve_committee_ode(*args, **kw)
    assert sol.quadrature.met and int(sol.status) == STATUS_OK
    ladder = rule_ladder(3, sol.quadrature.field_tol)
    fine = ladder[ladder.index(sol.quadrature.rule) + 2]
    ref = solve_committee_ode(*args, rule=fine, rtol=1e-10, atol=1e-10, **kw)
    err = np.max(np.abs(flat_end(sol) - flat_end(ref)))
    print("K=3 alpha=10 error", err, "rule", sol.quadrature.rule, "evals", int(sol.n_evals), "reference", fine)
    assert err < 1e-6
    t, w = tensor_rule(3, fine.panels, fine.order, fine.width)
    f_np = numpy_field(*mixture, 1.0, 0.5, 0.3, 3, t, w)
    drift = jax.jit(committee_drift, static_argnames=("spec", "rule"))
    for y in (np.concatenate([np.asarray(z, float).ravel() for z in start(3)]), flat_end(ref)):
        parts = np.split(y, [9, 15, 18])
        st = CommitteeState(
            *(jnp.asarray(z) for z in (parts[0].reshape(3, 3), parts[1].reshape(3, 2), parts[2], parts[3]))
        )
        d = np.concatenate([np.asarray(z).ravel() for z in drift(st, mixture, params, CommitteeSpec(K=3), fine)])
        assert np.max(np.abs(d - f_np(0.0, y))) < 1e-13
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default K = 3 solve meets its tolerance without a warning
        solve_committee_ode(*args, **kw)
