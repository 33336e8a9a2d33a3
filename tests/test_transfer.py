"""Attack transfer and black-box surrogates: closed forms against scipy and brute force, the pair ODE
against the single-student ODE and the pair Monte Carlo, the measured transfer against the closed form."""

import math

import jax
import numpy as np
import pytest
from helpers import assert_within_k_se
from scipy import integrate, special, stats

from jaxadv import ModelParams, robust_error, solve_ode, training_rule
from jaxadv.analysis.transfer import bivariate_normal_cdf, transfer_error, transfer_rate
from jaxadv.mc.pair import TRANSFER_KINDS, measure_transfer, simulate_pair
from jaxadv.model.losses import QUADRATIC, force
from jaxadv.model.pair import PairSpec, check_pair_overlaps, pair_params
from jaxadv.ode.pair import pair_averages, solve_pair_ode
from jaxadv.ode.vector_field import field_moments

DATA = ModelParams(prior=0.6, rho=2.0, v1=1.0, v2=1.5)


# --- the bivariate normal CDF ------------------------------------------------------------------


def test_bivariate_normal_cdf_matches_scipy():
    rng = np.random.default_rng(0)
    rs = np.repeat(
        [
            -0.99999,
            -0.999,
            -0.95,
            -0.926,
            -0.924,
            -0.8,
            -0.5,
            -0.1,
            0.0,
            0.2,
            0.5,
            0.74,
            0.76,
            0.9,
            0.924,
            0.926,
            0.95,
            0.99,
            0.999999,
        ],
        8,
    )
    h, k = rng.normal(0, 2, (2, rs.size))
    want = [
        stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]], abseps=1e-14, releps=1e-14).cdf([a, b])
        for a, b, r in zip(h, k, rs, strict=True)
    ]
    np.testing.assert_allclose(bivariate_normal_cdf(h, k, rs), want, atol=1e-10, rtol=0)


def test_bivariate_normal_cdf_limits():
    h, k = 0.3, -0.7
    assert abs(float(bivariate_normal_cdf(h, k, 1.0)) - stats.norm.cdf(min(h, k))) < 1e-14
    assert abs(float(bivariate_normal_cdf(h, k, -1.0)) - max(0.0, stats.norm.cdf(h) - stats.norm.cdf(-k))) < 1e-14
    assert abs(float(bivariate_normal_cdf(h, k, 0.0)) - stats.norm.cdf(h) * stats.norm.cdf(k)) < 1e-14


# --- the closed forms ----------------------------------------------------------------------------


def test_transfer_with_full_overlap_is_the_white_box_robust_error():
    eps = np.linspace(0, 2, 9)
    got = transfer_error(0.7, 0.2, eps, DATA, Q=1.0)
    np.testing.assert_allclose(got, robust_error(0.7, 0.2, eps, DATA), atol=1e-14)
    for Q in (-0.5, 0.0, 0.3, 0.9):
        assert np.all(
            np.asarray(transfer_error(0.7, 0.2, eps, DATA, Q=Q))
            <= np.asarray(robust_error(0.7, 0.2, eps, DATA)) + 1e-15
        )


