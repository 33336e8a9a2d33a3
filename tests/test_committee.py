"""Two-layer committee (issue 11): ODE against the single-layer engine, an independent quadrature and
N-dimensional steps; field-space attacks against N-dimensional ones; measures; Monte Carlo against
the ODE; input validation. Long statistical runs are marked ``slow``."""

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
    Mixture,
    averages,
    committee_drift,
    committee_output,
    fgm,
    geometry,
    loss_value,
    min_margin,
    mixture_from_vectors,
    pgd,
    solve_committee_ode,
    two_cluster,
    worst_case,
    xor,
)
from jaxadv.committee.measures import clean_error, robust_error, robustness_curve
from jaxadv.committee.montecarlo import directions, init, input_attack, observe, simulate_committee, step, update

FINE = GaussRule(32, 16, 9.0)  # the single-layer engine's 1-D rule, for K = 1
averages_jit = jax.jit(averages, static_argnames=("spec", "rule"))
drift_jit = jax.jit(committee_drift, static_argnames=("spec", "rule"))


def random_weights(rng, K, N, D):
    W = rng.normal(size=(K, N))
    W[:, :D] += rng.normal(size=(K, D)) * 3
    return W / np.linalg.norm(W, axis=1, keepdims=True)


# --- K = 1 is the single-layer model -------------------------------------------------------------


@pytest.mark.parametrize("attack", ["fgm", "worst", pytest.param("pgd", marks=pytest.mark.slow)])
def test_k1_ode_equals_single_layer_engine(attack):
    mp = jaxadv.ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.5, eta_w=0.4, eta_b=0.2, eps=0.8)
    ref = jaxadv.solve_ode(mp, 2.0, 4, R0=0.1, b0=0.05)
    # PGD: 3 steps of 0.3 reach the sphere along -tau w (0.9 > eps) and stay there
    spec = CommitteeSpec(K=1, attack=attack, pgd_steps=3, pgd_step=0.3)
    sol = solve_committee_ode(
        two_cluster(0.7, 2.0, 1.0, 1.5),
        CommitteeParams(0.4, 0.2, 0.0, 0.8),
        spec,
        2.0,
        4,
        R0=[[0.1]],
        b0=[0.05],
        v0=[1.0],
        rule=FINE,
        dt=0.05,  # the fixed RK4 step of solve_ode (jaxadv.defaults.DT): the same steps, so equal to round-off
    )
    np.testing.assert_allclose(sol.R[:, 0, 0], ref.R, atol=1e-10, rtol=0)
    np.testing.assert_allclose(sol.b[:, 0], ref.b, atol=1e-10, rtol=0)
    assert np.all(sol.Q == 1.0)


@pytest.mark.parametrize("attack", ["fgm", "worst", pytest.param("pgd", marks=pytest.mark.slow)])
def test_k1_attacks_are_minus_tau_eps_w(attack):
    rng = np.random.default_rng(0)
    W = random_weights(rng, 1, 30, 1)
    state = init(jax.random.key(0), directions(1, 30, jnp.float64), 1, v0=jnp.ones(1))
    state = state._replace(W=jnp.asarray(W))
    spec = CommitteeSpec(K=1, attack=attack, pgd_steps=4, pgd_step=0.3)
    attack_nd = jax.jit(input_attack, static_argnames="spec")
    for tau in (1.0, -1.0):
        xi = jnp.asarray(rng.normal(size=30))
        delta = attack_nd(jax.random.key(1), state, xi, tau, 0.7, spec)
        np.testing.assert_allclose(delta, -tau * 0.7 * W[0], atol=1e-12)


