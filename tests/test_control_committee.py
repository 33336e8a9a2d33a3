"""Optimal protocols for committees (jaxadv.control.committee): the derivatives of the committee's error measures,
the differentiable ODE, the gradient of a protocol's objective against central differences, and the optimiser's
agreement across starts and its KKT conditions on a committee problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv.committee import CommitteeParams, CommitteeSpec, CommitteeState, solve_committee_ode, two_cluster, xor
from jaxadv.committee.fields import committee_output
from jaxadv.committee.measures import MEASURE_RULE, bisected_error, clean_error, robust_error
from jaxadv.committee.ode import committee_trajectory
from jaxadv.committee.quadrature import GaussRule
from jaxadv.control import CommitteeControl, Controls, make_objective, objective_of, optimise, plan_steps
from jaxadv.control.optimise import budget_weights

STATES = {
    # XOR, K = 2, second layer not tied (where the two units' weights tie, the error has a kink in v)
    "xor": (
        xor(rho=3.0),
        CommitteeState(*map(jnp.array, ([[1.0, 0.2], [0.2, 1.1]], [[1.2, 0.3], [-0.2, 1.1]], [0.1, -0.2], [0.6, 0.4]))),
    ),
    # two clusters: the state an eps schedule reaches (the robust error's search ends where its tangent gradient
    # vanishes; differentiating through the search gave NaN there)
    "two_cluster": (
        two_cluster(prior=0.7),
        CommitteeState(
            *map(
                jnp.array,
                (
                    [[1.0, 0.26734309], [0.26734309, 1.0]],
                    [[0.71985081], [0.67819609]],
                    [-0.27727189, -0.49689572],
                    [0.5, 0.5],
                ),
            )
        ),
    ),
}


def _flat(state):
    x = jnp.concatenate([z.ravel() for z in state])

    def unflat(y):
        out, i = [], 0
        for z in state:
            out.append(y[i : i + z.size].reshape(z.shape))
            i += z.size
        return CommitteeState(*out)

    return x, unflat


def _central(f, x, h):
    return np.array([(f(x.at[i].add(h)) - f(x.at[i].add(-h))) / (2 * h) for i in range(x.size)])


@pytest.mark.parametrize("name", sorted(STATES))
def test_error_measures_derivatives_against_central_differences(name):
    """The clean error's threshold is bisected: its derivative is the implicit function theorem's; the reference
    differences a 60-halving bisection (float64's resolution), so their own error is below 1e-9. The robust
    error is differentiated at its maximiser (the envelope theorem). Both to 1e-6 relative (measured 4e-9)."""
    mix, state = STATES[name]
    x, unflat = _flat(state)
    v_free = [i for i in range(x.size)][: x.size - state.v.size]  # the second layer of a tie has a kink
    fine = jax.jit(
        lambda y: bisected_error(
            unflat(y), mix, lambda f, tau: tau * committee_output(f, unflat(y).v), MEASURE_RULE, bisect=60
        )
    )
    g = np.asarray(jax.grad(lambda y: clean_error(unflat(y), mix))(x))
    assert float(fine(x)) == pytest.approx(float(clean_error(state, mix)), abs=1e-8)
    fd = _central(fine, x, 1e-5)
    np.testing.assert_allclose(g[v_free], fd[v_free], rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))
    robust = jax.jit(lambda y: robust_error(unflat(y), mix, 0.5))
    g = np.asarray(jax.grad(robust)(x))
    assert np.all(np.isfinite(g))
    fd = _central(robust, x, 1e-5)
    np.testing.assert_allclose(g[v_free], fd[v_free], rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))
    assert np.max(np.abs(fd)) > 1e-2


MIX = two_cluster(prior=0.7)
SPEC = CommitteeSpec(K=2)
T = 4.0
RULE = GaussRule(panels=4, order=8, width=7.0)
Y0 = CommitteeState(*map(jnp.array, ([[1.0, 0.2], [0.2, 1.0]], [[0.3], [0.1]], [0.1, -0.1], [0.5, 0.5])))
KNOTS = tuple(np.linspace(0.0, T, 4))
PROBLEM = CommitteeControl(
    MIX,
    CommitteeParams(eta_w=1.0, eta_b=0.5, eps=0.5),
    SPEC,
    plan_steps(T, 1, 0.1),
    RULE,
    Y0,
    make_objective({"clean": 0.5, "robust": 0.5}, eps_test=0.5),
    Controls(("eps",), KNOTS, (0.0,), (2.0,), budget=0.5),
)


def test_committee_trajectory_is_the_checked_solve():
    """The pure, differentiable form gives the numbers of solve_committee_ode with the same rule, step and start."""
    from jaxadv.schedule import Schedule

    params = PROBLEM.params._replace(eps=Schedule(KNOTS, jnp.array([0.0, 0.3, 0.9, 0.8])))
    alpha, ys = committee_trajectory(MIX, params, SPEC, plan_steps(T, 4, 0.1), RULE, Y0)
    ref = solve_committee_ode(MIX, params, SPEC, T, 4, dt=0.1, rule=RULE, Q0=Y0.Q, R0=Y0.R, b0=Y0.b, v0=Y0.v)
    for z, r in zip(ys, (ref.Q, ref.R, ref.b, ref.v), strict=True):
        np.testing.assert_array_equal(np.asarray(z), np.asarray(r))
    np.testing.assert_array_equal(np.asarray(alpha), np.asarray(ref.alpha))


def test_committee_protocol_gradient_against_central_differences():
    """Through the RK4 solve and the robust error: 1e-6 relative (the clean term's threshold is bisected to 30
    halvings in the objective, whose differences are noisy at 1e-3; its derivative is checked above)."""
    pb = PROBLEM._replace(objective=make_objective({"robust": 1.0}, eps_test=0.5))
    v = jnp.array([[0.1, 0.3, 0.9, 0.6]])
    f = jax.jit(lambda x: objective_of(pb, x))
    g = np.asarray(jax.grad(f)(v))[0]
    fd = _central(lambda x: f(x[None])[()], v[0], 1e-5)
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    assert np.all(np.abs(g) > 1e-4)


def test_committee_optimum_from_four_starts_agrees_and_meets_kkt():
    res = optimise(PROBLEM, starts=4)
    objectives = np.array([s.objective for s in res.starts])
    values = np.stack([s.values for s in res.starts])
    assert np.ptp(objectives) < 1e-9
    np.testing.assert_allclose(values, values[:1].repeat(4, 0), atol=1e-4)
    for s in res.starts:
        assert s.kkt < 1e-8 < s.kkt0
        assert budget_weights(KNOTS) @ s.values[0] == pytest.approx(0.5, abs=1e-12)
    constant = float(objective_of(PROBLEM, jnp.full((1, len(KNOTS)), 0.5)))
    assert res.objective < constant - 1e-4


def test_committee_controls_are_the_committees_parameters():
    with pytest.raises(ValueError, match="'prior' cannot follow a schedule"):
        optimise(PROBLEM._replace(controls=PROBLEM.controls._replace(names=("prior",))))
    # eta_v is the committee's, not the unit's: accepted here
    PROBLEM.controls._replace(names=("eta_v",), lower=(0.1,), budget=None).check(T, PROBLEM.schedulable)


def test_jaxadv_optimise_committee_console_script(tmp_path):
    """``jaxadv optimise`` on a committee preset: its files, the order parameters of every protocol in
    protocols.csv, a schedule.toml that reads back as the committee's configuration, and a committee-only bad
    input refused in one line with exit 2."""
    import csv
    import subprocess
    import sys

    from jaxadv.app.config import load_any

    out = tmp_path / "o"
    base = [sys.executable, "-m", "jaxadv", "optimise", "committee", "--quiet"]
    small = ["N=60", "replicas=4", "alpha_max=1", "n_save=1", "dt=0.1", "knots=3", "budget=0.5", "starts=2"]
    sets = [x for s in small for x in ("--set", s)]
    r = subprocess.run([*base, *sets, "--set", "steps=10", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out / "protocols.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"Q_1_2", "R_1_1", "R_2_1", "b_1", "test_error", "robust_error"} <= set(rows[0])
    assert {r["protocol"] for r in rows} == {"optimal", "constant", "ramp"}
    student, cfg = load_any(str(out / "schedule.toml"))
    assert student == "committee" and cfg["K"] == 2 and cfg["eps"].knots == (0.0, 0.5, 1.0)
    assert budget_weights(cfg["eps"].knots) @ np.asarray(cfg["eps"].values) == pytest.approx(0.5, abs=1e-12)
    assert (out / "confirm.csv").exists() and not list(out.glob("mc_checkpoint_*.npz"))
    bad = subprocess.run([*base, "--set", "attack=worst", "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert bad.returncode == 2 and "attack='worst'" in bad.stderr and "Traceback" not in bad.stderr
