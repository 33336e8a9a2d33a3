"""``jaxadv transfer``: configuration checks, an ODE-only run through the CLI, and (slow) a full run."""

import os

import numpy as np
import pytest

from jaxadv.app.cli import main
from jaxadv.app.io import read_csv
from jaxadv.app.transfer import load_transfer_config


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stream=mixed"], "stream='mixed' must be one of"),
        (["labels=oracle"], "labels='oracle' must be one of"),
        (["eps_t=0,-0.5"], "eps_t='0,-0.5' must be a non-empty list of numbers >= 0"),
        (["eps_s=-1"], "eps_s=-1.0 must be >= 0"),
        (["eps=-0.1"], "eps=-0.1 must be >= 0"),
        (["eta_w_s=0"], "eta_w_s=0.0 must be > 0"),
        (["eta_w_t=-1"], "eta_w_t=-1.0 must be >= 0"),
        (["Q0=1.5"], "Q=1.5 must lie in [-1, 1]"),
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
