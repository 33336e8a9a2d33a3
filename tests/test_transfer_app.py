"""``jaxadv transfer``: configuration checks, an ODE-only run through the CLI, checkpoints and resumption
(Ctrl-C, SIGKILL, another device count: the same bits), and (slow) a full run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import assert_every_file_registered, interrupting

from jaxadv.app.cli import main
from jaxadv.app.config import load_any
from jaxadv.app.io import read_csv


def load_transfer_config(spec, overrides=()):
    return load_any(spec, overrides, "pair")[1]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stream=mixed"], "stream='mixed' must be one of"),
        (["labels=oracle"], "labels='oracle' must be one of"),
        (["eps_t=0,-0.5"], "eps_t='0,-0.5' must be a non-empty list of numbers that lie in [0, 1e+06]"),
        (["eps_s=-1"], "eps_s=-1.0 must lie in [0, 1e+06]"),
        (["eps=-0.1"], "eps=-0.1 must lie in [0, 1e+06]"),
        (["eta_w_s=0"], "eta_w_s=0.0 must be > 0"),
        (["eta_w_t=-1"], "eta_w_t=-1.0 must be >= 0"),
        (["Q0=1.5"], "Q0=1.5 must lie in [-1, 1]"),
        (["R_s0=0.9", "R_t0=0.9", "Q0=-0.9"], "are not overlaps of unit vectors"),
        (["replicas=1"], "replicas=1 must be an integer >= 2"),
        (["colour=red"], "unknown key 'colour'"),
        (["target_frozen=maybe"], "target_frozen='maybe' is not a boolean"),
    ],
)
def test_bad_configuration_is_refused_with_its_name(overrides, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        load_transfer_config("transfer", overrides)


def test_presets_resolve():
    cfg = load_transfer_config("blackbox", ["target_frozen=true"])
    assert cfg["stream"] == "blackbox" and cfg["labels"] == "surrogate" and cfg["target_frozen"] is True
    assert load_transfer_config("transfer")["eps_t"] == [0.0, 1.0]


def test_cli_error_names_the_parameter(capsys):
    assert main(["transfer", "transfer", "--set", "stream=mixed", "--out", os.devnull]) != 0
    assert "stream='mixed'" in capsys.readouterr().err


@pytest.mark.slow
def test_ode_only_run_writes_its_files(tmp_path):
    out = tmp_path / "tr"
    rc = main(
        [
            "transfer",
            "transfer",
            "--no-mc",
            "--quiet",
            "--out",
            str(out),
            "--set",
            "alpha_max=1",
            "--set",
            "n_save=2",
            "--set",
            "eps_t=0.5",
            "--set",
            "eps_grid=0,1",
        ]
    )
    assert rc == 0
    assert {"config.json", "eps.csv", "ode.csv", "transfer.png"} <= set(os.listdir(out))
    ode = read_csv(out / "ode.csv")
    assert len(ode["alpha"]) == 3
    # the closed form at Q = 1 would be the white-box error; transfer never exceeds it while Q <= 1
    assert np.all(np.asarray(ode["transfer_true"], float) <= np.asarray(ode["robust_t"], float) + 1e-12)
    eps = read_csv(out / "eps.csv")
    assert len(eps["eps"]) == 2 and np.allclose(np.asarray(eps["ode_clean_t"], float), float(ode["clean_t"][-1]))
    # the folder is claimed: a second run into it is refused unless --overwrite
    assert main(["transfer", "blackbox", "--no-mc", "--quiet", "--out", str(out)]) != 0


@pytest.mark.slow
def test_full_run_agrees(tmp_path):
    out = tmp_path / "tr"
    assert (
        main(
            [
                "transfer",
                "transfer",
                "--quiet",
                "--out",
                str(out),
                "--set",
                "N=200",
                "--set",
                "replicas=16",
                "--set",
                "alpha_max=2",
                "--set",
                "n_save=2",
                "--set",
                "n_test=200",
            ]
        )
        == 0
    )
    import json

    info = json.loads((out / "config.json").read_text())
    assert info["max_deviation_sem"] <= 4.0, info["verdict"]


# --- checkpoints and resumption ----------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# two target radii (two pair Monte Carlo runs of 3 save intervals each); 5 replicas (padded to 6 on 2 devices);
# N, alpha_max, n_save and n_test of the transfer runs of tests/test_signals.py and tests/test_faults.py (their
# ODE and measure programs compiled once)
SMALL = ["--set", "N=40", "--set", "alpha_max=0.6", "--set", "n_save=3", "--set", "replicas=5", "--set", "n_test=20"]
OUTPUTS = ("mc.csv", "eps.csv", "ode.csv")


def _transfer(out, *extra):
    return main(["transfer", "transfer", *SMALL, "--quiet", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "full"
    assert _transfer(out) == 0
    assert not [f for f in os.listdir(out) if f.startswith("mc_checkpoint")]
    return out


def _same_outputs(a, b):
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _counting(real):
    def wrapped(*a, **k):
        wrapped.calls += 1
        return real(*a, **k)

    wrapped.calls = 0
    return wrapped


def test_ctrl_c_then_rerun_is_bit_identical(uninterrupted, tmp_path, capsys, monkeypatch):
    """Ctrl-C in the second radius's run: the first radius's finished run and the second's first interval are
    kept; the same command resumes there (2 intervals left of 6) and writes the uninterrupted run's bytes; another
    configuration is refused in that folder."""
    from jaxadv.mc import driver

    out = tmp_path / "part"
    real = driver.dispatch
    capsys.readouterr()
    # dispatch calls 0-2: eps_t=0; 3-5: eps_t=1; Ctrl-C at call 4 (its second interval)
    monkeypatch.setattr(driver, "dispatch", interrupting(real, 4))
    assert _transfer(out) == 130
    err = capsys.readouterr().err
    ck = out / "mc_checkpoint_1.npz"
    assert f"1 of 3 save intervals saved in {ck}" in err and "Traceback" not in err
    assert (out / "mc_checkpoint_0.npz").exists() and ck.exists() and not (out / "mc.csv").exists()
    assert not (out / ".jaxadv.lock").exists()
    with np.load(out / "mc_checkpoint_0.npz") as c0, np.load(ck) as c1:
        assert int(c0["k"]) == 3 and int(c1["k"]) == 1

    monkeypatch.setattr(driver, "dispatch", real)
    # another configuration is refused in a folder holding its checkpoint, before any computation
    assert main(["transfer", "transfer", *SMALL, "--set", "seed=1", "--quiet", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and ck.exists()

    counting = _counting(real)
    monkeypatch.setattr(driver, "dispatch", counting)
    assert main(["transfer", "transfer", *SMALL, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert counting.calls == 2  # eps_t=0 read from its finished checkpoint, eps_t=1 resumed at interval 1
    assert "monte carlo eps_t=0: read from its finished checkpoint" in captured.out
    assert "monte carlo eps_t=1: resumed at save interval 1 of 3" in captured.out
    assert "monte carlo eps_t=1 [" in captured.err  # the progress bar (not --quiet)
    _same_outputs(uninterrupted, out)
    assert not [f for f in os.listdir(out) if f.startswith("mc_checkpoint")]
    assert_every_file_registered(out)


_STALL = """
import os, sys, time
from jaxadv.mc import driver
real, calls = driver.dispatch, []

