"""Command line: outputs and headers, and a clear message for every bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_every_file_registered

from jaxadv.app.cli import main
from jaxadv.app.config import load_config
from jaxadv.app.io import read_csv

# the sizes of the command tests of tests/test_faults.py and tests/test_signals.py (their programs compiled once)
TINY = ["--set", "N=40", "--set", "alpha_max=0.6", "--set", "n_save=3", "--set", "replicas=2", "--quiet"]


def test_run_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "scenario2", "--out", str(out), *TINY]) == 0
    with open(out / "ode.csv") as f:
        assert f.readline().strip() == "alpha,R,b,test_error,robust_error"
    with open(out / "mc.csv") as f:
        assert f.readline().strip() == (
            "alpha,R_mean,R_sem,b_mean,b_sem,test_error_mean,test_error_sem,robust_error_mean,robust_error_sem,n_finite"
        )
    ode = read_csv(out / "ode.csv")
    np.testing.assert_allclose(ode["alpha"], [0, 0.2, 0.4, 0.6])
    assert_every_file_registered(out)
    rep = np.load(out / "mc_replicas.npz")
    assert rep["R"].shape == (2, 4) and rep["b"].shape == (2, 4) and rep["alpha"].shape == (4,)
    rob = read_csv(out / "robustness.csv")
    assert set(rob) >= {"eps_test", "robust_error_ode", "robust_error_mc_mean", "robust_error_mc_sem"}
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["prior"] == 0.7 and info["config"]["N"] == 40
    for key in ("jax_version", "device", "timings_s", "seed", "jaxadv_version", "verdict"):
        assert key in info
    t = info["timings_s"]  # every phase, and the total covers them
    assert set(t) == {"ode_s", "mc_s", "verdict_s", "plots_s", "total_s"}
    assert t["total_s"] >= t["ode_s"] + t["mc_s"] + t["verdict_s"] + t["plots_s"]
    for png in ("order_parameters.png", "errors.png", "robustness.png"):
        assert (out / png).stat().st_size > 1000
    assert not (out / "mc_checkpoint.npz").exists()


def test_no_mc_and_toml(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('preset = "scenario1"\nprior = 0.6\neps_test = 0.5\nalpha_max = 0.6\nn_save = 3\n')
    out = tmp_path / "o"
    assert main(["run", str(toml), "--no-mc", "--out", str(out)]) == 0
    assert not (out / "mc.csv").exists()
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["name"] == "mine" and info["config"]["prior"] == 0.6
    assert info["resolved"]["eps_test"] == 0.5


BAD = [
    ("prior=1.0", "prior=1.0"),
    ("prior=0", "prior=0.0"),
    ("prior=nan", "prior=nan"),
    ("rho=-1", "rho=-1.0"),
    ("v1=0", "v1=0.0"),
    ("v2=-2", "v2=-2.0"),
    ("N=1", "N=1"),
    ("eta_w=0", "eta_w=0.0"),
    ("eta_b=-0.1", "eta_b=-0.1"),
    ("eps=-0.5", "eps=-0.5"),
    ("eps=inf", "eps=inf"),
    ("alpha_max=0", "alpha_max=0.0"),
    ("replicas=0", "replicas=0"),
    ("bogus=3", "unknown key 'bogus'"),
    ("N=abc", "N='abc'"),
    ("x64=maybe", "x64='maybe'"),
    ("loss=squared_hinge", "loss='squared_hinge'"),
    ("eps_test=-1", "eps_test=-1.0"),
    ("R0=2", "R0=2.0"),
    ("N=2.5", "N='2.5'"),
    ("seed=-1", "seed=-1"),
    ("n_save=0", "n_save=0"),
    ("dt=0", "dt=0.0"),
]


@pytest.mark.parametrize("item,expected", BAD)
def test_bad_input_names_parameter_and_value(item, expected):
    with pytest.raises(ValueError) as e:
        load_config("scenario1", [item])
    assert expected in str(e.value)


def test_optional_fields_are_coerced():
    """``float | None`` fields read as floats from ``--set`` (not left as strings), ``none`` as None."""
    cfg = load_config("scenario1", ["eps_test=0.5", "eps_test_max=3", "R0=none"])
    assert isinstance(cfg.eps_test, float) and cfg.eps_test == 0.5
    assert isinstance(cfg.eps_test_max, float) and cfg.eps_test_max == 3.0
    assert cfg.R0 is None


def test_cli_error_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "jaxadv.app.cli", "run", "scenario1", "--set", "prior=1.5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode != 0
    assert "prior=1.5" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "jaxadv.app.cli", "run", "nosuch"], capture_output=True, text=True)
    assert r.returncode != 0 and "nosuch" in r.stderr and "Traceback" not in r.stderr


def test_missing_and_malformed_toml(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("prior = = 3")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and "not valid TOML" in err