def test_surrogate_labels_of_the_target_itself():
    """Surrogate = target (Q = 1, same R, b): a right example is pushed by eps towards the boundary, a wrong one
    by eps away from it: E = P(0 < tau x < eps) + P(tau x < -eps)."""
    R, b, eps = 0.6, -0.1, np.array([0.2, 0.8, 1.5])
    got = transfer_error(R, b, eps, DATA, Q=1.0, labels="surrogate", R_s=R, b_s=b)
    want = 0.0
    for tau, p, v in ((1, DATA.prior, DATA.v1), (-1, 1 - DATA.prior, DATA.v2)):
        c = (DATA.rho / 2 * R - tau * b) / math.sqrt(v)
        # closures over the loop variables: each is integrated within its own iteration (B023 is a false positive)
        G = lambda y: stats.norm.cdf(y / math.sqrt(v) - c)  # noqa: B023
        want = want + p * (G(eps) - G(0.0) + G(-eps))
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("labels", ["true", "surrogate"])
def test_closed_forms_against_sampled_fields(labels):
    """Brute force: sample the two correlated clean fields, attack through the surrogate, count."""
    rng = np.random.default_rng(1)
    R_s, b_s, R_t, b_t, Q, M, eps = 0.4, 0.15, 0.8, -0.1, 0.55, 0.35, 0.9
    n = 400_000
    tau = np.where(rng.random(n) < DATA.prior, 1.0, -1.0)
    sd = np.sqrt(np.where(tau > 0, DATA.v1, DATA.v2))
    u_t = rng.normal(size=n)
    u_s = Q * u_t + math.sqrt(1 - Q * Q) * rng.normal(size=n)
    x_s = tau * DATA.rho / 2 * R_s - b_s + sd * u_s
    x_t = tau * DATA.rho / 2 * R_t - b_t + sd * u_t
    lab = tau if labels == "true" else np.where(x_s > 0, 1.0, -1.0)
    for m, kw in ((Q, {}), (M, {"M": M})):
        after = tau * (x_t - lab * eps * m) <= 0
        right = tau * x_t > 0
        err = transfer_error(R_t, b_t, eps, DATA, Q=Q, labels=labels, R_s=R_s, b_s=b_s, **kw)
        assert_within_k_se(after.mean(), after.std() / math.sqrt(n), err, what=f"error {labels} m={m}")
        flip = (after & right)[right]
        rate = transfer_rate(R_t, b_t, eps, DATA, Q=Q, labels=labels, R_s=R_s, b_s=b_s, **kw)
        assert_within_k_se(flip.mean(), flip.std() / math.sqrt(flip.size), rate, what=f"rate {labels} m={m}")


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: transfer_error(0.5, 0.0, -0.1, DATA, Q=0.5), "eps=-0.1 must be >= 0"),
        (lambda: transfer_error(0.5, 0.0, 0.1, DATA, Q=1.2), "Q=1.2 must lie in [-1, 1]"),
        (lambda: transfer_error(0.5, 0.0, 0.1, DATA, Q=0.5, labels="oracle"), "labels='oracle' must be one of"),
        (lambda: transfer_error(0.5, 0.0, 0.1, DATA, Q=0.5, labels="surrogate"), "needs the surrogate's R_s and b_s"),
        (lambda: transfer_rate(1.5, 0.0, 0.1, DATA, Q=0.5), "R_t=1.5 must lie in [-1, 1]"),
        (lambda: transfer_error(0.5, 0.0, 0.1, DATA, Q=0.5, M=float("nan")), "M=nan must be finite"),
        (lambda: pair_params(DATA, eps_t=-1.0), "eps_t=-1.0 must be >= 0"),
        (lambda: pair_params(DATA, eta_w_s=0.0), "eta_w_s=0.0 must be > 0"),
        (lambda: pair_params(DATA, eta_b_t=-0.5), "eta_b_t=-0.5 must be >= 0"),
        (lambda: pair_params(DATA, spec=PairSpec("mixed")), "stream='mixed' must be one of"),
        (lambda: check_pair_overlaps(0.9, 0.9, -0.9), "are not overlaps of unit vectors"),
        (lambda: solve_pair_ode(pair_params(DATA), PairSpec(rule_s=training_rule("linf"))), "rule_s: attack='linf'"),
        (lambda: solve_pair_ode(pair_params(DATA), alpha_max=-1.0), "alpha_max=-1.0 must be finite and > 0"),
    ],
)
def test_bad_input_is_refused_with_its_name(call, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        call()


# --- the pair ODE ----------------------------------------------------------------------------------

PP = pair_params(DATA, eps_s=0.2, eps_t=0.5, eta_w_s=1.0, eta_w_t=0.5, eta_b_s=0.5, eta_b_t=0.5)


@pytest.mark.parametrize("stream", [pytest.param("independent", marks=pytest.mark.slow), "same"])
def test_pair_ode_students_follow_the_single_student_ode(stream):
    sol = solve_pair_ode(PP, PairSpec(stream), alpha_max=3.0, n_save=3, R0=(0.1, 0.2, 0.05), b0=(0.0, 0.1))
    for who, params, R0, b0 in (("s", PP.s, 0.1, 0.0), ("t", PP.t, 0.2, 0.1)):
        ref = solve_ode(params, 3.0, 3, R0=R0, b0=b0)
        np.testing.assert_allclose(getattr(sol, f"R_{who}"), ref.R, atol=1e-10)
        np.testing.assert_allclose(getattr(sol, f"b_{who}"), ref.b, atol=1e-10)


def test_pair_averages_with_true_labels_are_the_single_student_moments():
    S1, S2, Z, _ = jax.jit(pair_averages, static_argnames=("spec", "surrogate_labels"))(
        0.3, 0.6, 0.1, -0.2, 0.4, PP, spec=PairSpec("blackbox"), surrogate_labels="true"
    )
    d1, d2, _ = field_moments(0.3, 0.1, PP.s)
    np.testing.assert_allclose(S1, d1, atol=1e-11)
    np.testing.assert_allclose(S2, d2, atol=1e-11)
    np.testing.assert_allclose(Z, 0.0, atol=1e-11)


@pytest.mark.slow
def test_black_box_averages_against_scipy():
    """<delta_s>, <delta_s zeta> and <delta_s delta_t> with the surrogate on the target's labels, by nested
    scipy quadrature split at the target's boundary."""
    R_s, R_t, b_s, b_t, Q = 0.3, 0.6, 0.1, -0.2, 0.4
    S1, S2, Z, X = (
        np.asarray(a)
        for a in jax.jit(pair_averages, static_argnames="spec")(R_s, R_t, b_s, b_t, Q, PP, spec=PairSpec("blackbox"))
    )
    # the quadratic loss's force, written out (checked against jaxadv's at one point)
    dl = lambda x, t: (t - special.erf(x)) * 2 / math.sqrt(math.pi) * math.exp(-x * x)
    assert abs(dl(0.3, -1.0) - float(force(QUADRATIC, 0.3, -1.0))) < 1e-14
    sc = math.sqrt(1 - Q * Q)
    for i, (tau, v) in ((1, (-1.0, DATA.v2)),):  # one cluster: nested quadrature is slow
        sd = math.sqrt(v)
        ms, mt = tau * R_s - b_s, tau * R_t - b_t  # rho / 2 = 1
        cut = -mt / sd

        # closures over the loop variables: each is integrated within its own iteration (B023 is a false positive)
        def avg(f):
            tot = 0.0
            for lo, hi, y in ((-9, cut, -1.0), (cut, 9, 1.0)):  # noqa: B023
                g = lambda eta, ut: stats.norm.pdf(ut) * stats.norm.pdf(eta) * f(ut, eta, y)  # noqa: B023
                tot += integrate.dblquad(g, lo, hi, -9, 9, epsabs=1e-10, epsrel=1e-10)[0]
            return tot

        ds = lambda ut, eta, y: dl(ms + sd * (Q * ut + sc * eta) - y * PP.s.eps, y)  # noqa: B023
        dt = lambda ut: dl(mt + sd * ut - tau * PP.t.eps, tau)  # noqa: B023
        np.testing.assert_allclose(S1[i], avg(ds), atol=1e-9)
        np.testing.assert_allclose(Z[i], avg(lambda ut, eta, y: ds(ut, eta, y) * (sc * ut - Q * eta)), atol=1e-9)  # noqa: B023
        np.testing.assert_allclose(X[i], avg(lambda ut, eta, y: ds(ut, eta, y) * dt(ut)), atol=1e-9)  # noqa: B023


# --- the Monte Carlo ------------------------------------------------------------------------------


BLACKBOX = dict(
    N=200,
    alpha_max=2.0,
    n_save=2,
    replicas=32,
    R0=(0.1, 0.4, 0.05),
    b0=(0.0, 0.1),
    eps_grid=[0.3, 1.0],
    n_test=500,
    dtype=np.float64,
    linf_scale=1 / math.sqrt(200),
)


@pytest.fixture(scope="module")
def blackbox_run():
    return simulate_pair(jax.random.key(2), PP, PairSpec("blackbox"), **BLACKBOX)


def test_measurement_at_the_last_save_point_only_is_the_same_measurement(blackbox_run):
    """``measure_every=False``: NaN before the last save point, there the bits of the run that measures every
    point (the test examples of save point k are keyed by k alone)."""
    mc = simulate_pair(jax.random.key(2), PP, PairSpec("blackbox"), **BLACKBOX, measure_every=False)
    assert np.isnan(mc.wrong[:, :-1]).all() and np.isnan(mc.flipped[:, :-1]).all() and np.isnan(mc.right[:, :-1]).all()
    for got, want in (
        (mc.wrong, blackbox_run.wrong),
        (mc.flipped, blackbox_run.flipped),
        (mc.right, blackbox_run.right),
    ):
        np.testing.assert_array_equal(got[:, -1], want[:, -1])
    for f in mc.obs._fields:
        np.testing.assert_array_equal(getattr(mc.obs, f), getattr(blackbox_run.obs, f))
    np.testing.assert_array_equal(mc.states.t.w, blackbox_run.states.t.w)


def test_interrupted_pair_resumes_with_the_same_bits(blackbox_run, tmp_path, monkeypatch):
    """The pair on the resumable driver: Ctrl-C in the second save interval keeps the first (the order
    parameters and the transfer measured there) in the checkpoint; the resumed run is the plain run, bit for bit."""
    from helpers import interrupting

    from jaxadv.app.checkpoint import Interrupted, simulate_pair_resumable
    from jaxadv.mc import driver

    ck = str(tmp_path / "ck.npz")
    real = driver.dispatch
    monkeypatch.setattr(driver, "dispatch", interrupting(real, 1))
    args = (jax.random.key(2), PP, PairSpec("blackbox"))
    with pytest.raises(Interrupted) as e:
        simulate_pair_resumable(*args, checkpoint=ck, **BLACKBOX)
    assert (e.value.done, e.value.total, e.value.checkpoint) == (1, 2, ck)
    monkeypatch.setattr(driver, "dispatch", real)
    stats = {}
    mc = simulate_pair_resumable(*args, checkpoint=ck, stats=stats, **BLACKBOX)
    assert stats["resumed_from"] == 1
    for got, want in (
        (mc.wrong, blackbox_run.wrong),
        (mc.flipped, blackbox_run.flipped),
        (mc.right, blackbox_run.right),
    ):
        np.testing.assert_array_equal(got, want)
    for f in mc.obs._fields:
        np.testing.assert_array_equal(getattr(mc.obs, f), getattr(blackbox_run.obs, f))
    np.testing.assert_array_equal(mc.states.s.w, blackbox_run.states.s.w)


def test_measured_transfer_is_the_closed_form_at_the_measured_weights(blackbox_run):
    """Exact at any N: the closed form at each replica's (R_s, R_t, Q, M, b_s, b_t) is the expectation of its
    empirical error on fresh N-dimensional examples attacked through the surrogate."""
    mc, eps = blackbox_run, blackbox_run.eps_grid
    o = mc.obs
    ex = lambda a: a[..., None]
    for i, kind in enumerate(TRANSFER_KINDS):
        norm, lab = kind.split("_")
        kw = dict(Q=ex(o.Q), labels="true" if lab == "true" else "surrogate", R_s=ex(o.R_s), b_s=ex(o.b_s))
        if norm == "linf":
            kw["M"] = ex(o.M) / math.sqrt(200)
        for what, fn, got in (
            ("error", transfer_error, mc.wrong[:, :, i]),
            ("rate", transfer_rate, mc.flipped[:, :, i] / ex(mc.right)),
        ):
            d = got - np.asarray(fn(ex(o.R_t), ex(o.b_t), eps, DATA, **kw))
            assert_within_k_se(d.mean(0), d.std(0, ddof=1) / math.sqrt(d.shape[0]), 0.0, what=f"{kind} {what}")


def test_pair_ode_against_monte_carlo_black_box(blackbox_run):
    mc = blackbox_run
    sol = solve_pair_ode(PP, PairSpec("blackbox"), alpha_max=2.0, n_save=2, R0=(0.1, 0.4, 0.05), b0=(0.0, 0.1))
    for f in ("R_s", "R_t", "b_s", "b_t", "Q"):
        x = getattr(mc.obs, f)
        sem = x.std(0, ddof=1) / math.sqrt(x.shape[0])
        assert_within_k_se(x.mean(0)[1:], sem[1:] + 1 / 200 / 4, getattr(sol, f)[1:], what=f)


def test_measure_transfer_validates():
    with pytest.raises(ValueError, match="n_test=0 must be an integer >= 1"):
        measure_transfer(jax.random.key(0), None, np.zeros(3), DATA, [0.1], n_test=0)
    with pytest.raises(ValueError, match="eps=-1.0 must be >= 0"):
        measure_transfer(jax.random.key(0), None, np.zeros(3), DATA, [-1.0])


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["independent", "same", "blackbox"])
def test_pair_ode_against_monte_carlo_slow(stream):
    """Order parameters and the L2 transfer error (closed form at the ODE's order parameters vs the
    empirical error in N dimensions) at several alpha: within 4 standard errors plus 1/N."""
    N, reps = 400, 64
    R0, b0 = (0.1, 0.2, 0.05), (0.0, 0.1)
    eps = np.array([0.5, 1.0])
    mc = simulate_pair(
        jax.random.key(5),
        PP,
        PairSpec(stream),
        N=N,
        alpha_max=6.0,
        n_save=3,
        replicas=reps,
        R0=R0,
        b0=b0,
        eps_grid=eps,
        n_test=1000,
        dtype=np.float64,
    )
    sol = solve_pair_ode(PP, PairSpec(stream), alpha_max=6.0, n_save=3, R0=R0, b0=b0)
    for f in ("R_s", "R_t", "b_s", "b_t", "Q"):
        x = getattr(mc.obs, f)
        m, s = x.mean(0)[1:], x.std(0, ddof=1)[1:] / math.sqrt(reps)
        assert np.all(np.abs(m - getattr(sol, f)[1:]) <= 4 * s + 1 / N), f
    for i, lab in ((0, "true"), (1, "surrogate")):
        th = np.asarray(
            transfer_error(
                sol.R_t[:, None],
                sol.b_t[:, None],
                eps,
                DATA,
                Q=sol.Q[:, None],
                labels=lab,
                R_s=sol.R_s[:, None],
                b_s=sol.b_s[:, None],
            )
        )
        x = mc.wrong[:, :, i]
        m, s = x.mean(0)[1:], x.std(0, ddof=1)[1:] / math.sqrt(reps)
        assert np.all(np.abs(m - th[1:]) <= 4 * s + 1 / N), (lab, (m - th[1:]) / s)


