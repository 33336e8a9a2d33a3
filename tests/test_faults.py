"""Fault injection (issue 14): every way a run could lose work, lie or crash, as a test.

Each test names the failure it guards against. Bad inputs go through ``jaxadv.app.cli.main`` and
must give one line ``jaxadv: error: ...`` naming the key or path, exit code 2, no traceback, and
no computation (they are refused before the ODE runs).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import interrupting

from jaxadv.app.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: the sizes of every command this file runs (the sizes of tests/test_signals.py): one compilation of each
#: command's programs serves every test
_TINY_MC = ["--set", "N=40", "--set", "replicas=2", "--set", "n_save=3", "--set", "alpha_max=0.6", "--quiet"]


def _cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(capsys, argv, *needles):
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2, (argv, rc, out, err)
    assert "Traceback" not in err and err.startswith("jaxadv: error: "), err
    assert err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)
    assert "ode:" not in out  # refused before any computation
    return err


def _toml(tmp_path, text, name="cfg.toml", raw=None):
    p = tmp_path / name
    p.write_bytes(raw if raw is not None else text.encode())
    return str(p)


# --- 1. the ODE never leaves its domain unannounced --------------------------------------------


def test_domain_status_flags_R_beyond_one_and_nan():
    import jax.numpy as jnp

    from jaxadv.ode.solve import STATUS_LEFT_DOMAIN, STATUS_OK, STATUS_STEP_FAILURE, domain_status

    R = jnp.array([[0.0, 0.5, 0.9], [0.0, 0.5, -1.1468], [0.0, jnp.nan, 0.1]])
    b = jnp.zeros((3, 3))
    assert domain_status(R, b).tolist() == [STATUS_OK, STATUS_LEFT_DOMAIN, STATUS_LEFT_DOMAIN]
    assert domain_status(R, b, jnp.array([True, False, False])).tolist()[0] == STATUS_STEP_FAILURE


@pytest.mark.slow
def test_unstable_fixed_step_falls_back_or_fails():
    """eta_w=20 gave R=-1.1468 and eta_w=eta_b=1000 gave R=14.996, silently."""
    from jaxadv import ModelParams, solve_ode

    ok = solve_ode(ModelParams(prior=0.5, rho=2.0, eta_w=20.0, eps=1.0), 50.0, 10)
    assert int(ok.status) == 0 and bool(ok.fallback) and np.all(np.abs(np.asarray(ok.R)) <= 1)
    bad = solve_ode(ModelParams(prior=0.5, rho=2.0, eta_w=1000.0, eta_b=1000.0, eps=1.0), 20.0, 4, max_steps=2000)
    assert int(bad.status) != 0 and bool(bad.failed)
    stable = solve_ode(ModelParams(prior=0.5, rho=2.0, eps=1.0), 10.0, 5)
    assert int(stable.status) == 0 and not bool(stable.fallback)


@pytest.mark.slow
def test_cli_refuses_an_untrustworthy_ode(tmp_path, capsys):
    rc, out, err = _cli(
        capsys,
        "run",
        "scenario1",
        "--no-mc",
        "--set",
        "eta_w=1000",
        "--set",
        "eta_b=1000",
        "--set",
        "alpha_max=20",
        "--set",
        "n_save=4",
        "--out",
        str(tmp_path / "o"),
    )
    assert rc == 2 and err.startswith("jaxadv: error: ode: ") and "Traceback" not in err
    assert not (tmp_path / "o" / "ode.csv").exists()


def test_entry_points_validate_params():
    from jaxadv import ModelParams, solve_fluctuations, solve_ode

    for fn in (lambda p: solve_ode(p, 1.0, 1), lambda p: solve_fluctuations(p, 100, 1.0, 1)):
        with pytest.raises(ValueError, match="eta_w"):
            fn(ModelParams(eta_w=float("nan")))
    with pytest.raises(ValueError, match="R0"):
        solve_ode(ModelParams(), 1.0, 1, R0=2.0)


# --- 2. an honest verdict ------------------------------------------------------------------------


def _cols(alpha, R, b, te, re, sem, n):
    mc = {"alpha": alpha, "n_finite": np.full(alpha.shape, n)}
    for q, x in (("R", R), ("b", b), ("test_error", te), ("robust_error", re)):
        mc[f"{q}_mean"], mc[f"{q}_sem"] = np.asarray(x, float), np.full(alpha.shape, sem)
    return mc


def _ode_cols(params, alpha_max, n_save, eps_test=1.0):
    from jaxadv import solve_ode
    from jaxadv.analysis.compare import ode_table

    return ode_table(solve_ode(params, alpha_max, n_save), params, eps_test)


def test_verdict_at_N_2_is_not_consistent():
    """N=2 printed 'largest raw deviation 15.05' and then 'consistent ... 0.00' after a 1/N allowance."""
    from jaxadv import ModelParams
    from jaxadv.analysis.verdict import honest_verdict

    p = ModelParams(prior=0.5, rho=2.0, eta_w=0.04, eta_b=0.2, eps=1.0)
    ode = _ode_cols(p, 20.0, 4)
    mc = _cols(ode["alpha"], ode["R"] - 0.3, ode["b"], ode["test_error"] + 0.05, ode["robust_error"], 0.01, 256)
    v = honest_verdict(mc, ode, params=p, N=2, n_save=4, dt=0.05, eps_test=1.0, mc_dtype=np.float32)
    assert v.status in ("not testable", "INCONSISTENT") and v.status != "consistent"
    assert "N=2" in v.text and v.raw_z_max == pytest.approx(30.0)


def test_verdict_uses_the_O1N_theory_and_rejects_a_real_gap():
    from jaxadv import ModelParams, solve_fluctuations
    from jaxadv.analysis.verdict import corrected_predictions, honest_verdict

    p = ModelParams(prior=0.5, rho=2.0, eta_w=0.04, eta_b=0.2, eps=1.0)
    ode = _ode_cols(p, 20.0, 4)
    fl = solve_fluctuations(p, 1000, 20.0, 4)
    pred = corrected_predictions(ode, fl, p, 1.0)
    sem = 1e-4
    mc = _cols(ode["alpha"], pred["R"], pred["b"], pred["test_error"], pred["robust_error"], sem, 128)
    kw = dict(params=p, N=1000, n_save=4, dt=0.05, eps_test=1.0, mc_dtype=np.float32)
    v = honest_verdict(mc, ode, **kw)
    assert v.status == "consistent" and v.z_max < 1e-6
    mc["R_mean"] = mc["R_mean"] + 10 * sem  # a 10-standard-error gap stays a gap: no allowance
    v = honest_verdict(mc, ode, **kw)
    assert v.status == "INCONSISTENT" and v.z_max == pytest.approx(10.0, rel=1e-3)


def test_python_verdict_is_the_cli_verdict(tmp_path, capsys):
    """The README's Python example prints the verdict `jaxadv run` writes: same tables, same text."""
    import jaxadv
    from jaxadv import ModelParams, honest_verdict, training_rule

    out = tmp_path / "run"
    _cli(
        capsys,
        "run",
        "scenario2",
        "--set",
        "N=200",
        "--set",
        "alpha_max=4",
        "--set",
        "n_save=4",
        "--set",
        "replicas=32",
        "--out",
        str(out),
        "--quiet",
    )
    t = jaxadv.load(str(out))
    cfg = t["config"]["config"]
    p = ModelParams(**{k: cfg[k] for k in ModelParams._fields})
    eps_test = t["config"]["resolved"]["eps_test"]
    v = honest_verdict(t["mc"], t["ode"], params=p, N=cfg["N"], eps_test=eps_test)
    assert v.status == t["config"]["verdict_status"] == "consistent"
    assert v.text == t["config"]["verdict"]
    # a rule the theory does not cover is "not testable" from Python too, as in the CLI
    v = honest_verdict(
        t["mc"], t["ode"], params=p, N=cfg["N"], eps_test=eps_test, rule=training_rule(eps_dist="uniform")
    )
    assert v.status == "not testable" and "theory unavailable" in v.text


