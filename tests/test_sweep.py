"""Sweeps: grid layout, agreement with solve_ode, resume after a kill (bitwise), config refusal."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxadv
from jaxadv import ModelParams, make_sweep_config, solve_ode, sweep
from jaxadv.app.io import read_csv
from jaxadv.app.sweep import load_sweep_config, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOML = """
alpha_max = 40
n_save = 4
dt = {dt}
chunk = {chunk}
[base]
rho = 2.0
v2 = 1.5
[grid]
eps = {{linspace = [0.0, 1.0, {n_eps}]}}
prior = [0.5, 0.6, 0.8]
"""


COMMITTEE_TOML = """
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
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("XLA_FLAGS", None)
    return env


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "jaxadv.app.cli", *args], env=_env(), capture_output=True, text=True, **kw
    )


def test_sweep_matches_solve_ode_and_layout():
    cfg = make_sweep_config(
        {"eps": [0.0, 0.5, 1.0], "prior": [0.5, 0.7]}, base={"v1": 0.8}, alpha_max=30.0, n_save=3, dt=0.5, chunk=4
    )
    res = sweep(cfg)
    assert res.R.shape == (3, 2, 4)
    e, p = np.meshgrid([0.0, 0.5, 1.0], [0.5, 0.7], indexing="ij")
    ref = solve_ode(ModelParams(prior=p, eps=e, v1=0.8), 30.0, 3, dt=0.5)
    # same RK4 steps, batched differently: agreement to round-off
    np.testing.assert_allclose(res.R, ref.R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.b, ref.b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        res.test_error[..., -1],
        jaxadv.test_error(ref.R[..., -1], ref.b[..., -1], ModelParams(prior=p, eps=e, v1=0.8)),
        atol=1e-12,
    )
    # eps_test defaults to each point's eps
    np.testing.assert_array_equal(res.eps_test, e)
    cols = table(res)
    assert list(cols)[:4] == ["point", "eps", "prior", "alpha"]
    assert len(cols["R"]) == 6 * 4
    # point-major rows, last axis fastest
    assert cols["prior"][4] == 0.7 and cols["eps"][8] == 0.5


def test_no_recompile_for_new_values():
    import jax.monitoring

    compiled = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, _s, fun_name="", **_: (
            compiled.append(fun_name) if name.endswith("backend_compile_duration") else None
        )
    )
    kw = dict(alpha_max=21.0, n_save=7, dt=0.5, chunk=4)  # a save grid no other test compiles
    sweep(make_sweep_config({"eps": [0.1, 0.2, 0.3, 0.4]}, **kw))
    assert any("_solve" in f for f in compiled), compiled  # the listener sees the ODE's compilation
    compiled.clear()
    # new values, another axis, 2 chunks with the last one padded: same compiled program
    sweep(make_sweep_config({"eps": [0.4, 0.5, 0.6, 0.7, 0.8], "rho": [1.0]}, base={"prior": 0.6}, **kw))
    assert not [f for f in compiled if "_solve" in f], compiled


def test_validation_messages(tmp_path):
    with pytest.raises(ValueError, match=r"grid.kappa"):
        make_sweep_config({"kappa": [1.0]})
    with pytest.raises(ValueError, match=r"prior=1.5 must lie in the open interval"):
        make_sweep_config({"prior": [0.5, 1.5]})
    with pytest.raises(ValueError, match=r"linspace num=2.5"):
        make_sweep_config({"eps": {"linspace": [0, 1, 2.5]}})
    with pytest.raises(ValueError, match=r"chunk=-1"):
        make_sweep_config({"eps": [0.0]}, chunk=-1)
    p = tmp_path / "bad.toml"
    p.write_text("alpha_max = 10\n")
    with pytest.raises(ValueError, match=r"no \[grid\]"):
        load_sweep_config(str(p))