@pytest.mark.parametrize("attack", ["fgm", pytest.param("worst", marks=pytest.mark.slow)])
def test_k1_update_equals_single_layer_sgd_step(attack):
    """The committee's N-dimensional learning rule at K = 1, v = 1 is the single-layer rule (3.2) on the
    same example, to round-off: attack, gradient step and normalisation."""
    rng = np.random.default_rng(5)
    N = 40
    mp = jaxadv.ModelParams(prior=0.6, rho=2.0, eta_w=0.7, eta_b=0.3, eps=0.5)
    params, spec = CommitteeParams(0.7, 0.3, 0.0, 0.5), CommitteeSpec(K=1, attack=attack)
    W = random_weights(rng, 1, N, 1)
    state = init(jax.random.key(0), directions(1, N, jnp.float64), 1, v0=jnp.ones(1))._replace(
        W=jnp.asarray(W), b=jnp.array([0.2])
    )
    rule = jax.jit(update, static_argnames="spec")
    for tau in (1.0, -1.0):
        xi = jnp.asarray(rng.normal(size=N)) + tau * jnp.eye(N)[0]
        new = rule(jax.random.key(1), state, xi, tau, params, spec)
        ref = jaxadv.sgd_step(jaxadv.Student(w=jnp.asarray(W[0]), b=jnp.asarray(0.2)), xi, tau, mp, jaxadv.DEFAULT_RULE)
        np.testing.assert_allclose(new.W[0], ref.w, atol=1e-14)
        np.testing.assert_allclose(new.b[0], ref.b, atol=1e-14)


@pytest.mark.slow
def test_k1_monte_carlo_matches_single_layer_in_distribution():
    """Same model, two engines: the replica means and spreads of (R, b) agree within 4 standard errors."""
    mp = jaxadv.ModelParams(prior=0.6, rho=2.0, v1=1.0, v2=1.0, eta_w=0.5, eta_b=0.3, eps=0.5)
    N, reps = 64, 256
    ref = jaxadv.simulate(jax.random.key(3), mp, N=N, alpha_max=2.0, n_save=2, replicas=reps, R0=0.2, dtype=jnp.float64)
    mc = simulate_committee(
        jax.random.key(4),
        two_cluster(0.6, 2.0),
        CommitteeParams(0.5, 0.3, 0.0, 0.5),
        CommitteeSpec(K=1),
        N=N,
        alpha_max=2.0,
        n_save=2,
        replicas=reps,
        Q0=[[1.0]],
        R0=[[0.2]],
        v0=[1.0],
        dtype=jnp.float64,
    )
    for a, c in ((ref.R, mc.R[..., 0, 0]), (ref.b, mc.b[..., 0])):
        se = np.sqrt(a.var(0, ddof=1) / reps + c.var(0, ddof=1) / reps)
        assert np.all(np.abs(a.mean(0) - c.mean(0))[1:] <= 4 * se[1:])
        # spreads: standard error of a variance ~ var * sqrt(2 / n)
        se_var = np.sqrt(2.0 / reps) * (a.var(0) + c.var(0)) / np.sqrt(2)
        assert np.all(np.abs(a.var(0) - c.var(0))[1:] <= 4 * se_var[1:])


# --- the averages against an independent quadrature -------------------------------------------


def numpy_averages(Q, R, b, v, mixture, eps, attack, h=0.04, T=10.0, steps=3, step_len=0.2):
    """Independent reference: the trapezoid rule (step h on [-T, T], spectrally accurate for these smooth,
    fast-decaying integrands) in the Cholesky coordinates of v_c Q, the regression
    E[B.xi | x] = a_c + R^T Q^{-1} (x - m_c), FGM and PGD written out in NumPy."""
    K = Q.shape[0]
    t1 = np.arange(-T, T + h / 2, h)
    w1 = h * np.exp(-t1 * t1 / 2) / np.sqrt(2 * np.pi)
    t = np.stack([g.ravel() for g in np.meshgrid(*([t1] * K), indexing="ij")], -1)
    w = np.prod(np.stack([g.ravel() for g in np.meshgrid(*([w1] * K), indexing="ij")], -1), -1)
    Qinv = np.linalg.inv(Q)
    gp = lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)
    sig = lambda x: np_erf(x) @ v

    def kappa(x, tau):
        return (sig(x) - tau)[:, None] * v * gp(x)

    def unit(k):
        n2 = np.einsum("nk,kl,nl->n", k, Q, k)[:, None]
        return np.where(n2 > 0, k / np.sqrt(np.where(n2 > 0, n2, 1.0)), 0.0)

    out = {k: 0.0 for k in ("D1", "Dy", "Dh", "DD", "Fv")}
    for a, var, tau, p in zip(
        *(np.asarray(z) for z in (mixture.centres, mixture.variances, mixture.labels, mixture.priors)), strict=True
    ):
        m = R @ a - b
        x = m + t @ np.linalg.cholesky(var * Q).T
        if attack == "fgm":
            g = eps * unit(kappa(x, tau))
        else:
            g = np.zeros_like(x)
            for _ in range(steps):
                g = g + step_len * unit(kappa(x + g @ Q, tau))
                nrm = np.sqrt(np.einsum("nk,kl,nl->n", g, Q, g))
                g = g * np.minimum(1.0, eps / nrm)[:, None]
        xt = x + g @ Q
        D = -(sig(xt) - tau)[:, None] * v * gp(xt)
        y = a + (x - m) @ Qinv @ R + g @ R
        h = xt + b
        out["D1"] += p * w @ D
        out["Dy"] += p * np.einsum("n,nk,nj->kj", w, D, y)
        out["Dh"] += p * np.einsum("n,nk,nl->kl", w, D, h)
        out["DD"] += p * var * np.einsum("n,nk,nl->kl", w, D, D)
        out["Fv"] += p * w @ (-(sig(xt) - tau)[:, None] * np_erf(xt))
    return out


