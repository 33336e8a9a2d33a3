"""L-infinity and L1 threat models: worst-case attacks against brute force, robust errors under
each norm against direct sampling, the Monte Carlo under them, and the ODE's refusal."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv import ModelParams, simulate, solve_ode, training_rule
from jaxadv.analysis.threat import dual_norm, mc_threat_summary, robust_error_threat
from jaxadv.app.config import load_config
from jaxadv.model.data import cluster_axis
from jaxadv.model.perturbations import l1_attack, l2_attack, linf_attack
from jaxadv.model.rule import check_ode_supported

PARAMS = ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.5, eta_w=0.5, eta_b=0.5, eps=1.0)


def _margin(w, b, xi, tau):
    return tau * (np.asarray(xi) @ w - b)


def _random_in_ball(rng, q, eps, n, size):
    """Points in the q-ball of radius eps (interior and boundary)."""
    r = eps * rng.uniform(0, 1, (size, 1)) ** 0.3
    if q == "linf":
        return eps * rng.uniform(-1, 1, (size, n))
    if q == "l1":
        d = rng.laplace(size=(size, n))
        return r * d / np.abs(d).sum(1, keepdims=True)
    d = rng.normal(size=(size, n))
    return r * d / np.linalg.norm(d, axis=1, keepdims=True)


def _vertices(q, eps, n):
    if q == "linf":
        return eps * np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
    return eps * np.concatenate([np.eye(n), -np.eye(n)])


@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("q,attack", [("linf", linf_attack), ("l1", l1_attack), ("l2", l2_attack)])
def test_attack_is_worst_case_in_ball(n, q, attack):
    """No perturbation in the ball (all vertices; 20000 random points) lowers tau*x below the attack's."""
    rng = np.random.default_rng(n)
    eps, b = 0.7, 0.2
    for _ in range(5):
        w = rng.normal(size=n)
        w /= np.linalg.norm(w)
        xi, tau = rng.normal(size=n), float(rng.choice([-1.0, 1.0]))
        adv = np.asarray(attack(jnp.asarray(xi), tau, jnp.asarray(w), eps))
        delta = adv - xi
        norm = {"linf": np.max(np.abs(delta)), "l1": np.sum(np.abs(delta)), "l2": np.linalg.norm(delta)}[q]
        assert norm <= eps * (1 + 1e-12)
        got = _margin(w, b, adv, tau)
        dual = {"linf": np.abs(w).sum(), "l1": np.abs(w).max(), "l2": 1.0}[q]
        np.testing.assert_allclose(got, _margin(w, b, xi, tau) - eps * dual, rtol=1e-12, atol=1e-12)
        cands = _random_in_ball(rng, q, eps, n, 20000)
        if q != "l2":
            cands = np.concatenate([cands, _vertices(q, eps, n)])
            np.testing.assert_allclose(
                got, min(_margin(w, b, xi + d, tau) for d in _vertices(q, eps, n)), rtol=1e-12, atol=1e-12
            )
        assert np.all(_margin(w, b, xi[None, :] + cands, tau) >= got - 1e-12)


@pytest.mark.parametrize("threat", ["l2", "linf", "l1"])
def test_robust_error_under_norm_vs_sampling(threat):
    """S_q(R, b, eps) with eps*||w||_{q*} equals the fraction of examples whose worst-case attacked
    margin is <= 0, sampled directly in N = 20 for a fixed student."""
    n, eps, b = 20, {"l2": 0.5, "linf": 0.08, "l1": 0.5}[threat], 0.3
    rng = np.random.default_rng(0)
    B = np.asarray(cluster_axis(n, "dense", jnp.float64))
    w = rng.normal(size=n) + 2 * B
    w /= np.linalg.norm(w)
    R = float(w @ B)
    M = 200_000
    tau = np.where(rng.uniform(size=M) < PARAMS.prior, 1.0, -1.0)
    v = np.where(tau > 0, PARAMS.v1, PARAMS.v2)
    xi = tau[:, None] * PARAMS.rho / 2 * B + np.sqrt(v)[:, None] * rng.normal(size=(M, n))
    attack = {"l2": l2_attack, "linf": linf_attack, "l1": l1_attack}[threat]
    adv = np.asarray(jax.vmap(attack, (0, 0, None, None))(jnp.asarray(xi), jnp.asarray(tau), jnp.asarray(w), eps))
    frac = np.mean(tau * (adv @ w - b) <= 0)
    S = float(robust_error_threat(R, b, eps, PARAMS, threat, np.abs(w).sum(), np.abs(w).max()))
    assert abs(frac - S) < 4 * math.sqrt(S * (1 - S) / M)


