"""`jaxadv verify` smoke test with a tiny ladder, its error messages, and the slope fit."""

import csv
import json

import numpy as np
import pytest
from helpers import assert_every_file_registered

from jaxadv.app.cli import main
from jaxadv.app.verify import COLUMNS, fit_slope


def test_verify_cli_tiny_ladder(tmp_path, capsys):
    out = tmp_path / "v"
    rc = main(
        [
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
            "--out",
            str(out),
            "--quiet",
        ]
    )
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