@pytest.mark.parametrize(
    "case,attack",
    [
        ("xor", "fgm"),
        ("two_cluster", "pgd"),
        pytest.param("xor", "pgd", marks=pytest.mark.slow),
        pytest.param("two_cluster", "fgm", marks=pytest.mark.slow),
    ],
)
def test_averages_match_independent_quadrature(case, attack):
    rng = np.random.default_rng(7)
    if case == "xor":
        mixture, D = xor(3.0, 1.0), 2
    else:
        mixture, D = two_cluster(0.6, 2.0, 0.5, 2.0), 1
    W = random_weights(rng, 2, 20, D)
    Q, R = W @ W.T, W[:, :D]
    b, v = np.array([0.2, -0.1]), np.array([0.6, 0.3])
    state = CommitteeState(*(jnp.asarray(z) for z in (Q, R, b, v)))
    spec = CommitteeSpec(K=2, attack=attack, pgd_steps=3, pgd_step=0.2)
    got = averages_jit(state, mixture, 0.4, spec, GaussRule(16, 8, 8.0))
    ref = numpy_averages(Q, R, b, v, mixture, 0.4, attack)
    for name in ref:
        np.testing.assert_allclose(getattr(got, name), ref[name], atol=1e-6, rtol=0, err_msg=name)


def test_averages_without_attack_match_closed_form():
    r"""Oracle: with no attack (or any constant shift, here folded into b) the fields stay Gaussian and
    <Delta_k> = v_k [tau <g'_k> - sum_l v_l <erf_l g'_k>] has a closed form (tilt by e^{-x_k^2})."""
    rng = np.random.default_rng(1)
    mixture = xor(2.5, 0.8)
    W = random_weights(rng, 3, 20, 2)
    Q, R, b, v = W @ W.T, W[:, :2], rng.normal(size=3) * 0.3, np.array([0.5, -0.4, 0.3])
    got = averages_jit(
        CommitteeState(*(jnp.asarray(z) for z in (Q, R, b, v))),
        mixture,
        0.0,
        CommitteeSpec(K=3, attack="none"),
        GaussRule(8, 8, 8.0),
    )
    ref = np.zeros(3)
    for a, var, tau, p in zip(
        *(np.asarray(z) for z in (mixture.centres, mixture.variances, mixture.labels, mixture.priors)), strict=True
    ):
        m, C = R @ a - b, var * Q
        for k in range(3):
            z = 1 + 2 * C[k, k]
            norm = 2 / np.sqrt(np.pi) * np.exp(-(m[k] ** 2) / z) / np.sqrt(z)
            mt = m - C[:, k] * 2 * m[k] / z
            Ct = C - 2 * np.outer(C[:, k], C[k]) / z
            e_erf = np_erf(mt / np.sqrt(1 + 2 * np.diag(Ct)))
            ref[k] += p * v[k] * norm * (tau - v @ e_erf)
    np.testing.assert_allclose(got.D1, ref, atol=1e-9, rtol=0)


# --- the drift against N-dimensional steps ----------------------------------------------------


