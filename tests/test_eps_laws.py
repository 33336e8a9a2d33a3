"""The log-uniform eps law, added as one record: its draw against its law, its ODE nodes against
quad, the Monte Carlo against the ODE, and every entry point (Python, --set, TOML, sweeps)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxadv import (
    ModelParams,
    compare,
    load_config,
    make_sweep_config,
    mc_summary,
    ode_table,
    simulate,
    solve_ode,
    sweep,
    training_rule,
)
from jaxadv.model.rule import rule_params
from jaxadv.ode.vector_field import field_moments

PARAMS = ModelParams(prior=0.7, rho=2.0, v1=1.0, v2=1.0, eta_w=0.5, eta_b=0.5, eps=1.0)
RULE = training_rule(eps_dist="loguniform")
VALUES = {"eps_min": 0.1, "eps_max": 3.0}


def test_draws_follow_the_law():
    rp = rule_params(RULE, jnp.float64, **VALUES)
    keys = jax.random.split(jax.random.key(0), 4000)
    e = np.asarray(jax.vmap(lambda k: RULE.eps_law.draw(k, 1.0, rp, jnp.float64))(keys))
    assert e.min() >= 0.1 and e.max() <= 3.0
    # log eps is uniform on [log 0.1, log 3]
    lo, hi = math.log(0.1), math.log(3.0)
    assert stats.kstest(np.log(e), stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3


def test_ode_nodes_and_moments_vs_quad():
    rp = rule_params(RULE, jnp.float64, **VALUES)
    nodes, w = RULE.eps_law.nodes(1.0, rp, 16)
    mean = (3.0 - 0.1) / math.log(30.0)  # E[eps] of the log-uniform law
    np.testing.assert_allclose(float(jnp.sum(w * nodes)), mean, rtol=1e-13)
    R, b = 0.5, -0.3
    d1, _, _ = field_moments(R, b, PARAMS, RULE, rp)
    from jaxadv.model.losses import QUADRATIC, force_moments

    for i, tau in enumerate((1.0, -1.0)):
        m = tau * PARAMS.rho * R / 2 - b
        f = lambda e: float(force_moments(QUADRATIC, m - tau * e, 1.0, tau)[0]) / (e * math.log(30.0))  # noqa: B023 (integrated below)
        want = integrate.quad(f, 0.1, 3.0, epsabs=1e-12)[0]
        np.testing.assert_allclose(float(d1[i]), want, rtol=1e-8)


def test_mc_matches_ode():
    """N = 200, 48 replicas, 4 standard errors raw; and far from plain adversarial training."""
    mc = simulate(jax.random.key(1), PARAMS, N=200, alpha_max=4.0, n_save=4, replicas=48, rule=RULE, rule_params=VALUES)
    ode = solve_ode(PARAMS, 4.0, 4, dt=0.02, rule=RULE, rule_params=VALUES)
    cmp = compare(mc_summary(mc, PARAMS, 1.0), ode_table(ode, PARAMS, 1.0))
    assert cmp.n_diverged == 0 and cmp.worst[0] <= 4.0, cmp.verdict(4.0)
    base = solve_ode(PARAMS, 4.0, 4, dt=0.02)
    assert abs(float(ode.b[-1] - base.b[-1])) > 3 * mc_summary(mc, PARAMS, 1.0)["b_sem"][-1]


def test_every_entry_point_knows_it(tmp_path):
    cfg = load_config("scenario1", ["eps_dist=loguniform", "eps_min=0.1", "eps_max=2"])
    assert cfg.rule.eps_law.name == "loguniform" and cfg.rule_params == {"eps_min": 0.1, "eps_max": 2.0}
    (tmp_path / "r.toml").write_text('preset = "scenario1"\neps_dist = "loguniform"\neps_min = 0.2\neps_max = 1.0\n')
    assert load_config(str(tmp_path / "r.toml")).rule.eps_law.name == "loguniform"
    with pytest.raises(ValueError, match="eps_min=0.0 must be > 0"):
        load_config("scenario1", ["eps_dist=loguniform", "eps_min=0", "eps_max=2"])
    res = sweep(
        make_sweep_config(
            {"eps_max": [0.5, 2.0]}, {"eps_dist": "loguniform", "eps_min": 0.1}, alpha_max=4.0, n_save=2, dt=0.5
        )
    )
    one = solve_ode(
        PARAMS._replace(prior=0.5, eta_w=0.04, eta_b=0.2),
        4.0,
        2,
        dt=0.5,
        rule=RULE,
        rule_params={"eps_min": 0.1, "eps_max": 2.0},
    )
    np.testing.assert_allclose(res.R[1], np.asarray(one.R), rtol=0, atol=1e-13)


def test_a_record_with_new_parameters_needs_no_other_edit(monkeypatch, tmp_path):
    """A law registered with a parameter no configuration field knows (here a half-normal radius,
    |N(0, eps_scale^2)|) is a key of --set, TOML and sweeps, and runs in the MC and the ODE."""
    from jaxadv.model import eps_laws
    from jaxadv.model.eps_laws import EpsLaw, gauss_legendre_on
    from jaxadv.model.params import Param

    def nodes(eps, rp, n):  # E f(|Z| s) by Gauss-Legendre on [0, 9 s] of the half-normal density
        t, w = gauss_legendre_on(0.0 * rp["eps_scale"], 9.0 * rp["eps_scale"], 64)
        dens = jnp.sqrt(2 / jnp.pi) / rp["eps_scale"] * jnp.exp(-t * t / (2 * rp["eps_scale"] ** 2))
        return t, w * 9.0 * rp["eps_scale"] * dens

    law = EpsLaw(
        "halfnormal",
        draw=lambda key, eps, rp, dtype: jnp.abs(rp["eps_scale"] * jax.random.normal(key, (), dtype)),
        nodes=nodes,
        random=True,
        params=(Param("eps_scale", 1.0, lambda x: x > 0, "must be > 0"),),
    )
    monkeypatch.setitem(eps_laws.EPS_LAWS, "halfnormal", law)
    cfg = load_config("scenario1", ["eps_dist=halfnormal", "eps_scale=0.5"])
    assert cfg.rule.eps_law is law and cfg.rule_params == {"eps_scale": 0.5}
    (tmp_path / "h.toml").write_text('eps_dist = "halfnormal"\neps_scale = 0.25\n')
    assert load_config(str(tmp_path / "h.toml")).rule_params == {"eps_scale": 0.25}
    with pytest.raises(ValueError, match="eps_scale=-1.0 must be > 0"):
        load_config("scenario1", ["eps_dist=halfnormal", "eps_scale=-1"])
    res = sweep(
        make_sweep_config({"eps_scale": [0.5, 1.0]}, {"eps_dist": "halfnormal"}, alpha_max=2.0, n_save=2, dt=0.5)
    )
    assert res.R.shape == (2, 3) and np.all(np.isfinite(res.R))
    mc = simulate(
        jax.random.key(0), PARAMS, N=50, alpha_max=1.0, n_save=1, replicas=4, rule=cfg.rule, rule_params=cfg.rule_params
    )
    assert mc.finite.all()