def test_frozen_student_is_not_millions_of_sigmas():
    """eps=10, prior=0.7 reported 6749381 standard errors for differences of 1e-15 (sem 1e-23)."""
    from jaxadv import ModelParams
    from jaxadv.analysis.verdict import honest_verdict

    p = ModelParams(prior=0.7, rho=2.0, eta_w=0.04, eta_b=0.2, eps=10.0)
    ode = _ode_cols(p, 20.0, 4, eps_test=10.0)
    mc = _cols(
        ode["alpha"], ode["R"] + 1e-15, ode["b"] + 1e-15, ode["test_error"] + 1e-15, ode["robust_error"], 1e-23, 64
    )
    v = honest_verdict(mc, ode, params=p, N=1000, n_save=4, dt=0.05, eps_test=10.0, mc_dtype=np.float32)
    assert v.status == "not testable" and "do not spread" in v.text
    assert v.raw_z_max < 1.0


def test_verdict_without_theory_and_with_all_replicas_diverged():
    from jaxadv import ModelParams
    from jaxadv.analysis.verdict import honest_verdict

    p = ModelParams()
    ode = _ode_cols(p, 20.0, 4)
    mc = _cols(ode["alpha"], ode["R"], ode["b"], ode["test_error"], ode["robust_error"], 0.01, 16)
    kw = dict(params=p, N=1000, n_save=4, dt=0.05, eps_test=1.0, mc_dtype=np.float32)
    v = honest_verdict(mc, ode, theory=False, why_no_theory="theory unavailable for this training rule", **kw)
    assert v.status == "not testable" and "theory unavailable" in v.text
    mc = _cols(ode["alpha"], *(np.full(5, np.nan),) * 4, np.nan, 16)
    mc["n_finite"] = np.array([16, 0, 0, 0, 0])
    v = honest_verdict(mc, ode, **kw)
    assert v.status == "undetermined" and "nan" not in v.text and "16 replicas diverged" in v.text


# --- 3. nothing lost -----------------------------------------------------------------------------


