"""Ctrl-C and SIGTERM at every phase of ``jaxadv transfer`` and ``jaxadv certified`` (issue 25, item 7).

During the Monte Carlo, after it (a later ODE, the measures) and during the figures, an interrupt ends the
command with exit 130 and one line saying what was saved; a finished Monte Carlo stays in its checkpoint until
its results are on disk, and the rerun resumes from it to the same bytes as an uninterrupted run. In process
the interrupt is raised where the signal would land (the CLI turns SIGTERM into the same ``KeyboardInterrupt``
as Ctrl-C); the slow tests send real signals to the console command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import default_sigint, interrupting

from jaxadv.app.cli import main
from jaxadv.mc import driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = ["--set", "N=40", "--set", "replicas=2", "--set", "alpha_max=0.6", "--set", "n_save=3", "--quiet"]
ARGV = {
    "transfer": ["transfer", "transfer", *_TINY, "--set", "n_test=20", "--set", "eps_t=0,1"],
    "certified": ["certified", *_TINY, "--pgd-samples", "50", "--mc-samples", "20", "--pgd-test-steps", "2"],
}
#: the checkpoint of the first Monte Carlo of each command
FIRST = {"transfer": "mc_checkpoint_0.npz", "certified": "mc_checkpoint_standard.npz"}
#: ``(module, function, call)``: where an interrupt after the first Monte Carlo lands (transfer: the ODE of the
#: second radius; certified: the measures of the first replica)
AFTER_MC = {
    "transfer": ("jaxadv.ode.pair", "solve_pair_ode", 1),
    "certified": ("jaxadv.app.certified", "state_errors", 1),
}
FIGURE = {"transfer": ("jaxadv.app.figures", "plot_transfer"), "certified": ("jaxadv.app.certified", "plot_certified")}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """``whole(command)``: the folder of the command run once without an interrupt (run at the first call)."""
    out = {}

    def get(cmd):
        if cmd not in out:
            out[cmd] = tmp_path_factory.mktemp(cmd)
            assert main([*ARGV[cmd], "--out", str(out[cmd]), "--overwrite"]) == 0
        return out[cmd]

    return get


def _csvs(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder)) if f.endswith(".csv")}


@pytest.mark.parametrize(
    "cmd,phase",
    [
        ("transfer", "mc"),
        ("transfer", "after_mc"),
        ("transfer", "figures"),
        pytest.param("certified", "mc", marks=pytest.mark.slow),
        ("certified", "after_mc"),
        pytest.param("certified", "figures", marks=pytest.mark.slow),
    ],
)
def test_an_interrupt_keeps_what_was_computed_and_the_rerun_resumes_bit_for_bit(
    cmd, phase, whole, tmp_path, monkeypatch, capsys
):
    import importlib

    out = tmp_path / "o"
    real_dispatch = driver.dispatch
    if phase == "mc":  # the second save interval of the first Monte Carlo
        monkeypatch.setattr(driver, "dispatch", interrupting(real_dispatch, 1))
    elif phase == "after_mc":
        mod, name, at = AFTER_MC[cmd]
        m = importlib.import_module(mod)
        monkeypatch.setattr(m, name, interrupting(getattr(m, name), at))
    else:
        mod, name = FIGURE[cmd]
        monkeypatch.setattr(importlib.import_module(mod), name, interrupting(None, 0))
    assert main([*ARGV[cmd], "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert str(out / "mc_checkpoint") in err, err  # the checkpoint saved last (a finished one: any of them)
    assert ("1 of 3" if phase == "mc" else "3 of 3") + " save intervals saved" in err, err
    with np.load(out / FIRST[cmd]) as z:
        assert int(z["k"]) == (1 if phase == "mc" else 3)
    if phase == "figures":  # the tables and config.json are written before the figures
        assert (out / "config.json").exists() and not [f for f in os.listdir(out) if f.endswith(".png")]
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(driver, "dispatch", lambda *a, **k: calls.append(1) or real_dispatch(*a, **k))
    assert main([*ARGV[cmd], "--out", str(out)]) == 0
    if phase == "figures":
        assert calls == []  # every Monte Carlo read back from its finished checkpoint
    assert not [f for f in os.listdir(out) if f.startswith("mc_checkpoint")]
    assert _csvs(out) == _csvs(whole(cmd))


_CLI = "import sys; from jaxadv.app.cli import main; sys.exit(main())"


def _with(argv, sets, options=None):
    """``argv`` with the ``--set`` keys of ``sets`` and the options of ``options`` given these values."""
    out, i, options = [], 0, dict(options or {})
    while i < len(argv):
        a = argv[i]
        if a == "--set" and argv[i + 1].split("=")[0] in sets or a in options:
            i += 2
            continue
        out.append(a)
        i += 1
    return out + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")] + [x for kv in options.items() for x in kv]


def _until(cond, proc, limit=300.0):
    t0 = time.monotonic()
    while not cond() and proc.poll() is None and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    assert cond(), proc.communicate()[1][-2000:]


def _k(path):
    try:
        with np.load(path) as z:
            return int(z["k"])
    except (OSError, ValueError, KeyError, EOFError):
        return -1


@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd,sig,phase",
    [("transfer", signal.SIGINT, "mc"), ("certified", signal.SIGTERM, "after_mc"), ("certified", signal.SIGINT, "mc")],
)
def test_a_real_signal_to_the_command(cmd, sig, phase, tmp_path):
    """A real SIGINT or SIGTERM to the console command during the Monte Carlo (after its first checkpoint) or
    after it (its checkpoint finished, the measures running): exit 130 within seconds, no traceback, the
    checkpoint kept; the rerun writes the bytes of an uninterrupted run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp_path / "o"
    # a Monte Carlo long enough to be caught running: many save intervals of the same tiny run
    argv = _with(ARGV[cmd], {"n_save": "300", "alpha_max": "60"}) + ["--out", str(out)]
    if phase == "after_mc":
        argv = _with(argv, {}, {"--mc-samples": "4000", "--pgd-test-steps": "20"})
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, *argv], env=env, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    ck = out / FIRST[cmd]
    _until((lambda: _k(ck) >= 1) if phase == "mc" else (lambda: _k(ck) == 300), proc)
    proc.send_signal(sig)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and time.monotonic() - t0 < 60, err[-2000:]
    assert "Traceback" not in err and "save intervals saved in" in err and ck.exists(), err[-2000:]
    res = subprocess.run([sys.executable, "-c", _CLI, *argv], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not [f for f in os.listdir(out) if f.startswith("mc_checkpoint")]


_STUCK = """
import sys
import jax
from jaxadv.app import cli, run

def stuck(*a, **k):  # one XLA computation of minutes: Python cannot run a signal handler until it returns
    f = jax.jit(lambda x: jax.lax.fori_loop(0, 2_000_000_000, lambda i, y: y * 0.999999 + 1e-9, x))
    f(1.0).block_until_ready()  # compiled: the next call runs, stuck
    print("stuck", file=sys.stderr, flush=True)
    f(2.0).block_until_ready()

run.run_student = stuck
cli.STOP_GRACE_S = 2.0
sys.argv = ["jaxadv", "transfer", "transfer", "--no-mc", "--quiet", "--out", sys.argv[1]]
sys.exit(cli.main())
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["TERM", "INT"]
)
def test_a_signal_inside_one_long_computation_ends_the_command_within_the_grace(sig, tmp_path):
    """A signal that lands inside one long XLA computation (an ODE's scan, a compilation) waited for its end,
    minutes or hours (``compare-defences --set eta_w=1e30`` ignored SIGTERM for good). The console command now
    ends :data:`jaxadv.app.cli.STOP_GRACE_S` seconds after it (2 here) with exit 130 and one line."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK, str(tmp_path / "o")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stderr.readline().strip() == "stuck"
        time.sleep(0.5)
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave the stuck computation running
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and time.monotonic() - t0 < 15, err
    assert "did not stop within 2 s" in err and err.count("\n") == 1 and "Traceback" not in err, err
    # the lock of the ended process is stale: the next run into the folder takes it over
    # (the sizes of the other tests here: the programs are compiled already)
    assert main([*ARGV["transfer"], "--no-mc", "--out", str(tmp_path / "o"), "--overwrite"]) == 0
