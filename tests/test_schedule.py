"""Schedules (jaxadv.schedule): a training-rule parameter as a function of alpha, honoured by the ODE and the
Monte Carlo, differentiable through the ODE, and read from the configuration."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_k_se

from jaxadv import ModelParams, simulate, solve_ode
from jaxadv.analysis.measures import robust_error, test_error
from jaxadv.ode.solve import plan_steps, unit_trajectory
from jaxadv.schedule import FunctionSchedule, Schedule, at, in_steps, parse_schedule

P = ModelParams(prior=0.7, eps=1.0)


def test_piecewise_linear_values_against_numpy_interp():
    knots, values = (0.0, 2.5, 10.0, 40.0), (0.3, 1.2, 0.0, 0.8)
    s = Schedule(knots, values)
    alpha = np.linspace(-5.0, 60.0, 131)
    got = np.array([float(s(a)) for a in alpha])
    np.testing.assert_allclose(got, np.interp(alpha, knots, values), rtol=0, atol=1e-15)
    assert float(Schedule([3.0], [0.7])(100.0)) == 0.7  # one knot: a constant
    grid = Schedule(knots, np.array([values, values[::-1]]))  # values on a grid axis
    np.testing.assert_allclose(grid(5.0), [np.interp(5.0, knots, values), np.interp(5.0, knots, values[::-1])])
    assert float(at({"eps": s, "eta_w": 0.1}, 2.5)["eps"]) == pytest.approx(1.2)
    # the Monte Carlo reads it on step indices: step mu at (mu + 1/2) / N is alpha
    assert float(in_steps(s, 100)(250.0)) == pytest.approx(float(s(2.5)))
    f = FunctionSchedule(lambda a, th: th * a, 2.0)
    assert float(at({"x": f}, 3.0)["x"]) == 6.0 and float(in_steps(f, 10)(30.0)) == 6.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("knots:0,10;values:0", "2 knots but 1 values"),
        ("knots:0,10", "exactly the keys knots and values"),
        ("knots:10,0;values:0,1", "increasing"),
        ("knots:-1,0;values:0,1", "must be >= 0"),
        ("knots:0,x;values:0,1", "must be numbers"),
        ({"knots": [0, 1], "values": [0, float("nan")]}, "finite numbers"),
        ("0.5", "write a schedule as"),
    ],
)
def test_bad_schedules_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_schedule("eps", spec)
    assert "eps" in str(e.value)


def test_a_constant_schedule_is_the_number_bit_for_bit():
    const = P._replace(eps=Schedule([0.0], [1.0]), eta_w=Schedule([0.0, 5.0], [0.04, 0.04]))
    a, b = solve_ode(P, 4.0, 4, dt=0.1), solve_ode(const, 4.0, 4, dt=0.1)
    assert np.array_equal(a.R, b.R) and np.array_equal(a.b, b.b)
    kw = dict(N=40, alpha_max=0.6, n_save=3, replicas=2)
    m1, m2 = simulate(jax.random.key(3), P, **kw), simulate(jax.random.key(3), const, **kw)
    assert np.array_equal(m1.R, m2.R) and np.array_equal(m1.b, m2.b)


def test_only_the_rules_parameters_follow_a_schedule():
    with pytest.raises(ValueError, match="prior=.*only the training rule's parameters"):
        solve_ode(P._replace(prior=Schedule([0.0, 1.0], [0.5, 0.6])), 1.0, 1)
    with pytest.raises(ValueError, match="eps=-0.5 must be >= 0"):
        solve_ode(P._replace(eps=Schedule([0.0, 1.0], [0.5, -0.5])), 1.0, 1)


KNOTS = (0.0, 5.0, 10.0, 20.0)
PLAN = plan_steps(20.0, 4, 0.25)


def _objective(values):
    """Half the clean error plus half the robust error at radius 0.5, after alpha = 20 under the eps schedule."""
    _, R, b = unit_trajectory(P._replace(eps=Schedule(KNOTS, values)), PLAN)
    return 0.5 * test_error(R[-1], b[-1], P) + 0.5 * robust_error(R[-1], b[-1], 0.5, P)


def test_gradient_through_the_ode_matches_central_differences():
    v = jnp.array([0.2, 0.6, 1.0, 0.8])
    g = np.asarray(jax.grad(_objective)(v))
    h = 1e-5
    fd = np.array([(_objective(v.at[i].add(h)) - _objective(v.at[i].add(-h))) / (2 * h) for i in range(len(v))])
    # float64: central differences are good to about h^2 |f'''| + 1e-16 / h, far below the 1e-6 asked
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=0)
    assert np.all(np.abs(g) > 1e-4)  # every knot matters here, so the relative check is not vacuous
    # the pure trajectory is solve_ode's, number for number
    sol = solve_ode(P._replace(eps=Schedule(KNOTS, v)), 20.0, 4, dt=0.25)
    _, R, b = unit_trajectory(P._replace(eps=Schedule(KNOTS, v)), PLAN)
    assert np.array_equal(sol.R, R) and np.array_equal(sol.b, b)


def test_monte_carlo_follows_the_schedule_of_the_ode():
    """The reduced sampler (exact in (R, b)) at N = 1000 against the ODE, under schedules of eps and eta_w that
    change the dynamics: within 4 standard errors of the scheduled ODE, and far from the ODE of the schedule's
    mean values (so the test would see a Monte Carlo that ignored the schedule)."""
    sched = P._replace(eps=Schedule([0.0, 10.0, 20.0], [0.0, 1.5, 0.5]), eta_w=Schedule([0.0, 20.0], [0.5, 0.05]))
    mc = simulate(
        jax.random.key(2), sched, N=1000, alpha_max=20.0, n_save=10, replicas=256, sampler="reduced", dtype="float64"
    )
    ode = solve_ode(sched, 20.0, 10, dt=0.05)
    ok = mc.finite[:, -1]
    assert ok.all()
    flat = solve_ode(P._replace(eps=0.75, eta_w=0.275), 20.0, 10, dt=0.05)
    for q in ("R", "b"):
        x = np.asarray(getattr(mc, q))[ok]
        mean, sem = x.mean(0)[1:], x.std(0, ddof=1)[1:] / np.sqrt(len(x))
        assert_within_k_se(mean, sem, np.asarray(getattr(ode, q))[1:], what=q)
        if q == "R":
            assert np.max(np.abs(mean - np.asarray(flat.R)[1:]) / sem) > 10


def test_jaxadv_run_reads_a_schedule(tmp_path):
    """The console script: a schedule from --set and from a TOML table, written back in config.json, the robust
    error at the final radius."""
    toml = tmp_path / "s.toml"
    toml.write_text(
        'preset = "scenario2"\nN = 40\nreplicas = 2\nalpha_max = 0.6\nn_save = 3\n'
        "[rule]\neta_w = {knots = [0, 0.6], values = [0.5, 0.1]}\n"
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jaxadv", "run", str(toml), "--set", "eps=knots:0,0.3;values:0,0.8"]
    r = subprocess.run([*cmd, "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["eps"] == {"knots": [0.0, 0.3], "values": [0.0, 0.8]}
    assert info["config"]["eta_w"] == {"knots": [0.0, 0.6], "values": [0.5, 0.1]}
    assert info["resolved"]["eps_test"] == pytest.approx(0.8)
    bad = subprocess.run([*cmd[:-1], "eps=knots:0,1;values:0,-1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "eps=-1.0 must be >= 0" in bad.stderr and "Traceback" not in bad.stderr


def test_committee_follows_a_schedule(tmp_path):
    """The committee (K = 2, the committee preset) under an eps warm-up: its Monte Carlo within 4 standard errors
    of the scheduled ODE and far from the ODE at the constant final eps; through jaxadv committee, config.json keeps
    the schedule and eps_test is its final value."""
    from jaxadv.app.config import load_any
    from jaxadv.committee.montecarlo import simulate_committee
    from jaxadv.committee.ode import solve_committee_ode
    from jaxadv.students.committee import resolve

    _, cfg = load_any("committee", ["eps=knots:0,5;values:0,1"])
    pb = resolve(cfg)
    v = pb.values
    start = dict(Q0=v["Q0"], R0=v["R0"], b0=v["b0"])
    ode = solve_committee_ode(pb.mixture, pb.params, pb.spec, 5.0, 5, **start)
    const = solve_committee_ode(pb.mixture, pb.params._replace(eps=1.0), pb.spec, 5.0, 5, **start)
    mc = simulate_committee(
        jax.random.key(0), pb.mixture, pb.params, pb.spec, N=500, alpha_max=5.0, n_save=5, replicas=64, **start
    )
    far = 0.0
    for q in ("R", "b"):
        x = np.asarray(getattr(mc, q), float)
        mean, sem = x.mean(0)[1:].ravel(), x.std(0, ddof=1)[1:].ravel() / np.sqrt(len(x))
        assert_within_k_se(mean, sem, np.asarray(getattr(ode, q))[1:].ravel(), what=q)
        far = max(far, np.max(np.abs(mean - np.asarray(getattr(const, q))[1:].ravel()) / sem))
    assert far > 10
    assert cfg["eps_test"] == 1.0


def test_a_sweep_over_a_schedules_knot_values(tmp_path):
    """[base] eps = {knots, values} with grid axes eps@I (the value at knot I): each grid point is the ODE (and the
    Monte Carlo) of its own schedule, the robust error at the final eps, the knot values in sweep.npz."""
    from jaxadv import make_sweep_config, sweep

    base = {"prior": 0.7, "eps": {"knots": [0, 5, 10], "values": [0.0, 0.5, 1.0]}}
    res = sweep(make_sweep_config({"eps@2": [0.5, 1.5], "rho": [2.0, 3.0]}, base, alpha_max=10.0, n_save=5, dt=0.1))
    for i, last in enumerate([0.5, 1.5]):
        for j, rho in enumerate([2.0, 3.0]):
            own = solve_ode(P._replace(rho=rho, eps=Schedule([0, 5, 10], [0.0, 0.5, last])), 10.0, 5, dt=0.1)
            np.testing.assert_allclose(res.R[i, j], own.R, rtol=0, atol=1e-15)  # one vmap against one point
            assert res.eps_test[i, j] == last
    cfg = make_sweep_config({"eps@1": [0.2, 0.9]}, base, alpha_max=0.6, n_save=3, mc=True, N=40, replicas=2)
    res = sweep(cfg, str(tmp_path))
    mine = simulate(
        jax.random.fold_in(jax.random.key(0), 1),
        P._replace(eps=Schedule([0, 5, 10], [0.0, 0.9, 1.0])),
        N=40,
        alpha_max=0.6,
        n_save=3,
        replicas=2,
    )
    np.testing.assert_array_equal(res.mc["R_mean"][1], np.asarray(mine.R, np.float64).mean(0))
    with np.load(tmp_path / "sweep.npz") as z:
        np.testing.assert_array_equal(z["eps"], [[0.0, 0.2, 1.0], [0.0, 0.9, 1.0]])
        np.testing.assert_array_equal(z["eps_knots"], [0.0, 5.0, 10.0])
    with pytest.raises(ValueError, match="grid.eps@3: a knot axis NAME@I needs"):
        make_sweep_config({"eps@3": [0.5]}, base)
    with pytest.raises(ValueError, match="eps=-0.5 must be >= 0"):
        make_sweep_config({"eps@0": [-0.5]}, base)


@pytest.mark.slow
def test_the_step_time_of_a_schedule_shifts_the_mean_as_predicted(monkeypatch):
    """Reading the schedule at the end of each step instead of its start (SCHEDULE_POINT 1 against 0) shifts the
    Monte Carlo's mean by delta, d delta / d alpha = J delta + theta' dF/d eps / N along the ODE (docs/theory.md
    section 15): the reduced sampler at N = 200, 40000 paired replicas (the same keys), eps 0 -> 3 on [0, 4].
    Measured: the difference is the prediction to 1.5 % (b) at alpha = 1 and 5 % at alpha = 4, the residual
    shrinking as 1/N (19 %, 5 %, 1 % at N = 50, 200, 800): so the midpoint, halfway, has no O(1/N) bias."""
    from jaxadv.mc import driver
    from jaxadv.ode.vector_field import drift

    N, T, slope = 200, 4.0, 0.75
    sched = Schedule([0.0, 4.0], [0.0, 3.0])
    p = P._replace(eps=sched, eta_w=0.5, eta_b=1.0)
    runs = []
    for point in (0.0, 1.0):
        monkeypatch.setattr(driver, "SCHEDULE_POINT", point)
        jax.clear_caches()
        runs.append(
            simulate(
                jax.random.key(7), p, N=N, alpha_max=T, n_save=4, replicas=40000, sampler="reduced", dtype="float64"
            )
        )
    jax.clear_caches()

    def F(y, eps):
        return jnp.stack(drift(y[0], y[1], p._replace(eps=eps)))

    @jax.jit
    def rhs(t, z):
        y, d = z[:2], z[2:]
        J, Fe = jax.jacfwd(F)(y, sched(t)), jax.jacfwd(F, argnums=1)(y, sched(t))
        return jnp.concatenate([F(y, sched(t)), J @ d + slope * Fe / N])

    z, h, predicted = jnp.zeros(4), 0.01, []
    for k in range(400):  # RK4 of (y, delta)
        t = k * h
        k1 = rhs(t, z)
        k2 = rhs(t + h / 2, z + h / 2 * k1)
        k3 = rhs(t + h / 2, z + h / 2 * k2)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + rhs(t + h, z + h * k3))
        if (k + 1) % 100 == 0:
            predicted.append(np.asarray(z[2:]))
    predicted = np.array(predicted)
    for i, q in enumerate(("R", "b")):
        d = (np.asarray(getattr(runs[1], q)) - np.asarray(getattr(runs[0], q)))[:, 1:].mean(0)
        # an O(1/N^2) remainder: at most 10 % of the largest predicted shift (measured 5 % for b, 8 % for R)
        assert np.max(np.abs(d - predicted[:, i])) <= 0.1 * np.max(np.abs(predicted[:, i])), (q, d, predicted[:, i])
        assert np.max(np.abs(predicted[:, i])) > 5e-5  # the effect is there to see (0.0012 in b)


def test_committee_and_sweep_commands_read_schedules(tmp_path):
    """The console scripts: jaxadv committee with an eps schedule (its figures' titles, config.json), and jaxadv
    sweep over a schedule's knot value from a TOML file (the quoted key "eps@1")."""
    out = tmp_path / "c"
    small = ["N=40", "replicas=2", "alpha_max=0.6", "n_save=3", "eps=knots:0,0.6;values:0,1"]
    cmd = [sys.executable, "-m", "jaxadv", "committee", "committee", "--quiet", "--out", str(out)]
    r = subprocess.run([*cmd, *(x for s in small for x in ("--set", s))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["eps"] == {"knots": [0.0, 0.6], "values": [0.0, 1.0]} and info["config"]["eps_test"] == 1.0
    assert (out / "errors.png").exists()
    toml = tmp_path / "s.toml"
    toml.write_text(
        "alpha_max = 1.0\nn_save = 2\n[base]\nprior = 0.7\neps = {knots = [0, 1], values = [0.0, 1.0]}\n"
        '[grid]\n"eps@1" = [0.5, 1.5]\n'
    )
    sweep_out = tmp_path / "s"
    r = subprocess.run(
        [sys.executable, "-m", "jaxadv", "sweep", str(toml), "--out", str(sweep_out), "--quiet", "--no-plots"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    header = (sweep_out / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["point", "eps@1", "alpha"]
    base = json.loads((sweep_out / "config.json").read_text())["config"]["base"]
    assert base["eps"] == {"knots": [0.0, 1.0], "values": [0.0, 1.0]}
