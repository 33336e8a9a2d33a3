"""Log-spaced save points (save="log") for the Monte Carlo, the ODE, sweeps and `jaxadv run`, and the
ODE started from the Monte Carlo's measured initial point (ode_start="mc")."""

import jax
import numpy as np
import pytest

import jaxadv as ja
from jaxadv.app.config import load_config
from jaxadv.mc.schedule import log_save_steps, save_steps


def test_log_steps_cover_every_decade_once():
    s = log_save_steps(1000, 100.0, 5)
    assert s[0] == 0 and s[1] == 1 and s[-1] == 100_000 and np.all(np.diff(s) > 0)
    decades = np.floor(np.log10(s[1:]))
    assert all(np.sum(decades == d) == 5 for d in range(5))
    np.testing.assert_array_equal(save_steps(100, 2.0, 4), [0, 50, 100, 150, 200])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points_per_decade=0), "points_per_decade=0"),
        (dict(points_per_decade=2, alpha_min=20.0), "alpha_min=20.0"),
    ],
)
def test_log_steps_check_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        log_save_steps(100, 10.0, **kwargs)
    with pytest.raises(ValueError, match="save='cubic'"):
        save_steps(100, 10.0, 4, "cubic")


@pytest.mark.parametrize("sampler", ["full", "reduced"])
def test_log_saves_are_the_linear_run_at_those_steps(sampler):
    """Steps are keyed by their index: the log-saved run is bitwise the step-by-step run, subsampled."""
    kw = dict(N=50, alpha_max=2.0, replicas=3, sampler=sampler)
    log = ja.simulate(jax.random.key(1), ja.ModelParams(), save="log", points_per_decade=3, **kw)
    every = ja.simulate(jax.random.key(1), ja.ModelParams(), n_save=100, **kw)
    steps = log_save_steps(50, 2.0, 3)
    np.testing.assert_array_equal(log.alpha, steps / 50)
    np.testing.assert_array_equal(log.R, every.R[:, steps])
    np.testing.assert_array_equal(log.b, every.b[:, steps])


def test_ode_at_any_times():
    p = ja.ModelParams(eps=0.5)
    lin = ja.solve_ode(p, 10.0, 10, dt=0.5)
    same = ja.solve_ode(p, 0.0, 0, dt=0.5, save_alpha=np.linspace(0.0, 10.0, 11))
    np.testing.assert_array_equal(same.R, lin.R)
    np.testing.assert_array_equal(same.b, lin.b)
    t = log_save_steps(100, 10.0, 4) / 100
    coarse = ja.solve_ode(p, 0.0, 0, dt=0.05, save_alpha=t)
    fine = ja.solve_ode(p, 0.0, 0, dt=0.005, save_alpha=t)  # the same compilation (step counts are traced)
    np.testing.assert_allclose(coarse.alpha, t)
    np.testing.assert_allclose(coarse.R, fine.R, atol=1e-8)
    np.testing.assert_allclose(coarse.b, fine.b, atol=1e-8)
    with pytest.raises(ValueError, match="save_alpha"):
        ja.solve_ode(p, 1.0, 1, save_alpha=[0.0, 2.0, 1.0])


def test_sweep_with_log_saves():
    cfg = ja.make_sweep_config({"eps": [0.0, 1.0]}, alpha_max=5.0, N=20, dt=0.1, save="log", points_per_decade=2)
    res = ja.sweep(cfg)
    np.testing.assert_allclose(res.alpha, log_save_steps(20, 5.0, 2) / 20)
    assert res.R.shape == (2, len(res.alpha)) and np.all(np.isfinite(res.R))
    assert ja.make_sweep_config({"eps": [0.0]}).digest() == ja.make_sweep_config({"eps": [0.0]}, save="linear").digest()
    with pytest.raises(ValueError, match="save='cubic'"):
        ja.make_sweep_config({"eps": [0.0]}, save="cubic")


@pytest.mark.parametrize(
    "override, message",
    [
        ("save=cubic", "save='cubic'"),
        ("points_per_decade=0", "points_per_decade=0"),
        ("ode_start=zero", "ode_start='zero'"),
    ],
)
def test_config_checks_save_keys(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("scenario1", [override])


def test_run_with_log_saves_and_the_ode_started_from_the_mc(tmp_path):
    from jaxadv.app.io import read_csv
    from jaxadv.app.run import run

    cfg = load_config(
        "scenario1", ["alpha_max=2", "N=40", "replicas=4", "save=log", "points_per_decade=3", "ode_start=mc"]
    )
    run(cfg, str(tmp_path), progress=False, log=lambda *a: None)
    ode, mc = read_csv(tmp_path / "ode.csv"), read_csv(tmp_path / "mc.csv")
    np.testing.assert_array_equal(ode["alpha"], mc["alpha"])
    np.testing.assert_allclose(ode["alpha"], log_save_steps(40, 2.0, 3) / 40)
    assert ode["R"][0] == mc["R_mean"][0] and ode["b"][0] == mc["b_mean"][0]


@pytest.mark.slow  # log saves end to end in the default suite: test_run_with_log_saves_and_the_ode_started_from_the_mc
def test_fluctuations_and_verify_with_log_saves(tmp_path):
    from jaxadv.app.verify import verify

    p = ja.ModelParams(eps=0.5)
    t = log_save_steps(100, 10.0, 4) / 100
    fl = ja.solve_fluctuations(p, 100, 0.0, 0, dt=0.05, save_alpha=t)
    ode = ja.solve_ode(p, 0.0, 0, dt=0.05, save_alpha=t)  # its mean is the ODE, at the same times
    np.testing.assert_allclose(fl.alpha, t)
    np.testing.assert_allclose(fl.mean[:, 0], ode.R, atol=1e-9)
    np.testing.assert_allclose(fl.mean[:, 1], ode.b, atol=1e-9)
    assert np.all(np.isfinite(fl.cov))
    cfg = load_config("scenario2", ["eps=0.5", "dt=0.1", "save=log", "points_per_decade=2"])
    verify(cfg, str(tmp_path), [20], replicas=50, alpha_max=3.0, log=lambda *a: None)
    import csv

    with open(tmp_path / "verify.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["alpha_max"]) == 3.0 and row["sampler"] == "reduced"
