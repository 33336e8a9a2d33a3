"""``jaxadv sweep`` for committees: the grid equals single ODE runs, the table's columns, the Monte Carlo
per point (same numbers as a direct run, resumable to the bit), figures and the refusals."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import default_sigint

from jaxadv import committee_sweep, make_committee_sweep_config
from jaxadv.app.cli import main
from jaxadv.app.committee_sweep import load_committee_sweep_config
from jaxadv.app.io import read_csv
from jaxadv.committee import CommitteeState, solve_committee_ode, xor
from jaxadv.committee.measures import clean_error, robust_error
from jaxadv.committee.montecarlo import simulate_committee

R0 = [[0.4, 0.1], [-0.3, 0.2]]
Q0 = [[1.0, -0.1], [-0.1, 1.0]]
TOML = """
alpha_max = 0.5
n_save = 2
dt = 0.25
mc = true
N = 40
replicas = 4
seed = 3
[base]
preset = "xor"
K = 2
R0 = [[0.4, 0.1], [-0.3, 0.2]]
Q0 = [[1.0, -0.1], [-0.1, 1.0]]
b0 = [0.1, -0.1]
eps_test = 0.3
[grid]
eps = [0.0, 0.5]
rho = [2.0, 3.0]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2 x 2 committee sweep (xor, K = 2) with the Monte Carlo, through the command line."""
    out = tmp_path_factory.mktemp("csweep")
    (out / "s.toml").write_text(TOML)
    assert main(["sweep", str(out / "s.toml"), "--out", str(out / "res"), "--quiet"]) == 0
    return out


def test_grid_rows_equal_single_odes_and_direct_errors(swept):
    res = swept / "res"
    t = read_csv(res / "sweep.csv")
    assert len(t["point"]) == 4
    assert {
        "eps",
        "rho",
        "alpha",
        "eps_test",
        "clean_error",
        "robust_error",
        "Q_1_2",
        "R_1_1",
        "R_2_2",
        "b_2",
        "v_1",
    } <= set(t)
    # point-major, last axis fastest
    np.testing.assert_array_equal(t["eps"], [0.0, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(t["rho"], [2.0, 3.0, 2.0, 3.0])
    from jaxadv.committee import CommitteeParams, CommitteeSpec
    from jaxadv.committee.quadrature import default_rule as ode_rule

    i = 1
    mixture = xor(t["rho"][i], 0.5)  # the preset's var
    sol = solve_committee_ode(
        mixture,
        CommitteeParams(1.0, 0.5, 0.0, t["eps"][i]),
        CommitteeSpec(K=2),
        0.5,
        2,
        dt=0.25,
        Q0=Q0,
        R0=R0,
        b0=[0.1, -0.1],
        rule=ode_rule(2),
    )
    np.testing.assert_allclose(
        [t["Q_1_2"][i], t["R_1_1"][i], t["R_2_2"][i], t["b_2"][i]],
        [sol.Q[-1, 0, 1], sol.R[-1, 0, 0], sol.R[-1, 1, 1], sol.b[-1, 1]],
        atol=1e-12,
    )
    st = CommitteeState(sol.Q[-1], sol.R[-1], sol.b[-1], sol.v[-1])
    np.testing.assert_allclose(t["clean_error"][i], float(clean_error(st, mixture)), atol=1e-12)
    np.testing.assert_allclose(t["robust_error"][i], float(robust_error(st, mixture, 0.3)), atol=1e-12)
    assert np.all(t["robust_error"] >= t["clean_error"])
    with np.load(res / "sweep.npz") as z:
        assert z["Q"].shape == (2, 2, 3, 2, 2) and z["R"].shape == (2, 2, 3, 2, 2)
    for f in ("heatmaps.png", "tradeoff.png", "config.json"):
        assert (res / f).stat().st_size > 500
    # the folder reads back
    from jaxadv import load_committee_sweep

    back = load_committee_sweep(str(res))
    assert back.axes["rho"].tolist() == [2.0, 3.0] and back.Q.shape == (2, 2, 3, 2, 2)
    np.testing.assert_array_equal(back.robust_error.ravel(), t["robust_error"])
    assert back.mc["n_finite"].shape == (2, 2)


def test_monte_carlo_per_point_is_a_direct_run_and_resumes_bitwise(swept, capsys):
    res = str(swept / "res")
    t = read_csv(os.path.join(res, "sweep.csv"))
    assert {
        "Q_1_2_mean",
        "Q_1_2_sem",
        "R_2_1_mean",
        "b_1_sem",
        "clean_error_mean",
        "clean_error_sem",
        "n_finite",
        "max_dev_sem",
    } <= set(t)
    assert np.all(t["n_finite"] == 4) and np.all(np.isfinite(t["max_dev_sem"]))
    # point 2 is simulate_committee with fold_in(key(seed), 2) from exactly the given overlaps
    from jaxadv.committee import CommitteeParams, CommitteeSpec

    mc = simulate_committee(
        jax.random.fold_in(jax.random.key(3), 2),
        xor(2.0, 0.5),
        CommitteeParams(1.0, 0.5, 0.0, 0.5),
        CommitteeSpec(K=2),
        N=40,
        alpha_max=0.5,
        n_save=2,
        replicas=4,
        Q0=Q0,
        R0=R0,
        b0=[0.1, -0.1],
    )
    np.testing.assert_allclose(t["R_1_1_mean"][2], np.mean(mc.R[:, -1, 0, 0].astype(np.float64)), rtol=1e-12)
    # a lost chunk is recomputed; the table is the same to the bit
    cfg = load_committee_sweep_config(str(swept / "s.toml"))
    chunks = sorted(os.listdir(os.path.join(res, "chunks")))  # one point a chunk, on any device count
    assert len(chunks) == 4
    os.remove(os.path.join(res, "chunks", chunks[-1]))
    capsys.readouterr()
    again = committee_sweep(cfg, res, progress=True).table
    for k in t:
        np.testing.assert_array_equal(again[k], t[k], err_msg=k)
    # with the Monte Carlo one bar at a time: each recomputed point's, none over chunks
    err = capsys.readouterr().err
    assert "point 4/4 monte carlo [" in err and "committee sweep [" not in err, err
    # another configuration in the same folder is refused
    other = make_committee_sweep_config(
        {"eps": [0.0, 0.4]}, {"preset": "committee"}, alpha_max=0.5, n_save=1, dt=0.25, mc=True, N=40, replicas=4
    )
    with pytest.raises(ValueError, match="another configuration"):
        committee_sweep(other, res)


@pytest.mark.parametrize(
    "grid,base,options,msg",
    [
        ({"kappa": [1.0]}, {"preset": "xor"}, {}, "grid.kappa: unknown axis"),
        ({"K": [2, 3]}, {"preset": "xor"}, {}, "grid.K: K is not sweepable"),
        ({"attack": [1.0]}, {"preset": "xor"}, {}, "grid.attack"),
        ({"var": [0.5, 1.0]}, {"preset": "committee"}, {}, "grid.var: not a parameter of data='two_cluster'"),
        ({"prior": [0.5, 1.2]}, {"preset": "committee"}, {}, "prior=1.2"),
        ({"eps": [0.1, -0.5]}, {"preset": "committee"}, {}, "eps=-0.5"),
        ({"eps": [0.1]}, {"preset": "committee", "eps": 0.2}, {}, "grid.eps: eps is also set in [base]"),
        ({"eps": [0.1]}, {"preset": "committee", "N": 100}, {}, "base.N: N is a run setting"),
        ({"eps": [0.1]}, {"preset": "committee", "gamma": 1}, {}, "base.gamma: unknown key"),
        ({"eps": [0.1]}, {"preset": "committe"}, {}, "base.preset='committe'"),
        ({"eps": [0.1]}, {"model": "committee"}, {}, "base.R0 and base.Q0 are needed"),
        ({"eps": [0.1]}, {"preset": "committee"}, {"sampler": "full"}, "unknown key 'sampler'"),
        ({"eps": [0.1]}, {"preset": "committee", "v": [1.0, 2.0, 3.0]}, {}, "v="),
        ({"eps": [0.1]}, {"preset": "committee", "eps_test": -1.0}, {}, "eps_test"),
        ({}, {"preset": "committee"}, {}, "grid={} is empty"),
        ({"eps": [0.1]}, {"preset": "committee"}, {"quadrature": [6, 0, 7.0]}, "quadrature=[6, 0, 7.0]"),
        ({"eps": [0.1]}, {"preset": "committee"}, {"chunk": -1}, "chunk=-1"),
        ({"eps": [0.1]}, {"preset": "committee"}, {"seed": 2**64}, "seed="),
        ({"eps": [0.1]}, {"preset": "committee"}, {"mc": True, "N": 2}, "N=2 must be >= D + K"),
    ],
)
def test_bad_committee_sweeps_are_refused_by_name(grid, base, options, msg):
    with pytest.raises(ValueError) as e:
        make_committee_sweep_config(grid, base, **options)
    assert msg in str(e.value)


def test_cli_refusal_is_one_line(tmp_path, capsys):
    toml = tmp_path / "bad.toml"
    toml.write_text(TOML.replace("rho = [2.0, 3.0]", "v1 = [1.0, 2.0]"))
    assert main(["sweep", str(toml), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxadv: error:") and "grid.v1" in err and "Traceback" not in err
    toml.write_text(TOML.replace('preset = "xor"', 'model = "committees"\npreset = "xor"'))
    assert main(["sweep", str(toml), "--out", str(tmp_path / "o")]) == 2
    assert "base.model='committees'" in capsys.readouterr().err


def test_toml_reads_preset_run_defaults(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('mc = true\n[base]\npreset = "xor"\n[grid]\nrho = [2.0, 3.0]\n')
    cfg = load_committee_sweep_config(str(toml))
    # the xor preset's run settings become the defaults of the top-level keys
    assert (cfg.N, cfg.replicas, cfg.alpha_max, cfg.dt, cfg.spec.K) == (200, 32, 40.0, 0.1, 4)
    assert cfg.name == "p" and cfg.eps_test is None


def test_readme_committee_sweep_example_loads(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = Path(root, "README.md").read_text()
    toml = text.split("### Committee sweeps", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "c.toml").write_text(toml)
    cfg = load_committee_sweep_config(str(tmp_path / "c.toml"))
    assert cfg.name == "committee_eps_prior" and cfg.spec.K == 2 and cfg.spec.attack == "pgd"
    assert cfg.grid == {"eps": (0.0, 0.25, 0.5, 1.0), "prior": (0.5, 0.7, 0.9)} and cfg.eps_test == 0.5
    assert cfg.mc and cfg.N == 200 and cfg.model["v2"] == 1.5


@pytest.mark.slow
def test_k1_committee_sweep_is_the_single_layer_sweep():
    """K = 1, v = 1 on the two-cluster model: the committee sweep's rows are the single-layer sweep's
    (ODE to 1e-10 with the fine rule; clean and robust errors against the closed forms)."""
    from jaxadv import make_sweep_config, sweep

    grid = {"eps": [0.0, 1.0], "prior": [0.5, 0.8]}
    base = {
        "model": "committee",
        "K": 1,
        "data": "two_cluster",
        "rho": 2.0,
        "v2": 1.5,
        "v": [1.0],
        "R0": [[0.2]],
        "Q0": [[1.0]],
        "b0": [0.1],
        "eta_w": 0.5,
        "eta_b": 0.3,
        "eps_test": 0.4,
    }
    c = committee_sweep(
        make_committee_sweep_config(grid, base, alpha_max=2.0, n_save=2, dt=0.1, quadrature=[32, 16, 9.0])
    )
    s = sweep(
        make_sweep_config(
            grid,
            {"rho": 2.0, "v2": 1.5, "eta_w": 0.5, "eta_b": 0.3, "eps_test": 0.4},
            alpha_max=2.0,
            n_save=2,
            dt=0.1,
            R0=0.2,
            b0=0.1,
        )
    )
    np.testing.assert_allclose(c.R[..., 0, 0], s.R, atol=1e-10)
    np.testing.assert_allclose(c.b[..., 0], s.b, atol=1e-10)
    np.testing.assert_allclose(c.clean_error, s.test_error[..., -1], atol=1e-10)
    np.testing.assert_allclose(c.robust_error, s.robust_error[..., -1], atol=1e-9)


def test_lipschitz_normalised_sweep_rows_are_the_projected_odes():
    """A sweep of the ``certified`` preset (lipschitz = 1) integrates the projected ODE of
    :func:`solve_committee_ode`: its rows equal single runs, and the bound L stays at the cap (without the
    projection the sweep's L went to 1.30)."""
    from jaxadv.committee import CommitteeParams, CommitteeSpec, two_cluster
    from jaxadv.committee.lipschitz import lipschitz_bound

    cfg = make_committee_sweep_config({"eps": [0.0, 0.5]}, {"preset": "certified"}, alpha_max=3.0, n_save=1, dt=0.1)
    t = committee_sweep(cfg).table
    m = cfg.model
    for i, eps in enumerate([0.0, 0.5]):
        sol = solve_committee_ode(
            two_cluster(m["prior"], m["rho"], m["v1"], m["v2"]),
            CommitteeParams(m["eta_w"], m["eta_b"], m["eta_v"], eps),
            CommitteeSpec(K=2, attack="fgm", normalise=False, lipschitz=1.0),
            3.0,
            1,
            dt=0.1,
            Q0=m["Q0"],
            R0=m["R0"],
            b0=m["b0"],
            v0=m["v"],
        )
        np.testing.assert_allclose(
            [t["Q_1_1"][i], t["Q_1_2"][i], t["R_1_1"][i], t["b_2"][i]],
            [sol.Q[-1, 0, 0], sol.Q[-1, 0, 1], sol.R[-1, 0, 0], sol.b[-1, 1]],
            atol=1e-12,
        )
        Q = np.array([[t["Q_1_1"][i], t["Q_1_2"][i]], [t["Q_1_2"][i], t["Q_2_2"][i]]])
        assert float(lipschitz_bound(Q, np.array([t["v_1"][i], t["v_2"][i]]))) <= 1.0 + 1e-9


def test_sigint_after_the_first_chunk_ends_the_committee_sweep_and_the_rerun_resumes(tmp_path):
    """A committee sweep was reported to ignore SIGINT after chunk 0. A real SIGINT to the console command
    once chunk 0 is on disk ends it with status 130 within seconds, chunk 0 kept; the rerun resumes from it.
    (A job started in the background of a non-interactive shell ignores SIGINT, and its children inherit that: the
    command is started with SIGINT's default disposition, so the test does not depend on how pytest was started.)"""
    import signal
    import subprocess
    import sys
    import time

    toml = tmp_path / "s.toml"
    # ODE only, one point a chunk (0.83 s each, measured): the signal lands with 7 of the 8 chunks to go
    toml.write_text(
        TOML.replace("mc = true", "mc = false\nchunk = 1")
        .replace("alpha_max = 0.5", "alpha_max = 20")
        .replace("n_save = 2", "n_save = 40")
        .replace("eps = [0.0, 0.5]", "eps = [0.0, 0.25, 0.5, 0.75]")
    )
    out = tmp_path / "o"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jaxadv.app.cli", "sweep", str(toml), "--out", str(out), "--quiet", "--no-plots"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    first = out / "chunks" / "chunk_00000.npz"
    t0 = time.monotonic()
    while not first.exists() and proc.poll() is None and time.monotonic() - t0 < 240:
        time.sleep(0.02)
    assert first.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    t1 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - t1 < 30, err[-2000:]
    assert first.exists() and not (out / "sweep.csv").exists()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0 and "resuming:" in res.stdout, res.stdout + res.stderr[-2000:]