@pytest.mark.parametrize("N,n", [(500, 8000), pytest.param(4000, 200000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("normalise,train_v", [(True, False), (False, True)])
def test_drift_matches_mean_n_dimensional_step(normalise, train_v, N, n):
    """N times the mean one-step increment of (Q, R, b, v), averaged over n N-dimensional steps from
    one committee, equals the drift within 4 standard errors (the O(1/N) terms are far below them;
    measured: largest deviation 1.2 SE at N = 1000 with n = 20 000, 1.4 SE at N = 4000 with n = 200 000)."""
    rng = np.random.default_rng(2)
    mixture = xor(3.0, 1.0)
    W = random_weights(rng, 2, N, 2)
    if not normalise:
        W = W * np.array([[1.2], [0.8]])
    B = directions(2, N, jnp.float64)
    state0 = init(jax.random.key(0), B, 2)._replace(W=jnp.asarray(W), b=jnp.array([0.1, -0.2]), v=jnp.array([0.7, 0.4]))
    params = CommitteeParams(eta_w=1.0, eta_b=0.5, eta_v=0.5, eps=0.4)
    spec = CommitteeSpec(K=2, attack="fgm", normalise=normalise, train_v=train_v)
    obs0 = observe(state0, B)

    @jax.jit
    def increments(keys):
        new = jax.vmap(lambda k: step(k, state0, mixture, params, spec, B)[1])(keys)
        return jax.tree.map(lambda a, a0: N * (a - a0[None]), new, obs0)

    keys = jax.random.split(jax.random.key(5), n)
    inc = [increments(keys[i : i + 8000]) for i in range(0, n, 8000)]
    inc = jax.tree.map(lambda *z: jnp.concatenate(z), *inc)
    drift = drift_jit(CommitteeState(*obs0), mixture, params, spec, GaussRule(12, 8, 8.0))
    # float64 round-off of one step, times N: the normalised |w_k|^2 = 1 is reproduced only to ~N * 1e-16
    roundoff = 100 * N * np.finfo(np.float64).eps
    for name in ("Q", "R", "b", "v"):
        mean, se = np.mean(getattr(inc, name), 0), np.std(getattr(inc, name), 0, ddof=1) / np.sqrt(n)
        d = np.asarray(getattr(drift, name))
        assert np.all(np.abs(mean - d) <= 4 * se + roundoff), (name, mean, d, se)
    if train_v:
        assert np.all(np.abs(np.asarray(drift.v)) > 1e-3)


# --- field-space attacks against N-dimensional ones ---------------------------------------------


@pytest.mark.parametrize(
    "loss,random_start",
    [
        ("quadratic", False),
        ("logistic", True),
        pytest.param("logistic", False, marks=pytest.mark.slow),
        pytest.param("quadratic", True, marks=pytest.mark.slow),
    ],
)
def test_field_space_pgd_and_fgm_match_n_dimensional(loss, random_start):
    """The N-dimensional PGD (jax.grad with respect to xi) equals W^T gamma of the field-space PGD.
    With a random start the field version keeps the start's norm orthogonal to span{w_k} exactly."""
    rng = np.random.default_rng(3)
    K, N, D = 3, 40, 2
    W = jnp.asarray(random_weights(rng, K, N, D))
    state = init(jax.random.key(0), directions(D, N, jnp.float64), K)._replace(
        W=W, b=jnp.array([0.1, -0.3, 0.2]), v=jnp.array([0.8, -0.5, 0.4])
    )
    geom = geometry(W @ W.T)
    attack_nd = jax.jit(input_attack, static_argnames="spec")
    fgm_f = jax.jit(fgm, static_argnames="loss")
    pgd_f = jax.jit(pgd, static_argnames=("loss", "steps"))
    for trial in range(6):
        xi = jnp.asarray(rng.normal(size=N)) + W[trial % K] * 1.5
        tau = 1.0 if trial % 2 else -1.0
        x = W @ xi - state.b
        for spec, eps in (
            (CommitteeSpec(K=K, attack="fgm", loss=loss), 0.6),
            (
                CommitteeSpec(K=K, attack="pgd", pgd_steps=7, pgd_step=0.25, loss=loss, pgd_random_start=random_start),
                0.6,
            ),
        ):
            key = jax.random.key(trial)
            delta = attack_nd(key, state, xi, tau, eps, spec)
            perp0 = 0.0
            if random_start and spec.attack == "pgd":  # the N-dim start, split into span and orthogonal parts
                d0 = attack_nd(key, state, xi, tau, eps, spec._replace(pgd_steps=1, pgd_step=1e-300))
                perp0 = float(jnp.linalg.norm(d0 - W.T @ jnp.linalg.lstsq(W.T, d0)[0]))
                # the in-span part of a random start is O(eps sqrt(K/N)); the field version starts at 0 there
                gamma0 = jnp.linalg.lstsq(W.T, d0)[0]
                assert float(jnp.linalg.norm(W.T @ gamma0)) < 0.6
                continue
            if spec.attack == "fgm":
                gamma = fgm_f(x, geom, state.v, tau, eps, loss)
            else:
                gamma = pgd_f(x, geom, state.v, tau, eps, spec.pgd_steps, spec.pgd_step, loss, perp0)
            np.testing.assert_allclose(delta, W.T @ gamma, atol=1e-6, rtol=0)
            assert float(jnp.linalg.norm(delta)) <= eps + 1e-12


def test_pgd_random_start_field_space_matches_n_dimensional_with_orthogonal_start():
    """A start orthogonal to span{w_k} of norm r: the N-dimensional PGD equals the field-space PGD with
    perp0 = r (the large-N random start)."""
    rng = np.random.default_rng(4)
    K, N = 2, 30
    W = jnp.asarray(random_weights(rng, K, N, 2))
    v, b, tau, eps, s, T = jnp.array([0.7, -0.6]), jnp.array([0.2, 0.1]), 1.0, 0.8, 0.3, 6
    xi = jnp.asarray(rng.normal(size=N))
    z = jnp.asarray(rng.normal(size=N))
    perp = z - W.T @ jnp.linalg.solve(W @ W.T, W @ z)
    perp = eps * perp / jnp.linalg.norm(perp)
    loss = lambda d: loss_value("quadratic", committee_output(W @ (xi + d) - b, v), tau)
    delta = perp
    for _ in range(T):
        g = jax.grad(loss)(delta)
        delta = delta + s * g / jnp.linalg.norm(g)
        delta = delta * jnp.minimum(1.0, eps / jnp.linalg.norm(delta))
    gamma = pgd(W @ xi - b, geometry(W @ W.T), v, tau, eps, T, s, "quadratic", eps)
    delta_span = W.T @ jnp.linalg.solve(W @ W.T, W @ delta)
    np.testing.assert_allclose(delta_span, W.T @ gamma, atol=1e-10)


@pytest.mark.parametrize("K", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_worst_case_beats_dense_search_of_the_ball(K):
    """The field-space worst case reaches the maximum of the loss over many points of the ellipsoid's
    boundary (and never exceeds the true maximum by more than the sampling resolution)."""
    rng = np.random.default_rng(K)
    W = random_weights(rng, K, 30, 2)
    geom = geometry(jnp.asarray(W @ W.T))
    v = jnp.asarray(rng.normal(size=K))
    eps = 0.7
    xs = jnp.asarray(rng.normal(size=(200, K)) * 1.5)
    taus = jnp.asarray(rng.choice([-1.0, 1.0], 200))
    if K == 2:
        th = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
        E = np.stack([np.cos(th), np.sin(th)], -1)
    else:
        E = rng.normal(size=(50000, K))
        E /= np.linalg.norm(E, axis=1, keepdims=True)
    U = eps * jnp.asarray(E) @ geom.L.T
    loss_at = lambda x, t: loss_value("quadratic", committee_output(x, v), t)
    best = jax.jit(jax.vmap(lambda x, t: jnp.max(loss_at(x[None, :] + U, t))))(xs, taus)
    gam = jax.jit(jax.vmap(lambda x, t: worst_case(x, geom, v, t, eps)))(xs, taus)
    found = jax.vmap(loss_at)(xs + gam @ geom.Q, taus)
    assert float(jnp.min(found - best)) >= -1e-9
    norms = jnp.sqrt(jnp.einsum("nk,kl,nl->n", gam, geom.Q, gam))
    np.testing.assert_allclose(norms, eps, rtol=1e-10)


def test_worst_case_handles_singular_overlaps():
    """Two identical units (Q singular): the optimiser works in the kept eigenspace, |delta| = eps."""
    w = np.array([1.0, 0.0, 0.0])
    W = jnp.asarray(np.stack([w, w]))
    geom = geometry(W @ W.T)
    v = jnp.array([0.5, 0.5])
    x = jnp.array([0.3, 0.3])
    gamma = worst_case(x, geom, v, 1.0, 0.5)
    delta = W.T @ gamma
    np.testing.assert_allclose(jnp.linalg.norm(delta), 0.5, rtol=1e-10)
    np.testing.assert_allclose(delta, -0.5 * w, atol=1e-10)


# --- measures ---------------------------------------------------------------------------------------


def test_k1_measures_equal_single_layer_closed_forms():
    mp = jaxadv.ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.5)
    mix = two_cluster(0.7, 2.0, 1.0, 1.5)
    st = CommitteeState(jnp.eye(1), jnp.array([[0.6]]), jnp.array([0.2]), jnp.array([1.0]))
    np.testing.assert_allclose(clean_error(st, mix), jaxadv.test_error(0.6, 0.2, mp), atol=1e-12)
    curve = robustness_curve(st, mix, jnp.array([0.0, 0.3, 0.9]))
    np.testing.assert_allclose(curve, jaxadv.robust_error(0.6, 0.2, jnp.array([0.0, 0.3, 0.9]), mp), atol=1e-12)


def test_measures_match_sampled_fields():
    """K = 2 with a signed second layer: clean and robust errors against 20 000 sampled examples (4 SE)."""
    mix = xor(3.0, 1.0)
    Q = jnp.array([[1, -0.4], [-0.4, 1.0]])
    R = jnp.array([[0.5, -0.1], [-0.4, 0.2]])
    b, v = jnp.array([0.1, -0.2]), jnp.array([0.7, -0.3])
    st = CommitteeState(Q, R, b, v)
    n = 20000
    k1, k2 = jax.random.split(jax.random.key(0))
    c = jax.random.categorical(k1, jnp.log(mix.priors), shape=(n,))
    x = (mix.centres[c] @ R.T - b[None, :]) + jnp.sqrt(mix.variances[c])[:, None] * (
        jax.random.normal(k2, (n, 2), jnp.float64) @ jnp.linalg.cholesky(Q).T
    )
    tau = mix.labels[c]
    geom = geometry(Q)
    clean = float(jnp.mean(tau * committee_output(x, v) <= 0))
    robust = float(jnp.mean(jax.jit(jax.vmap(lambda a, t: min_margin(a, geom, v, t, 0.4)))(x, tau) <= 0))
    for got, ref in ((clean_error(st, mix), clean), (robust_error(st, mix, 0.4), robust)):
        assert abs(float(got) - ref) <= 4 * np.sqrt(ref * (1 - ref) / n)
    assert float(robust_error(st, mix, 0.4)) > float(clean_error(st, mix))


# --- validation -----------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_the_parameter_name():
    mix, p = xor(), CommitteeParams()
    with pytest.raises(ValueError, match="K=0"):
        solve_committee_ode(mix, p, CommitteeSpec(K=0), 1.0)
    with pytest.raises(ValueError, match=r"v0=\[0.5, 0.5, 0.5\]"):
        solve_committee_ode(mix, p, CommitteeSpec(K=2), 1.0, v0=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"v0="):
        simulate_committee(jax.random.key(0), mix, p, CommitteeSpec(K=2), N=20, alpha_max=1.0, v0=[1.0])
    with pytest.raises(ValueError, match=r"eps=-0.1"):
        solve_committee_ode(mix, CommitteeParams(eps=-0.1), CommitteeSpec(K=2), 1.0)
    with pytest.raises(ValueError, match=r"priors=\[0.5, 0.6\]"):
        solve_committee_ode(Mixture([[1.0], [-1.0]], [1.0, 1.0], [0.5, 0.6], [1.0, -1.0]), p, CommitteeSpec(K=2), 1.0)
    with pytest.raises(ValueError, match="centres="):
        mixture_from_vectors(np.array([[1.0, 0.0, 0.5]]), np.array([[1.0, 0.0, 0.0]]), [1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="labels="):
        Mixture([[1.0], [-1.0]], [1.0, 1.0], [0.5, 0.5], [1.0, 0.0]) and solve_committee_ode(
            Mixture([[1.0], [-1.0]], [1.0, 1.0], [0.5, 0.5], [1.0, 0.0]), p, CommitteeSpec(K=2), 1.0
        )
    with pytest.raises(ValueError, match="attack='bim'"):
        solve_committee_ode(mix, p, CommitteeSpec(K=2, attack="bim"), 1.0)
    with pytest.raises(ValueError, match="Q0="):
        solve_committee_ode(mix, p, CommitteeSpec(K=2), 1.0, Q0=[[1.0, 0.9], [0.9, 1.0]], R0=[[0.9, 0.0], [-0.9, 0.0]])
    ok = mixture_from_vectors(np.array([[1.0, 2.0, 0.0]]), np.eye(3)[:2], [1.0], [1.0], [1.0])
    np.testing.assert_allclose(ok.centres, [[1.0, 2.0]])


# --- ODE plumbing -------------------------------------------------------------------------------------


def test_parameter_grid_is_a_vmap_equal_to_single_runs():
    spec = CommitteeSpec(K=1, attack="none", normalise=False, train_v=True)  # the smallest graph: vmap plumbing only
    kw = dict(Q0=[[1.2]], R0=[[0.3, 0.1]], rule=GaussRule(4, 6, 7.0))
    mix = xor(3.0, 1.0)
    grid = solve_committee_ode(mix, CommitteeParams(jnp.array([0.5, 0.9]), 0.2, 0.3, 0.0), spec, 0.4, 2, dt=0.1, **kw)
    assert not np.allclose(grid.R[0], grid.R[1])
    for i, eta_w in enumerate((0.5, 0.9)):
        one = solve_committee_ode(mix, CommitteeParams(eta_w, 0.2, 0.3, 0.0), spec, 0.4, 2, dt=0.1, **kw)
        for name in ("Q", "R", "b", "v"):
            np.testing.assert_allclose(getattr(grid, name)[i], getattr(one, name), atol=1e-13)


def test_monte_carlo_starts_with_exact_overlaps():
    Q0 = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    R0 = np.array([[0.5, 0.1], [0.0, -0.4], [0.2, 0.2]])
    B = directions(2, 50, jnp.float64)
    for seed in range(3):
        obs = observe(init(jax.random.key(seed), B, 3, Q0, R0), B)
        np.testing.assert_allclose(obs.Q, Q0, atol=1e-12)
        np.testing.assert_allclose(obs.R, R0, atol=1e-12)


# --- Monte Carlo against the ODE -------------------------------------------------------------------


MC_VS_ODE_RULE = GaussRule(10, 8, 8.0)


def mc_vs_ode(
    mixture,
    params,
    spec,
    N,
    reps,
    alpha_max,
    n_save,
    Q0,
    R0,
    b0=None,
    v0=None,
    rule=MC_VS_ODE_RULE,
    dt=0.05,
    seed=0,
):
    """Largest |MC mean - ODE| / SE over every order parameter and save point after the start."""
    sol = solve_committee_ode(mixture, params, spec, alpha_max, n_save, Q0=Q0, R0=R0, b0=b0, v0=v0, rule=rule, dt=dt)
    mc = simulate_committee(
        jax.random.key(seed),
        mixture,
        params,
        spec,
        N=N,
        alpha_max=alpha_max,
        n_save=n_save,
        replicas=reps,
        Q0=Q0,
        R0=R0,
        b0=b0,
        v0=v0,
        dtype=jnp.float64,
    )
    assert mc.finite.all()
    np.testing.assert_allclose(mc.alpha, sol.alpha)
    z = {}
    for name in ("Q", "R", "b", "v"):
        a = getattr(mc, name)[:, 1:]
        se = a.std(0, ddof=1) / np.sqrt(reps)
        dev = np.abs(a.mean(0) - np.asarray(getattr(sol, name))[1:])
        moving = se > 1e-12  # fixed entries (unit diagonal, untrained v) are equal exactly
        assert np.all(dev[~moving] < 1e-9)
        z[name] = float(np.max(dev[moving] / se[moving])) if moving.any() else 0.0
    return z, sol, mc


XOR_K2 = dict(
    mixture=xor(3.0, 1.0),
    params=CommitteeParams(eta_w=1.0, eta_b=0.5, eta_v=0.0, eps=0.3),
    spec=CommitteeSpec(K=2, attack="fgm"),
    Q0=[[1, 0.2], [0.2, 1]],
    R0=[[0.4, 0.1], [-0.1, 0.3]],
    b0=[0.1, -0.1],
)


def test_mc_matches_ode_xor_k2_fgm_small():
    z, _, _ = mc_vs_ode(N=200, reps=64, alpha_max=1.0, n_save=2, rule=GaussRule(6, 6, 7.0), **XOR_K2)
    assert max(z.values()) < 4.0, z


@pytest.mark.slow
def test_mc_matches_ode_xor_k2_fgm():
    z, _, _ = mc_vs_ode(N=1000, reps=400, alpha_max=6.0, n_save=6, **XOR_K2)
    print("xor K=2 fgm", z)
    assert max(z.values()) < 4.0, z


@pytest.mark.slow
def test_mc_matches_ode_two_cluster_k2_trained_v_pgd():
    z, _, _ = mc_vs_ode(
        two_cluster(0.6, 2.0, 0.5, 2.0),
        CommitteeParams(eta_w=1.0, eta_b=0.5, eta_v=0.5, eps=0.5),
        CommitteeSpec(K=2, attack="pgd", train_v=True, pgd_steps=3, pgd_step=0.25),
        N=1000,
        reps=400,
        alpha_max=6.0,
        n_save=6,
        Q0=[[1, -0.3], [-0.3, 1]],
        R0=[[0.5], [-0.2]],
        b0=[0.2, -0.3],
        v0=[0.6, 0.3],
    )
    print("two clusters K=2 pgd trained v", z)
    assert max(z.values()) < 4.0, z


@pytest.mark.slow
def test_mc_matches_ode_xor_k3_worst_unnormalised():
    z, _, _ = mc_vs_ode(
        xor(3.0, 1.0),
        CommitteeParams(eta_w=0.5, eta_b=0.3, eta_v=0.0, eps=0.4),
        CommitteeSpec(K=3, attack="worst", normalise=False),
        N=500,
        reps=200,
        alpha_max=2.0,
        n_save=4,
        Q0=[[1, 0.2, -0.1], [0.2, 1, 0.3], [-0.1, 0.3, 1]],
        R0=[[0.4, 0.1], [-0.1, 0.3], [0.2, -0.3]],
        b0=[0.1, -0.1, 0.0],
        rule=GaussRule(4, 6, 7.0),
        dt=0.1,
    )
    print("xor K=3 worst unnormalised", z)
    assert max(z.values()) < 4.0, z


def test_plain_dict_configuration_and_named_columns():
    from jaxadv.committee import columns, from_dicts

    mixture, params, spec = from_dicts(
        {"preset": "xor", "rho": 3.0, "v": 1.0}, {"eta_w": 0.5, "eps": 0.2}, {"K": 2, "attack": "pgd", "pgd_steps": 2}
    )
    assert spec.attack == "pgd" and float(params.eps) == 0.2
    sol = solve_committee_ode(
        mixture,
        params,
        spec,
        0.2,
        1,
        dt=0.1,
        Q0=[[1, 0.1], [0.1, 1]],
        R0=[[0.3, 0.1], [0.0, 0.2]],
        rule=GaussRule(4, 6, 7.0),
    )
    cols = columns(sol, mixture)
    assert list(cols) == [
        "alpha",
        "Q_1_1",
        "Q_1_2",
        "Q_2_2",
        "R_1_1",
        "R_1_2",
        "R_2_1",
        "R_2_2",
        "b_1",
        "b_2",
        "v_1",
        "v_2",
        "clean_error",
    ]
    np.testing.assert_allclose(cols["R_2_1"], sol.R[:, 1, 0])
    assert np.all((cols["clean_error"] > 0.4) & (cols["clean_error"] < 0.6))  # XOR near the start: near chance
    with pytest.raises(ValueError, match="spec=\\['kk'\\]"):
        from_dicts({"preset": "xor"}, {}, {"kk": 2})
    with pytest.raises(ValueError, match="preset='xnor'"):
        from_dicts({"preset": "xnor"})