def test_interrupt_saves_a_checkpoint_and_resume_is_bit_identical(tmp_path, monkeypatch):
    """Ctrl-C wrote no checkpoint (the first came after 60 s) yet promised a resume."""
    import jax

    from jaxadv import ModelParams
    from jaxadv.app import checkpoint as ckm
    from jaxadv.mc import driver

    p = ModelParams(prior=0.5, rho=2.0, eps=1.0)
    kw = dict(N=50, alpha_max=2.0, n_save=6, replicas=3)
    ref = ckm.simulate_resumable(jax.random.key(1), p, **kw)
    ck = str(tmp_path / "ck.npz")
    real = driver.dispatch
    for kill_at in (0, 4):  # before the first interval ends, and later (a random point each)
        monkeypatch.setattr(driver, "dispatch", interrupting(real, kill_at))
        with pytest.raises(ckm.Interrupted) as e:
            ckm.simulate_resumable(jax.random.key(1), p, checkpoint=ck, checkpoint_every=1e9, **kw)
        assert e.value.done == kill_at and (e.value.checkpoint is None) == (kill_at == 0)
        monkeypatch.setattr(driver, "dispatch", real)
    stats = {}
    res = ckm.simulate_resumable(jax.random.key(1), p, checkpoint=ck, stats=stats, **kw)
    assert stats["resumed_from"] == 4 and stats["steps_this_session"] < 6 * 50 * 2.0 / 6 * 6
    np.testing.assert_array_equal(res.R, ref.R)
    np.testing.assert_array_equal(res.b, ref.b)
    assert not os.path.exists(ck)


def test_a_signal_inside_the_dispatch_waits_for_live_states(tmp_path, monkeypatch):
    """SIGTERM arriving after the old states were donated to an interval (inside the dispatch) left
    no live states to save: the checkpoint write failed and the run ended with a traceback."""
    import signal

    import jax

    from jaxadv import ModelParams
    from jaxadv.app import checkpoint as ckm
    from jaxadv.mc import driver

    p = ModelParams(prior=0.5, rho=2.0, eps=1.0)
    kw = dict(N=50, alpha_max=2.0, n_save=6, replicas=3)
    ref = ckm.simulate_resumable(jax.random.key(1), p, **kw)
    ck = str(tmp_path / "ck.npz")
    real = driver.dispatch

    def signalled(plan, states, k):
        out = real(plan, states, k)
        if k == 2:  # the old states are donated by now
            assert all(x.is_deleted() for x in jax.tree.leaves(states))
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(driver, "dispatch", signalled)
    with pytest.raises(ckm.Interrupted) as e:
        ckm.simulate_resumable(jax.random.key(1), p, checkpoint=ck, checkpoint_every=1e9, **kw)
    assert e.value.done == 3 and e.value.checkpoint == ck  # the interval in flight is finished and kept
    monkeypatch.setattr(driver, "dispatch", real)
    stats = {}
    res = ckm.simulate_resumable(jax.random.key(1), p, checkpoint=ck, stats=stats, **kw)
    assert stats["resumed_from"] == 3
    np.testing.assert_array_equal(res.R, ref.R)
    np.testing.assert_array_equal(res.b, ref.b)


def test_sweep_with_mc_chunks_by_grid_point():
    from jaxadv import make_sweep_config
    from jaxadv.app.sweep import chunk_size

    cfg = make_sweep_config({"eps": [0.0, 0.5, 1.0, 1.5]}, alpha_max=1.0, n_save=2, mc=True, N=20, replicas=2)
    assert chunk_size(cfg, 4) == 1  # on any device count: the chunk files do not depend on it


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint(tmp_path):
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": ROOT, "JAXADV_HOST_DEVICES": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxadv.app.cli",
            "run",
            "scenario1",
            "--set",
            "N=200",
            "--set",
            "alpha_max=400",
            "--set",
            "replicas=8",
            "--set",
            "n_save=400",
            "--quiet",
            "--out",
            str(out),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    ck = out / "mc_checkpoint.npz"
    t0 = time.time()
    while not ck.exists() and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.terminate()
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "save intervals saved in" in err and ck.exists()
    assert not (out / ".jaxadv.lock").exists()


# --- 4. protected outputs ------------------------------------------------------------------------


def test_two_runs_into_one_folder(tmp_path):
    from jaxadv.app.outputs import claim_output

    ident = {"config": {"name": "a"}}
    lock = claim_output(str(tmp_path), ident)
    with pytest.raises(ValueError, match=f"in use by another run \\(pid {os.getpid()}"):
        claim_output(str(tmp_path), ident)
    lock.release()
    claim_output(str(tmp_path), ident).release()  # the same run may come back (resume)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    import socket

    from jaxadv.app.outputs import LOCK_NAME, claim_output

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    claim_output(str(tmp_path), {"x": 1}).release()


def test_another_runs_results_are_refused_unless_overwrite(tmp_path):
    """A --no-mc run left the earlier run's mc.csv beside a config.json saying mc=false."""
    from jaxadv.app.outputs import claim_output

    claim_output(str(tmp_path), {"config": {"name": "a"}, "mc": True}).release()
    (tmp_path / "mc.csv").write_text("alpha\n0\n")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--overwrite"):
        claim_output(str(tmp_path), {"config": {"name": "a"}, "mc": False})
    claim_output(str(tmp_path), {"config": {"name": "a"}, "mc": False}, overwrite=True).release()
    assert not (tmp_path / "mc.csv").exists() and not (tmp_path / "config.json").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "ode.csv").write_text("alpha\n")  # results without an owner: refused as well
    with pytest.raises(ValueError, match="unknown run"):
        claim_output(str(other), {"config": {"name": "b"}})