def test_resume_after_kill_is_bitwise_equal(tmp_path, capsys):
    """Kill the CLI (SIGKILL) after its first chunk file, rerun, compare with a clean run."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(TOML.format(chunk=2, n_eps=6, dt=0.005))  # 18 points, 9 chunks of 8000 RK4 steps
    full, part = tmp_path / "full", tmp_path / "part"
    r = _cli("sweep", str(cfg), "--out", str(full), "--quiet")
    assert r.returncode == 0, r.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxadv.app.cli", "sweep", str(cfg), "--out", str(part), "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chunk_dir = part / "chunks"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if chunk_dir.exists() and any(f.name.startswith("chunk_") for f in chunk_dir.iterdir()):
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len([f for f in chunk_dir.iterdir() if f.name.startswith("chunk_")])
    print("chunks on disk when killed:", n_done)
    assert 1 <= n_done < 9, f"killed after {n_done} of 9 chunks: not mid-run"
    assert not (part / "sweep.csv").exists()
    r = _cli("sweep", str(cfg), "--out", str(part), "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"resuming: {n_done} of 9 chunks" in r.stdout
    assert (full / "sweep.csv").read_bytes() == (part / "sweep.csv").read_bytes()
    a, b = np.load(full / "sweep.npz"), np.load(part / "sweep.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    t = read_csv(full / "sweep.csv")
    assert len(t["R"]) == 18 * 5 and np.all(np.isfinite(t["robust_error"]))

    # a damaged chunk file (cut short) is computed again with a warning, through the console script
    chunk = part / "chunks" / "chunk_00003.npz"
    chunk.write_bytes(chunk.read_bytes()[:200])
    r = _cli("sweep", str(cfg), "--out", str(part), "--quiet", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "warning: chunk file" in r.stdout and "chunk_00003.npz" in r.stdout and "resuming: 8 of 9" in r.stdout
    assert (full / "sweep.csv").read_bytes() == (part / "sweep.csv").read_bytes()

    # a changed configuration in the same directory is refused, naming the hash
    from jaxadv.app.cli import main

    cfg.write_text(TOML.format(chunk=2, n_eps=5, dt=0.005))
    assert main(["sweep", str(cfg), "--out", str(part), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "jaxadv: error:" in err and "another configuration" in err


MC_TOML = """
alpha_max = 3.0
n_save = 3
dt = 0.05
mc = true
N = 100
replicas = 8
seed = 3
[grid]
eps = [0.0, 0.5, 1.0, 1.5]
"""


def test_sweep_with_monte_carlo_resumes_inside_a_point(tmp_path, monkeypatch, capsys):
    """The Monte Carlo per point: a direct run, near the ODE; a SIGTERM inside a point (through the command)
    ends it with 130 keeping the point's finished save intervals, and the rerun resumes that point from its
    checkpoint to the same ``sweep.csv``, bit for bit."""
    jax.config.update("jax_enable_x64", True)
    (tmp_path / "mc.toml").write_text(MC_TOML)
    cfg = load_sweep_config(str(tmp_path / "mc.toml"))
    res = sweep(cfg, str(tmp_path / "mc"))
    assert res.mc["R_mean"].shape == (4, 4)
    assert np.all(res.mc["n_finite"] == 8)
    # the MC of point i is simulate(fold_in(key(seed), i), ...)
    mc = jaxadv.simulate(
        jax.random.fold_in(jax.random.key(3), 1), ModelParams(eps=0.5), N=100, alpha_max=3.0, n_save=3, replicas=8
    )
    np.testing.assert_array_equal(res.mc["R_mean"][1], mc.R.astype(np.float64).mean(axis=0))
    # large-N ODE within 4 sem at N=100 (raw)
    dev = np.abs(res.mc["R_mean"] - res.R)[:, 1:]
    assert np.all(dev < 4 * res.mc["R_sem"][:, 1:]), dev / res.mc["R_sem"][:, 1:]
    cols = read_csv(tmp_path / "mc" / "sweep.csv")
    assert {"R_mean", "R_sem", "robust_error_mean", "n_finite"} <= set(cols)

    from jaxadv.app.cli import main
    from jaxadv.mc import driver

    real, calls, armed = driver.dispatch, [], [True]

    def signalled(plan, states, k):
        calls.append(k)
        if armed[0] and len(calls) == 5:  # point 1 (one point a chunk), during its interval 2 of 3
            os.kill(os.getpid(), signal.SIGTERM)
        return real(plan, states, k)

    monkeypatch.setattr(driver, "dispatch", signalled)
    part = tmp_path / "part"
    argv = ["sweep", str(tmp_path / "mc.toml"), "--out", str(part), "--quiet", "--no-plots"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "2 of 3 save intervals saved in" in err and (part / "mc_checkpoint.npz").exists(), err
    assert sorted(os.listdir(part / "chunks")) == ["chunk_00000.npz"] and not (part / "sweep.csv").exists()
    calls.clear()
    armed[0] = False
    assert main(argv) == 0
    assert "resuming: 1 of 4 chunks" in capsys.readouterr().out
    assert calls == [2, 0, 1, 2, 0, 1, 2]  # point 1 from its checkpoint (interval 2 only), then points 2, 3
    assert (tmp_path / "mc" / "sweep.csv").read_bytes() == (part / "sweep.csv").read_bytes()
    assert not (part / "mc_checkpoint.npz").exists()


_OTHER_DEVICES = """
import sys, jax
jax.config.update("jax_enable_x64", True)
from jaxadv.app import sweep as sw
from jaxadv.app.committee_sweep import committee_sweep, load_committee_sweep_config
assert jax.device_count() == int(sys.argv[1])
sw.chunk_size = lambda cfg, n: 2  # the earlier versions' layout on 2 devices (1 point rounded up to 2)
sw.sweep(sw.load_sweep_config(sys.argv[2]), sys.argv[3])
committee_sweep(load_committee_sweep_config(sys.argv[4]), sys.argv[5])
"""


def test_resume_on_another_device_count(tmp_path):
    """A unit sweep (ODE and Monte Carlo) and a committee sweep (ODE; its Monte Carlo is a checkpointed run,
    the same bits on any device count) started on one device count and finished on another give the
    uninterrupted run's table: the committee's bit for bit; the unit's Monte Carlo bit for bit and its ODE to
    round-off (the sharded ODE program differs by up to 1.1e-16 from one device, measured; the same with no
    interruption). The unit's folder records 2 points a chunk (the layout of earlier versions on 2 devices,
    from which a committee rerun on 1 device failed with "cannot reshape array of size 5 into shape (4,)"):
    the rerun keeps it."""
    from jaxadv.app.committee_sweep import committee_sweep, load_committee_sweep_config

    other = 1 if jax.device_count() > 1 else 2
    (tmp_path / "u.toml").write_text(MC_TOML.replace("0.0, 0.5, 1.0, 1.5", "0.0, 0.5, 1.0"))
    (tmp_path / "c.toml").write_text(COMMITTEE_TOML.replace("mc = true", "mc = false\nchunk = 1"))
    u, c = tmp_path / "unit", tmp_path / "committee"
    env = {**_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={other}", "JAX_PLATFORMS": "cpu"}
    args = [str(other), str(tmp_path / "u.toml"), str(u), str(tmp_path / "c.toml"), str(c)]
    r = subprocess.run([sys.executable, "-c", _OTHER_DEVICES, *args], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    full = {d: read_csv(d / "sweep.csv") for d in (u, c)}
    committee_csv = (c / "sweep.csv").read_bytes()
    for d in (u, c):  # as if killed after the first chunk
        (d / "sweep.csv").unlink()
        (d / "chunks" / "chunk_00001.npz").unlink()
    logged = []
    sweep(load_sweep_config(str(tmp_path / "u.toml")), str(u), log=logged.append)
    committee_sweep(load_committee_sweep_config(str(tmp_path / "c.toml")), str(c), log=logged.append)
    assert [m for m in logged if "resuming" in m] == ["resuming: 1 of 2 chunks already on disk"] * 2, logged
    assert "3 points in 2 chunks of 2" in logged[1] and "2 points in 2 chunks of 1" in logged[3], logged
    assert (c / "sweep.csv").read_bytes() == committee_csv
    again = read_csv(u / "sweep.csv")
    for k, v in full[u].items():
        if k in ("R", "b", "test_error", "robust_error"):
            np.testing.assert_allclose(again[k], v, rtol=0, atol=1e-15, err_msg=k)
        else:
            np.testing.assert_array_equal(again[k], v, err_msg=k)


def test_plots_write_png_and_pdf(tmp_path):
    cfg = make_sweep_config({"eps": [0.0, 0.5, 1.0], "prior": [0.5, 0.7]}, alpha_max=30.0, n_save=3, dt=0.5, chunk=4)
    res = sweep(cfg)
    paths = jaxadv.plot_sweep_heatmaps(res, "eps", "prior", str(tmp_path / "heat"))
    paths += jaxadv.plot_tradeoff(res, str(tmp_path / "trade"), axis="eps")
    assert [os.path.basename(p) for p in paths] == ["heat.png", "heat.pdf", "trade.png", "trade.pdf"]
    assert all(os.path.getsize(p) > 1000 for p in paths)
    from jaxadv.app.sweep_plots import final_slice

    z = final_slice(res, "robust_error", "eps", "prior")
    assert z.shape == (2, 3)
    np.testing.assert_array_equal(z, res.robust_error[..., -1].T)
    with pytest.raises(ValueError, match="axis 'rho' is not swept"):
        jaxadv.plot_sweep_heatmaps(res, "rho", "prior", str(tmp_path / "x"))


def test_a_unit_preset_in_base_is_a_unit_sweep_with_its_values(tmp_path):
    """``[base] preset = "scenario2"`` was taken for a committee sweep and refused ("not a committee preset");
    it is the unit's sweep with the preset's parameters and run settings, the file's own keys first."""
    import json

    from jaxadv.app.cli import main
    from jaxadv.app.committee_sweep import is_committee_sweep
    from jaxadv.app.config import PRESETS
    from jaxadv.app.io import read_toml

    toml = tmp_path / "p.toml"
    toml.write_text('alpha_max = 1.0\nn_save = 2\n[base]\npreset = "scenario2"\nrho = 3.0\n[grid]\neps = [0.0, 0.5]\n')
    assert not is_committee_sweep(read_toml(str(toml), "sweep file"))
    cfg = load_sweep_config(str(toml))
    p = PRESETS["scenario2"]
    assert cfg.base == {"prior": p.prior, "rho": 3.0, "v1": p.v1, "v2": p.v2, "eta_w": p.eta_w, "eta_b": p.eta_b}
    assert (cfg.N, cfg.replicas, cfg.dt, cfg.alpha_max, cfg.n_save) == (p.N, p.replicas, p.dt, 1.0, 2)
    # through the command: the unit's sweep, with the preset's prior
    assert main(["sweep", str(toml), "--out", str(tmp_path / "o"), "--quiet", "--no-plots"]) == 0
    assert json.loads((tmp_path / "o" / "config.json").read_text())["config"]["base"]["prior"] == p.prior
    toml.write_text(toml.read_text().replace('"scenario2"', '"xor"'))
    assert is_committee_sweep(read_toml(str(toml), "sweep file"))
