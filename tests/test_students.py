"""Every student as a record (jaxadv.students): the model faces agree with the Monte Carlo engine that runs the
student, its order-parameter names are the columns the run writes, and one command runs every student."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv.app.config import load_any
from jaxadv.students import STUDENTS, StudentRecord, get_student


def _one_step(name):
    """``(record, problem, sampler, state, sp, B)`` after one Monte Carlo step of a small replica of the preset
    of ``name`` (float64)."""
    rec = get_student(name)
    preset = {"unit": "scenario2", "committee": "committee", "pair": "transfer"}[name]
    student, values = load_any(preset, ["N=30", "replicas=2", "alpha_max=0.1", "n_save=1", "x64=true"])
    problem = rec.resolve(values)
    key = jax.random.key(3)
    if name == "unit":
        from jaxadv.mc.driver import plan_simulation

        plan = plan_simulation(
            key, values.params, N=30, alpha_max=0.1, n_save=1, replicas=2, rule=values.rule, dtype=jnp.float64
        )
    elif name == "committee":
        from jaxadv.committee.montecarlo import plan_committee

        plan = plan_committee(
            key, problem.mixture, problem.params, problem.spec, N=30, alpha_max=0.1, n_save=1, replicas=2,
            Q0=values["Q0"], R0=values["R0"], dtype=jnp.float64,
        )  # fmt: skip
    else:
        from jaxadv.mc.pair import plan_pair

        _, pp = problem.pairs[1]
        plan = plan_pair(key, pp, problem.spec, N=30, alpha_max=0.1, n_save=1, replicas=2, dtype=jnp.float64)
    sp = plan.sp
    state = plan.sampler.init(plan.init_keys[0], sp, plan.R0, plan.b0)
    state, obs = plan.sampler.step(jax.random.key(5), state, sp)
    return rec, problem, plan.sampler, state, sp, obs


def _student(name, state):
    return state.student if name == "unit" else state  # the unit's sampler carries its optimiser's state too


@pytest.mark.parametrize("name", ["unit", "committee", "pair"])
def test_the_record_describes_the_student_its_engine_runs(name):
    rec, problem, sampler, state, sp, obs = _one_step(name)
    assert isinstance(rec, StudentRecord) and STUDENTS[name] is rec and rec.name == name
    st = _student(name, state)
    assert isinstance(st, rec.state)
    # after an update the student is normalised: the record's projection leaves it where it is
    static = problem.spec if name == "committee" else None
    for a, b in zip(jax.tree.leaves(rec.normalise(st, static)), jax.tree.leaves(st), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    # the record's order parameters are those the sampler observes
    for a, b in zip(rec.observe(st, sp.const), obs, strict=False):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    # fields and output on an example: w_k . xi - b_k for every unit, and the student's prediction from them
    xi = jax.random.normal(jax.random.key(9), (30,), jnp.float64)
    x = np.asarray(rec.fields(st, xi))
    if name == "unit":
        want = [float(st.w @ xi - st.b)]
        out = np.asarray(jax.scipy.special.erf(jnp.asarray(want)))
        np.testing.assert_allclose(np.atleast_1d(rec.output(st, xi)), out, atol=1e-12)
    elif name == "committee":
        want = np.asarray(st.W @ xi - st.b)
        sigma = float(np.sum(np.asarray(st.v) * np.asarray(jax.scipy.special.erf(jnp.asarray(want)))))
        np.testing.assert_allclose(float(rec.output(st, xi)), sigma, atol=1e-12)
    else:
        want = [float(st.s.w @ xi - st.s.b), float(st.t.w @ xi - st.t.b)]
        np.testing.assert_allclose(rec.output(st, xi), jax.scipy.special.erf(jnp.asarray(want)), atol=1e-12)
    np.testing.assert_allclose(x, want, atol=1e-12)
    assert x.shape == (rec.units(problem.values if name != "unit" else {}),)


def test_the_order_parameters_are_the_columns_a_committee_run_compares(tmp_path):
    """The committee's ``order_parameters`` are the order-parameter columns of its ``ode.csv`` and ``mc.csv``."""
    from jaxadv.app.io import read_csv
    from jaxadv.app.run import run_student

    _, values = load_any("committee", ["N=40", "replicas=4", "alpha_max=0.2", "n_save=1"])
    rec = get_student("committee")
    info = run_student(values, str(tmp_path), "committee", progress=False, log=lambda m: None)
    names = rec.order_parameters(rec.resolve(values))
    ode, mc = read_csv(str(tmp_path / "ode.csv")), read_csv(str(tmp_path / "mc.csv"))
    assert [c for c in ode if c not in ("alpha", "clean_error", "robust_error", "fgm_error")] == list(names)
    assert all(f"{c}_mean" in mc and f"{c}_sem" in mc for c in names)
    assert info["verdict_status"] in ("consistent", "not testable")


def test_an_unknown_student_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"student='perceptron' is not one of \['unit', 'committee', 'pair'\]"):
        get_student("perceptron")
    assert list(STUDENTS) == ["unit", "committee", "pair"] and len(STUDENTS) == 3
