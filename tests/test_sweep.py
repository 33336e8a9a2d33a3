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


def test_sweep_with_monte_carlo(tmp_path):
    jax.config.update("jax_enable_x64", True)
    # static ODE settings as in the tests above (20 RK4 steps per save, chunk 4): no new compilation
    cfg = make_sweep_config(
        {"eps": [0.0, 0.5, 1.0, 1.5]}, alpha_max=3.0, n_save=3, dt=0.05, chunk=4, mc=True, N=100, replicas=8, seed=3
    )
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