def test_cli_second_config_into_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    rc, _, _ = _cli(
        capsys, "run", "scenario1", "--no-mc", "--set", "alpha_max=2", "--set", "n_save=2", "--out", str(out)
    )
    assert rc == 0 and oct(stat.S_IMODE(os.stat(out / "ode.csv").st_mode)) == oct(0o666 & ~_umask())
    json.loads((out / "config.json").read_text())
    _one_line_error(
        capsys,
        ["run", "scenario1", "--no-mc", "--set", "alpha_max=3", "--set", "n_save=2", "--out", str(out)],
        "--overwrite",
        str(out),
    )


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_files_follow_the_umask(tmp_path):
    from jaxadv.app.io import write_csv, write_npz

    old = os.umask(0o022)
    try:
        write_csv(tmp_path / "a.csv", {"x": [1.0]})
        write_npz(tmp_path / "a.npz", x=np.zeros(1))
    finally:
        os.umask(old)
    for n in ("a.csv", "a.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / n).st_mode) == 0o644


# --- 5. one-line errors, before any computation --------------------------------------------------


def test_bad_output_paths(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    sweep_toml = _toml(tmp_path, "alpha_max = 1.0\nn_save = 2\n[grid]\neps = [0.0, 1.0]\n", "sw.toml")
    for cmd in (
        ["run", "scenario1", "--no-mc"],
        ["compare-defences", "--no-mc"],
        ["sweep", sweep_toml],
        ["verify", "scenario1"],
        ["mnist"],
    ):
        _one_line_error(capsys, cmd + ["--out", str(f)], str(f), "existing file")
        _one_line_error(capsys, cmd + ["--out", str(f / "sub")], "under a file")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _one_line_error(capsys, ["run", "scenario1", "--no-mc", "--out", str(ro / "x")], "permission denied")
            _one_line_error(capsys, ["run", "scenario1", "--no-mc", "--out", str(ro)], "not writable")
        finally:
            ro.chmod(0o700)


def test_read_only_folder_even_as_root(tmp_path, capsys, monkeypatch):
    """What a read-only folder does to a non-root user, simulated so that the test also runs as root:
    the folder cannot be created under it, or exists and is not writable."""
    ro = str(tmp_path / "ro")
    os.mkdir(ro)
    real_makedirs, real_access = os.makedirs, os.access

    def makedirs(path, *a, **k):
        if os.path.abspath(path).startswith(ro + os.sep) and not os.path.isdir(path):
            raise PermissionError(13, "Permission denied", path)
        return real_makedirs(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", makedirs)
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if os.path.abspath(p) == ro else real_access(p, m, **k))
    for cmd in (["run", "scenario1", "--no-mc"], ["compare-defences", "--no-mc"], ["verify", "scenario1"]):
        _one_line_error(capsys, cmd + ["--out", os.path.join(ro, "x")], "permission denied")
        _one_line_error(capsys, cmd + ["--out", ro], "not writable")
    assert os.listdir(ro) == []


def test_disk_full_keeps_the_earlier_file_and_names_the_path(tmp_path, capsys, monkeypatch):
    import errno

    from jaxadv.app.io import write_csv

    path = tmp_path / "a.csv"
    write_csv(path, {"x": np.arange(3.0)})
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="a.csv.*No space left on device"):
        write_csv(path, {"x": np.arange(5.0)})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["a.csv"]  # no temporary file left
    rc, out, err = _cli(
        capsys,
        "run",
        "scenario1",
        "--no-mc",
        "--set",
        "alpha_max=1",
        "--set",
        "n_save=1",
        "--out",
        str(tmp_path / "run"),
    )
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("jaxadv: error: ") and "No space left on device" in err and str(tmp_path / "run") in err


def test_cli_run_whose_replicas_all_diverge(tmp_path, capsys, monkeypatch):
    """Every replica non-finite after the start: a clean summary, valid JSON, no warnings, exit 3."""
    from jaxadv.mc import driver

    real = driver.result

    def diverging(*a, **k):
        mc = real(*a, **k)
        bad = np.zeros_like(mc.finite)
        bad[:, 0] = True
        nan = np.where(bad, mc.R, np.nan)
        return mc._replace(R=nan, b=np.where(bad, mc.b, np.nan), norm=np.where(bad, mc.norm, np.nan), finite=bad)

    monkeypatch.setattr(driver, "result", diverging)  # the unit's Monte Carlo, as the driver returns it
    out = tmp_path / "run"
    rc, stdout, err = _cli(
        capsys,
        "run",
        "scenario1",
        *_TINY_MC,
        "--out",
        str(out),
    )
    assert rc == 3 and err.count("\n") == 1 and "all 2 replicas diverged" in err, err
    assert "Traceback" not in err and "Warning" not in err + stdout and "nan" not in stdout.lower(), stdout
    info = json.loads((out / "config.json").read_text())  # strict JSON: no NaN
    assert info["verdict_status"] == "undetermined" and info["replicas_diverged"] == 2


def test_compare_defences_whose_replicas_all_diverge(tmp_path, capsys, monkeypatch):
    """Every defence's replicas non-finite after the start: its rows are "undetermined", the files are written,
    and the command ends with one line and exit 3, as ``run`` does (it exited 0)."""
    from jaxadv.analysis import defences

    real = defences.simulate

    def diverging(*a, **k):
        mc = real(*a, **k)
        bad = np.zeros_like(mc.finite)
        bad[:, 0] = True
        return mc._replace(R=np.where(bad, mc.R, np.nan), b=np.where(bad, mc.b, np.nan), finite=bad)

    monkeypatch.setattr(defences, "simulate", diverging)
    out = tmp_path / "d"
    rc, stdout, err = _cli(capsys, "compare-defences", *_TINY_MC, "--out", str(out))
    assert rc == 3 and err.count("\n") == 1 and "every defence's replicas diverged" in err, err
    info = json.loads((out / "config.json").read_text())
    assert {d["verdict"] for d in info["defences"]} == {"undetermined"} and (out / "defences.csv").exists()


PROBE_VALUES = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e30",
    "-1e-300",
    "abc",
    "",
    "1.5",
    "true",
    "[1,2]",
    "1,2",
    "0x10",
    "1_000",
]