def test_dual_norm_errors():
    assert dual_norm("l2") == 1.0
    with pytest.raises(ValueError, match="threat='linf' needs norm1"):
        dual_norm("linf")
    with pytest.raises(ValueError, match="threat='l1' needs norm_inf"):
        dual_norm("l1")
    with pytest.raises(ValueError, match="threat='l5'"):
        dual_norm("l5", 1.0, 1.0)


@pytest.mark.parametrize("attack", ["linf", "l1"])
def test_mc_under_threat_model_and_orientation(attack):
    """Training under L-inf / L1 runs, records ||w||_1, ||w||_inf, and depends on the orientation of B."""
    n = 100
    eps = {"linf": 1.0 / math.sqrt(n), "l1": 1.0}[attack]
    p = PARAMS._replace(eps=eps)
    rule = training_rule(attack)
    res = {}
    for B in ("first", "dense"):
        mc = simulate(jax.random.key(2), p, N=n, alpha_max=4.0, n_save=2, replicas=16, rule=rule, B=B)
        assert mc.finite.all()
        assert np.all(mc.norm_inf <= 1 + 1e-5) and np.all(mc.norm1 >= 1 - 1e-5)
        assert np.all(mc.norm1 <= math.sqrt(n) + 1e-4) and np.all(mc.norm_inf * math.sqrt(n) >= 1 - 1e-4)
        S = mc_threat_summary(mc, p, {"l2": 1.0, "linf": eps, "l1": 1.0})
        assert np.all(S["robust_error_l1_mean"] <= S["robust_error_l2_mean"] + 1e-7)
        res[B] = mc
    # as w turns towards B, ||w||_1 shrinks towards 1 for B = e_1 and grows towards sqrt(N) for a dense B
    x, y = res["first"].norm1[:, -1], res["dense"].norm1[:, -1]
    sem = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    assert y.mean() - x.mean() > 4 * sem


@pytest.mark.slow
def test_dense_axis_is_irrelevant_for_l2():
    """The L2 attack is rotation invariant: the dense B gives the same statistics of R (same seed, new data)."""
    p = PARAMS
    a = simulate(jax.random.key(3), p, N=100, alpha_max=4.0, n_save=2, replicas=32, B="first")
    b = simulate(jax.random.key(3), p, N=100, alpha_max=4.0, n_save=2, replicas=32, B="dense")
    for x, y in ((a.R[:, -1], b.R[:, -1]), (a.b[:, -1], b.b[:, -1])):
        sem = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        assert abs(x.mean() - y.mean()) < 4 * sem + 0.01


@pytest.mark.parametrize("attack", ["linf", "l1"])
def test_ode_refuses_full_state_attacks(attack):
    rule = training_rule(attack)
    assert rule.attack.field is None  # no ODE face: the dynamics does not close in (R, b)
    with pytest.raises(ValueError, match=f"attack='{attack}' has no ODE in \\(R, b\\)"):
        solve_ode(PARAMS, 1.0, 1, rule=rule)
    with pytest.raises(ValueError, match=f"attack='{attack}' has no ODE"):
        check_ode_supported(rule)
    for ok in (training_rule(), training_rule("noise"), training_rule(eps_dist="uniform", nonrobust_only=True)):
        check_ode_supported(ok)


def test_bad_axis():
    with pytest.raises(ValueError, match="B='diagonal'"):
        simulate(jax.random.key(0), PARAMS, N=10, alpha_max=1.0, n_save=1, replicas=1, B="diagonal")


def test_cli_run_linf(tmp_path):
    from jaxadv.app.cli import main
    from jaxadv.app.io import read_csv

    rc = main(
        [
            "run",
            "scenario1",
            "--set",
            "attack=linf",
            "--set",
            "eps=0.1",
            "--set",
            "N=50",
            "--set",
            "alpha_max=2",
            "--set",
            "replicas=4",
            "--set",
            "n_save=2",
            "--set",
            "B=dense",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert rc == 0
    cols = read_csv(tmp_path / "mc.csv")
    assert {"robust_error_linf_mean", "robust_error_l1_mean", "norm1_mean"} <= set(cols)
    assert not (tmp_path / "ode.csv").exists()
    cfg = load_config("scenario1", ["attack=l1"])
    assert cfg.rule.attack.field is None
