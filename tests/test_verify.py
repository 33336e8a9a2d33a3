"""`jaxadv verify` smoke test with a tiny ladder, its error messages, and the slope fit."""

import csv
import json

import numpy as np
import pytest
from helpers import assert_every_file_registered

from jaxadv.app.cli import main
from jaxadv.app.verify import COLUMNS, fit_slope

LADDER = [
    "verify",
    "scenario2",
    "--N-list",
    "20,40",
    "--full-N-list",
    "20",
    "--replicas",
    "400",
    "--full-replicas",
    "400",
    "--alpha-max",
    "5",
    "--n-save",
    "5",
    "--set",
    "eps=0.5",
    "--set",
    "dt=0.1",
    "--quiet",
]


def test_verify_cli_tiny_ladder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "v"
    rc = main([*LADDER, "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("consistent with theory") == 3 and "fitted log-log slopes" in text
    with open(out / "verify.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["N"], r["sampler"]) for r in rows] == [("20", "reduced"), ("40", "reduced"), ("20", "full")]
    assert list(rows[0]) == list(COLUMNS)
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["eps"] == 0.5 and info["N_list"] == [20, 40]
    assert (out / "verify.png").stat().st_size > 0
    assert_every_file_registered(out)
    assert not list(out.glob("mc_checkpoint*"))

    # Ctrl-C inside the second rung (after 2 of its 5 save intervals): the first rung's finished Monte Carlo and
    # the second's 2 intervals are kept; the rerun reads the first back, resumes the second, and writes the
    # uninterrupted run's verify.csv. Before, verify had no checkpoint and the rerun started the ladder again.
    from helpers import interrupting

    from jaxadv.mc import driver

    again = tmp_path / "again"
    real = driver.dispatch
    monkeypatch.setattr(driver, "dispatch", interrupting(real, 5 + 2))
    assert main([*LADDER, "--out", str(again)]) == 130
    assert "2 of 5 save intervals saved" in capsys.readouterr().err
    assert sorted(p.name for p in again.glob("mc_checkpoint*")) == ["mc_checkpoint_0.npz", "mc_checkpoint_1.npz"]
    monkeypatch.setattr(driver, "dispatch", interrupting(real, -1))
    assert main([*LADDER, "--out", str(again)]) == 0
    assert "N=20 reduced: the Monte Carlo read back from its finished checkpoint" in capsys.readouterr().out
    assert len(driver.dispatch.args) == 3 + 5  # the second rung's last 3 intervals, then the full rung's 5
    assert (again / "verify.csv").read_bytes() == (out / "verify.csv").read_bytes()
    assert not list(again.glob("mc_checkpoint*"))


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--N-list", "10,x"], "--N-list='10,x' is not a comma-separated list of integers"),
        (["--N-list", "2"], "--N-list='2': every N must be >= 3"),
        (["--replicas", "1"], "--replicas=1 must be >= 2"),
        (["--set", "prior=2"], "prior="),
    ],
)
def test_verify_cli_errors(argv, msg, capsys, tmp_path):
    assert main(["verify", "scenario1", "--out", str(tmp_path), *argv]) == 2
    assert f"jaxadv: error: {msg}" in capsys.readouterr().err


def test_fit_slope_recovers_power_law():
    N = np.array([100, 300, 1000, 3000])
    s, _ = fit_slope(N, 3.0 * N**-0.5)
    assert abs(s + 0.5) < 1e-12
    assert np.isnan(fit_slope([100], [1.0])[0])