def test_every_key_refuses_bad_values_naming_itself():
    """Every configuration key against 15 hostile values: each is either refused with a ValueError
    that names the key, or accepted as a finite value of the key's type; nothing else escapes."""
    import dataclasses
    import math

    from jaxadv.app.config import load_config

    keys = [f.name for f in dataclasses.fields(load_config("scenario1")) if f.name != "rule_extra"]
    refused, accepted, escaped = 0, 0, []
    for key in keys:
        for value in PROBE_VALUES:
            try:
                cfg = load_config("scenario1", [f"{key}={value}"])
            except ValueError as e:
                refused += 1
                if key not in str(e):
                    escaped.append((key, value, f"message without the key: {e}"))
                continue
            except Exception as e:  # noqa: BLE001 -- the point of the probe
                escaped.append((key, value, f"{type(e).__name__}: {e}"))
                continue
            accepted += 1
            got = getattr(cfg, key)
            if isinstance(got, float) and not math.isfinite(got):
                escaped.append((key, value, f"accepted a non-finite {got}"))
    assert not escaped, escaped
    assert refused > 400  # (every probe is refused, accepted or escaped: with none escaped the rest add up)


SWEEP_PROBES = ["-1", "0", "nan", "inf", "1e308", "9223372036854775808", '"abc"', "true", "[]", "{}"]
_UNIT_SWEEP = {"alpha_max": 1.0, "n_save": 2, "mc": True, "N": 50, "replicas": 4}
_COMMITTEE_SWEEP = {"alpha_max": 0.5, "n_save": 2, "dt": 0.25, "mc": True, "N": 40, "replicas": 4}
_COMMITTEE_BASE = {
    "preset": "xor",
    "K": 2,
    "R0": [[0.4, 0.1], [-0.3, 0.2]],
    "Q0": [[1.0, -0.1], [-0.1, 1.0]],
    "b0": [0.1, 0.0],
}


@pytest.mark.parametrize("student", ["unit", "committee"])
def test_every_sweep_key_refuses_bad_values_naming_itself(student):
    """Every top-level key of a sweep, a model and a rule key of ``[base]`` and every swept axis against 10
    hostile values: each is refused with a one-line ValueError naming the key, or accepted as a finite value;
    nothing else escapes. (Before: a list as ``loss`` or ``preset``, ``points_per_decade = inf``, a scalar
    ``eps_values`` and ``linspace`` with 2**63 points were tracebacks; ``alpha_max = 1e308``, ``dt = 1e-300``,
    ``N``/``replicas`` of 2**63 in a committee sweep, a 1e5-point Monte Carlo grid, NaN and infinite rule
    parameters and ``sampler = 1`` were accepted.)"""
    import dataclasses
    import math
    import tomllib

    from jaxadv import CommitteeSweepConfig, SweepConfig, make_committee_sweep_config, make_sweep_config
    from jaxadv.app.committee_sweep import COMMITTEE_SWEEP_AXES
    from jaxadv.app.sweep import sweep_axes

    if student == "unit":
        make, base0, options = make_sweep_config, {"rho": 2.0}, _UNIT_SWEEP
        top = [f.name for f in dataclasses.fields(SweepConfig) if f.name not in ("base", "grid")]
        base_keys, axes = ["rho", "eps_test", "eps_min", "attack", "eps_values"], [*sweep_axes()]
    else:
        make, base0, options = make_committee_sweep_config, _COMMITTEE_BASE, _COMMITTEE_SWEEP
        top = [f.name for f in dataclasses.fields(CommitteeSweepConfig) if f.name not in ("model", "grid", "eps_test")]
        base_keys, axes = ["preset", "K", "var", "eps_test", "pgd_steps"], [*COMMITTEE_SWEEP_AXES]
    lit = lambda v: tomllib.loads(f"x = {v}")["x"]  # noqa: E731
    eps = {"eps": [0.0, 0.5]}
    cases = [(k, v, eps, base0, {**options, k: lit(v)}) for k in top for v in SWEEP_PROBES]
    cases += [(k, v, eps, {**base0, k: lit(v)}, options) for k in base_keys for v in SWEEP_PROBES]
    cases += [(k, v, {k: [lit(v)]}, base0, options) for k in axes for v in SWEEP_PROBES if v not in ("[]", "{}")]
    cases += [(k, v, {k: lit(v)}, base0, options) for k in axes for v in ("[]", "{linspace = [0, 1, 100000]}")]
    refused, accepted, escaped = 0, 0, []
    for key, value, grid, base, opts in cases:
        try:
            cfg = make({k: v for k, v in grid.items()}, dict(base), **opts)
        except ValueError as e:
            refused += 1
            if key not in str(e) or "\n" in str(e):
                escaped.append((key, value, f"message: {e}"))
            continue
        except Exception as e:  # noqa: BLE001 -- the point of the probe
            escaped.append((key, value, f"{type(e).__name__}: {e}"))
            continue
        accepted += 1
        got = getattr(cfg, key, None)
        if isinstance(got, float) and not math.isfinite(got):
            escaped.append((key, value, f"accepted a non-finite {got}"))
    assert not escaped, escaped
    assert refused > {"unit": 250, "committee": 200}[student], (refused, accepted)