def test_pair_drift_vmaps_over_parameter_points():
    """A grid of target radii is one vmap of the vector field (traced parameters, no recompilation per value)."""
    from jaxadv.model.pair import PairParams
    from jaxadv.ode.pair import pair_drift

    spec = PairSpec("same")
    y = np.array([0.3, 0.5, 0.1, -0.2, 0.4])
    eps_t = np.array([0.0, 0.5, 1.0])
    grid = PairParams(PP.s, PP.t._replace(eps=eps_t), {}, {})
    axes = PairParams(None, PP.t._replace(**{f: (0 if f == "eps" else None) for f in PP.t._fields}), None, None)
    drift = jax.jit(pair_drift, static_argnames="spec")
    got = jax.jit(jax.vmap(lambda pp: pair_drift(y, pp, spec), in_axes=(axes,)))(grid)
    for i, e in enumerate(eps_t):
        np.testing.assert_allclose(got[i], drift(y, PP._replace(t=PP.t._replace(eps=float(e))), spec=spec), atol=1e-13)


@pytest.mark.parametrize("stream", ["same", pytest.param("blackbox", marks=pytest.mark.slow)])
def test_same_stream_cross_term_is_resolved_by_the_monte_carlo(stream):
    """At large learning rates the same-stream term eta_s eta_t sum_tau p_tau v_tau <delta_s delta_t> of dQ/dalpha
    dominates: the pair Monte Carlo follows the ODE with it (within 4 standard errors) and sits hundreds of
    standard errors away from the ODE without it (the independent-stream equations)."""
    from jaxadv import ModelParams
    from jaxadv.mc.pair import simulate_pair
    from jaxadv.model.pair import PairSpec, pair_params
    from jaxadv.ode.pair import solve_pair_ode

    data = ModelParams(prior=0.5, rho=2.0, eta_w=1.5, eta_b=0.5, eps=0.0)
    spec = PairSpec(stream)
    pp = pair_params(data, eps_s=0.0, eps_t=0.5, spec=spec)
    start = dict(alpha_max=2.0, n_save=2, R0=(0.3, 0.3, 0.2))
    mc = simulate_pair(jax.random.key(1), pp, spec, N=400, replicas=64, measure_every=False, **start)
    Q = np.asarray(mc.obs.Q, np.float64)[:, 1:]
    mean, sem = Q.mean(0), Q.std(0, ddof=1) / np.sqrt(Q.shape[0])
    with_term = np.asarray(solve_pair_ode(pp, spec, **start).Q)[1:]
    without = np.asarray(solve_pair_ode(pp, PairSpec("independent"), **start).Q)[1:]
    assert np.all(np.abs(mean - with_term) / sem < 4.0), (mean, with_term, sem)
    assert np.all(np.abs(mean - without) / sem > 40.0), (mean, without, sem)