def stall(*a, **k):  # the dispatch call number STALL_AT never returns: the process is killed while it waits
    calls.append(1)
    if len(calls) - 1 == int(os.environ["STALL_AT"]):
        import jax
        with open(os.environ["STALL_MARK"] + ".tmp", "w") as f:
            f.write(str(jax.device_count()))
        os.replace(os.environ["STALL_MARK"] + ".tmp", os.environ["STALL_MARK"])  # seen only with its contents
        time.sleep(600)
    return real(*a, **k)

driver.dispatch = stall
from jaxadv.app.cli import main


def load_transfer_config(spec, overrides=()):
    return load_any(spec, overrides, "pair")[1]
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_on_two_devices_then_rerun_on_one_is_bit_identical(uninterrupted, tmp_path, capsys):
    """SIGKILL leaves the last checkpoint: the CLI on 2 host devices (its own device split) is killed in the
    second radius's third interval; the rerun on 1 device reads the first radius's finished run (computed on 2
    devices: the same bytes as on 1) and resumes the second at the checkpoint of interval 1 (interval 2 was
    computed but not saved, so it is computed again): the bytes of the uninterrupted run."""
    out, mark = tmp_path / "part", tmp_path / "stalled"
    env = {**os.environ, "JAXADV_HOST_DEVICES": "2", "JAX_PLATFORMS": "cpu", "STALL_AT": "5", "STALL_MARK": str(mark)}
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("XLA_FLAGS", None)
    argv = ["transfer", "transfer", *SMALL, "--quiet", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", _STALL, *argv], env=env, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not mark.exists() and proc.poll() is None and time.monotonic() - t0 < 300:
            time.sleep(0.05)
        assert mark.exists(), proc.communicate(timeout=60)[1][-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and mark.read_text() == "2"
    with np.load(out / "mc_checkpoint_0.npz") as c0, np.load(out / "mc_checkpoint_1.npz") as c1:
        assert int(c0["k"]) == 3 and int(c1["k"]) == 1 and c1["state_0"].shape[0] == 5  # no padding rows
    assert not (out / "mc.csv").exists()

    capsys.readouterr()
    assert main(["transfer", "transfer", *SMALL, "--out", str(out)]) == 0  # the dead run's lock is taken over
    assert "monte carlo eps_t=1: resumed at save interval 1 of 3" in capsys.readouterr().out
    _same_outputs(uninterrupted, out)
    assert not [f for f in os.listdir(out) if f.startswith("mc_checkpoint")]


def test_overwrite_removes_the_checkpoints(tmp_path):
    from jaxadv.app.outputs import claim_output

    (tmp_path / "mc_checkpoint_1.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unknown run \(mc_checkpoint_1.npz"):
        claim_output(str(tmp_path), {"config": {"name": "a"}}, command="transfer")
    claim_output(str(tmp_path), {"config": {"name": "a"}}, overwrite=True, command="transfer").release()
    assert not (tmp_path / "mc_checkpoint_1.npz").exists()