def test_hostile_sweep_values_are_one_line_refusals_through_the_command(tmp_path, capsys):
    unit = "alpha_max = 1.0\nn_save = 2\nseed = 9223372036854775808\n[grid]\neps = [0.0, 0.5]\n"
    _one_line_error(capsys, ["sweep", _toml(tmp_path, unit, "u.toml"), "--out", str(tmp_path / "u")], "seed=")
    committee = "mc = true\nN = 40\n[base]\npreset = 'xor'\n[grid]\nrho = {linspace = [1, 2, 100000]}\n"
    path = _toml(tmp_path, committee, "c.toml")
    _one_line_error(capsys, ["sweep", path, "--out", str(tmp_path / "c")], "rho: 100000", "split the grid")


@pytest.mark.parametrize("key", ["N", "n_save", "replicas", "seed"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_toml_non_finite_integers(tmp_path, capsys, key, value):
    _one_line_error(capsys, ["run", _toml(tmp_path, f"{key} = {value}\n"), "--out", str(tmp_path / "o")], f"{key}=")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--set", "seed=1e30"], "seed"),
        (["--set", "N=1e9"], "N=1000000000"),
        (["--set", "eps_min=nan"], "eps_min"),
        (["--set", "eps_max=inf"], "eps_max"),
        (["--set", "eps=1", "--set", "eps=2"], "given twice"),
        (["--set", "name=../../escape_dir"], "name="),
        (["--set", "alpha_max=1e30"], "alpha_max=1e+30 needs 2e+31 RK4 steps"),  # was an OverflowError traceback
        (["--set", "save=log", "--set", "points_per_decade=1e30"], "points_per_decade="),  # was "Maximum allowed size"
        (["--set", "alpha_max=1e7"], "step counter"),  # 1e10 Monte Carlo steps: the 32-bit counter would wrap
        (["--set", "eps_min=-1"], "eps_min=-1.0"),  # checked although the fixed law does not read it
        (["--set", "eps_values=1,nan"], "eps_values="),
    ],
)
def test_bad_keys(tmp_path, capsys, argv, needle):
    _one_line_error(capsys, ["run", "scenario1", *argv, "--out", str(tmp_path / "o")], needle)


def test_runs_beyond_the_step_counter_are_refused_by_every_plan():
    """The 32-bit step counter is checked where the schedule is made (save_schedule), so the Python API of the
    single-layer and the committee Monte Carlo refuse too, not only the CLI."""
    import jax

    import jaxadv as ja
    from jaxadv.committee import CommitteeParams, CommitteeSpec, simulate_committee, xor

    with pytest.raises(ValueError, match="step counter"):
        ja.simulate(0, ja.ModelParams(), N=1000, alpha_max=1e7, n_save=10, replicas=2)
    with pytest.raises(ValueError, match="step counter"):
        simulate_committee(
            jax.random.key(0),
            xor(),
            CommitteeParams(),
            CommitteeSpec(K=2),
            N=1000,
            alpha_max=1e7,
            n_save=10,
            replicas=2,
        )


def test_memory_estimate_is_in_the_message(tmp_path, capsys):
    err = _one_line_error(capsys, ["run", "scenario1", "--set", "N=1e9", "--out", str(tmp_path / "o")], "GiB")
    assert "replicas=128" in err


def test_toml_name_cannot_escape_results(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["run", _toml(tmp_path, 'name = "../../escape_dir"\nmc = false\n')], "name=")
    assert not (tmp_path.parent.parent / "escape_dir").exists()


def test_non_utf8_toml_names_the_file(tmp_path, capsys):
    path = _toml(tmp_path, "", raw=b'N = 10\nname = "\xff\xfe"\n')
    _one_line_error(capsys, ["run", path], path, "UTF-8")


def test_huge_sweep_grid_is_refused_with_an_estimate(tmp_path, capsys):
    # 2200**3 = 1.06e10 grid points from three axes (6600 values to parse and check, not 2e5)
    vals = ", ".join("0.5" for _ in range(2200))
    grid = f"eps = [{vals}]\nprior = [{vals}]\nrho = [{vals}]\n"
    path = _toml(tmp_path, f"alpha_max = 1.0\nn_save = 2\n[grid]\n{grid}", "big.toml")
    _one_line_error(capsys, ["sweep", path, "--out", str(tmp_path / "o")], "GiB", "grid points")


# --- 6. valid JSON, clean summaries --------------------------------------------------------------


def test_json_has_null_for_missing_numbers(tmp_path):
    from jaxadv.app.io import write_json

    write_json(tmp_path / "c.json", {"a": float("nan"), "b": np.float32("inf"), "c": np.array([1.0, np.nan])})
    text = (tmp_path / "c.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": None, "c": [1.0, None]}


def test_summary_of_all_diverged_replicas_is_quiet():
    import warnings

    from jaxadv import ModelParams
    from jaxadv.analysis.compare import mc_summary
    from jaxadv.mc.driver import MCResult

    nan = np.full((4, 3), np.nan)
    fin = np.zeros((4, 3), bool)
    fin[:, 0] = True
    mc = MCResult(*(x for x in _mc_fields(nan, fin)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cols = mc_summary(mc, ModelParams(), 1.0)
    assert cols["n_finite"].tolist() == [4, 0, 0]


def _mc_fields(nan, fin):
    from jaxadv.mc.driver import MCResult

    vals = {"alpha": np.arange(3.0), "R": nan, "b": nan, "norm": nan, "finite": fin}
    return [vals.get(f, nan) for f in MCResult._fields]


# --- 7. benchmarks never overwrite committed results ---------------------------------------------


def test_benchmarks_default_to_a_scratch_folder():
    sys.path.insert(0, ROOT)
    try:
        from benchmarks import common
    finally:
        sys.path.remove(ROOT)
    assert common.set_out_dir(None, False) == common.SCRATCH_DIR != common.RESULTS_DIR
    assert common.set_out_dir(None, True) == common.RESULTS_DIR
    common.set_out_dir(None, False)
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--commit", "--list"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and "--commit" in r.stderr


def test_csv_writer_refuses_columns_of_unequal_length(tmp_path):
    """zip() used to drop the tail of the longer columns silently."""
    from jaxadv.app.io import write_csv

    with pytest.raises(ValueError, match="different lengths.*'a': 3.*'b': 2"):
        write_csv(tmp_path / "t.csv", {"a": np.arange(3.0), "b": np.arange(2.0)})
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "bit flipped"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_overwrite_discards_it(tmp_path, capsys, damage):
    """A truncated, empty or bit-flipped ``mc_checkpoint.npz`` gave a BadZipFile/EOFError traceback on the
    rerun. Now: one line naming the file, nothing touched; ``--overwrite`` discards it and the run ends."""
    out = tmp_path / "o"
    argv = ["run", "scenario1", *_TINY_MC, "--no-mc", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    from jaxadv.app.io import write_npz

    ck = out / "mc_checkpoint.npz"  # as an interrupted Monte Carlo of this configuration leaves it
    write_npz(ck, fingerprint=np.asarray("x"), k=np.asarray(1), state_0=np.arange(4096.0))
    data = bytearray(ck.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data[len(data) // 3] ^= 0x10
    ck.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    err = _one_line_error(capsys, argv, f"the checkpoint {str(ck)!r} cannot be read", "--overwrite")
    assert "state_0.npy is damaged" in err if damage == "bit flipped" else "not a complete .npz file" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".jaxadv.lock"} == before
    assert not (out / ".jaxadv.lock").exists()
    assert main([*argv, "--overwrite"]) == 0
    assert not ck.exists() and (out / "ode.csv").read_bytes() == before["ode.csv"]


def test_the_python_api_names_a_damaged_checkpoint(tmp_path):
    import jax

    from jaxadv import ModelParams
    from jaxadv.app import checkpoint as ckm

    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match="the checkpoint .*ck.npz' cannot be read: not a complete .npz file"):
        ckm.simulate_resumable(
            jax.random.key(1), ModelParams(eps=0.5), N=20, alpha_max=0.5, n_save=1, replicas=2, checkpoint=str(ck)
        )


def test_a_damaged_sweep_chunk_is_computed_again_with_a_warning(tmp_path):
    """A truncated chunk file gave a BadZipFile traceback; now it is recomputed (the same bits) with a warning."""
    from jaxadv import make_sweep_config, sweep

    cfg = make_sweep_config({"eps": [0.1, 0.2, 0.3]}, alpha_max=2.0, n_save=2, dt=0.1, chunk=2)
    out = tmp_path / "s"
    first = sweep(cfg, str(out))
    chunk = out / "chunks" / "chunk_00000.npz"
    chunk.write_bytes(chunk.read_bytes()[:100])
    logged = []
    again = sweep(cfg, str(out), log=logged.append)
    assert any("chunk_00000.npz" in m and "computing the chunk again" in m for m in logged), logged
    assert "resuming: 1 of 2 chunks" in " ".join(logged)
    for k in ("R", "b", "robust_error"):
        np.testing.assert_array_equal(getattr(first, k), getattr(again, k))
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        chunk.write_bytes(b"")
        sweep(cfg, str(out))


def test_overwrite_leaves_no_file_of_another_command(tmp_path):
    """``transfer --overwrite`` into a committee's folder kept the committee's ``units.png`` (it was not in the
    list ``--overwrite`` removes). Every command's files are now registered (each command's output test checks
    the files it wrote, ``assert_every_file_registered``) and all of them go, whichever command wrote them;
    a file of the user's stays."""
    from jaxadv.app.outputs import OWNER_NAME, RESULT_FILES, claim_output

    folder = tmp_path / "c"
    claim_output(str(folder), {"config": {"name": "committee"}}, command="committee").release()
    for name in RESULT_FILES + ("mc_checkpoint_1.npz", "notes.txt"):
        (folder / name).write_bytes(b"x")
    for name in ("units.png", "eps.csv", "transfer.png", "certified.png", "verify.csv"):
        assert name in RESULT_FILES
    claim_output(str(folder), {"config": {"name": "transfer"}}, overwrite=True, command="transfer").release()
    assert sorted(os.listdir(folder)) == sorted([OWNER_NAME, "notes.txt"])


def test_no_verdict_from_nothing(tmp_path, capsys):
    """``committee --set eps=1e308``: every replica's Q, R, b NaN after the first step, yet "consistent 0.00" (the
    fixed v, still finite, was all the verdict saw); ``v=0,0`` (a student that never learns) "consistent";
    ``verify --N-list ''`` and ``30,30`` exit 0 with NaN slopes. Now: undetermined and exit 3 (every committee
    diverged, as `run` for the unit), or a one-line refusal."""
    out = tmp_path / "huge"
    assert main(["committee", "committee", "--set", "eps=1e308", *_TINY_MC, "--out", str(out)]) == 3  # as `run` does
    assert "all 2 committees diverged; results written to" in capsys.readouterr().err
    info = json.loads((out / "config.json").read_text())  # the files are written all the same
    assert info["verdict_status"] == "undetermined" and "all 2 replicas diverged" in info["verdict"]
    assert info["replicas_finite"] == 0
    from jaxadv.app.io import read_csv

    mc = read_csv(out / "mc.csv")
    assert mc["n_finite"].tolist() == [2, 0, 0, 0] and np.isnan(mc["v_1_mean"][1:]).all()  # diverged after the start
    capsys.readouterr()
    _one_line_error(capsys, ["committee", "committee", "--set", "v=0,0", "--out", str(tmp_path / "v")], "v=[0.0, 0.0]")
    for ladder, needle in (("", "at least 2 values of N"), ("30,30", "repeats an N"), ("30", "at least 2")):
        _one_line_error(capsys, ["verify", "scenario1", "--N-list", ladder, "--out", str(tmp_path / "w")], needle)
    _one_line_error(capsys, ["verify", "scenario1", "--full-N-list", "20,20", "--out", str(tmp_path / "w")], "20,20")


_TINY_UNIT = ["--set", "N=40", "--set", "alpha_max=0.6", "--set", "n_save=3", "--no-mc"]
_TINY_OTHER = ["--set", "N=40", "--set", "replicas=2", "--set", "n_save=3", "--set", "alpha_max=0.6", "--no-mc"]
_FULL_DISK_AT_A_FIGURE = {
    "run": ["run", "scenario1", *_TINY_UNIT],
    "committee": ["committee", "committee", *_TINY_OTHER],
    "transfer": ["transfer", "transfer", *_TINY_OTHER, "--set", "n_test=20"],
    "compare-defences": ["compare-defences", *_TINY_UNIT, "--set", "replicas=2"],
    "verify": [
        "verify",
        "scenario1",
        "--N-list",
        "20,40",
        "--full-N-list",
        "",
        "--replicas",
        "20",
        "--alpha-max",
        "0.5",
        "--n-save",
        "2",
    ],
    "certified": pytest.param(
        ["certified", *_TINY_OTHER, "--pgd-samples", "50", "--pgd-test-steps", "2"], marks=pytest.mark.slow
    ),
}


@pytest.mark.parametrize("argv", _FULL_DISK_AT_A_FIGURE.values(), ids=_FULL_DISK_AT_A_FIGURE.keys())
def test_a_full_disk_at_a_figure_keeps_config_json_and_releases_the_lock(tmp_path, capsys, monkeypatch, argv):
    """A write error at a figure left no ``config.json``. Every command now writes it before its figures:
    the failure is one line naming the file, the lock is released, the tables and ``config.json`` are there."""
    import errno

    from jaxadv.app import io

    real = io.atomic_write_bytes

    def full_for_figures(path, data):
        if str(path).endswith(".png"):
            raise OSError(errno.ENOSPC, f"{str(path)!r} not written (No space left on device)")
        real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", full_for_figures)
    out = tmp_path / "o"
    rc, _, err = _cli(capsys, *argv, "--out", str(out), "--quiet")
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert ".png" in err and "No space left on device" in err, err
    assert not (out / ".jaxadv.lock").exists()
    info = json.loads((out / "config.json").read_text())
    assert info and not [f for f in os.listdir(out) if f.endswith(".png")]


_FULL_DISK_AT_A_CHECKPOINT = {
    "committee": (["committee", "committee", *_TINY_MC], "mc_checkpoint.npz"),
    "transfer": (["transfer", "transfer", *_TINY_MC, "--set", "n_test=20"], "mc_checkpoint_0.npz"),
    "certified": (
        ["certified", *_TINY_MC, "--pgd-samples", "50", "--mc-samples", "20", "--pgd-test-steps", "2"],
        "mc_checkpoint_standard.npz",
    ),
}


@pytest.mark.parametrize("argv,name", _FULL_DISK_AT_A_CHECKPOINT.values(), ids=_FULL_DISK_AT_A_CHECKPOINT.keys())
def test_a_full_disk_at_a_checkpoint_ends_in_one_line_and_keeps_the_earlier_one(
    tmp_path, capsys, monkeypatch, argv, name
):
    """The disk fills between two checkpoints of the Monte Carlo (the first, after one save interval, is written;
    the second, the finished run, is not): one line naming the checkpoint, exit 2, the lock released, the first
    checkpoint whole and no temporary file left. (``verify`` keeps no checkpoint: its ladder is short runs.)"""
    import errno

    from jaxadv.app import io

    real, writes = io.atomic_write_bytes, []

    def full_after_the_first_checkpoint(path, data):
        if "mc_checkpoint" in os.path.basename(str(path)):
            writes.append(path)
            if len(writes) > 1:
                with monkeypatch.context() as m:
                    m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
                    return real(path, data)
        return real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", full_after_the_first_checkpoint)
    out = tmp_path / "o"
    rc, _, err = _cli(capsys, *argv, "--out", str(out))
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert str(out / name) in err and "No space left" in err, err
    assert not (out / ".jaxadv.lock").exists() and not [f for f in os.listdir(out) if f.startswith(".tmp")]
    with np.load(out / name) as z:
        assert int(z["k"]) == 1  # the first checkpoint, whole
