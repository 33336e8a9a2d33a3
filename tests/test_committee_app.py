"""``jaxadv committee``: presets, keys, files and the refusals (the model itself: test_committee.py)."""

import json

import numpy as np
import pytest
from helpers import assert_every_file_registered

from jaxadv.app.cli import main
from jaxadv.app.config import load_any
from jaxadv.app.io import read_csv


def load_committee_config(spec, overrides=()):
    return load_any(spec, overrides, "committee")[1]


# the sizes of the command tests of tests/test_faults.py and tests/test_signals.py (their programs compiled once)
TINY = ["--set", "N=40", "--set", "alpha_max=0.6", "--set", "n_save=3", "--set", "replicas=2", "--quiet"]


def test_committee_preset_writes_every_output(tmp_path):
    assert (
        main(
            [
                "committee",
                "committee",
                *TINY,
                "--set",
                "attack=pgd",
                "--set",
                "train_v=true",
                "--set",
                "eta_v=0.5",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    ode, mc = read_csv(tmp_path / "ode.csv"), read_csv(tmp_path / "mc.csv")
    assert {"alpha", "Q_1_2", "R_1_1", "R_2_1", "b_2", "v_1", "clean_error"} <= set(ode)
    assert {"Q_1_2_mean", "Q_1_2_sem", "R_2_1_mean", "v_2_sem"} <= set(mc)
    info = json.loads((tmp_path / "config.json").read_text())
    assert info["ode_start"] == "given" and "R0" in info["ode_started_from"]
    # both curves start at the given overlaps: the Monte Carlo builds its weights with exactly these
    np.testing.assert_allclose(mc["R_1_1_mean"][0], 0.3, atol=1e-6)
    np.testing.assert_allclose(ode["R_1_1"][0], 0.3, atol=1e-12)
    assert np.isfinite(info["max_deviation_sem"])
    for f in ("order_parameters.png", "units.png", "errors.png"):
        assert (tmp_path / f).stat().st_size > 1000
    assert_every_file_registered(tmp_path)


def test_keys_from_toml_and_set(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        'preset = "xor"\nK = 2\nR0 = [[0.3, 0.1], [0.05, 0.25]]\nQ0 = [[1.0, 0.1], [0.1, 1.0]]\nb0 = [0.1, -0.1]\n'
    )
    cfg = load_committee_config(str(toml), ["v=0.5,-0.5", "attack=worst", "normalise=false"])
    assert cfg["K"] == 2 and cfg["v"] == [0.5, -0.5] and cfg["R0"] == [[0.3, 0.1], [0.05, 0.25]]
    assert cfg["attack"] == "worst" and cfg["normalise"] is False and cfg["data"] == "xor"
    mix = tmp_path / "m.toml"
    mix.write_text(
        "K = 1\n[mixture]\ncentres = [[1.0], [-1.0]]\nvariances = [1.0, 0.5]\npriors = [0.4, 0.6]\n"
        "labels = [1.0, -1.0]\n"
    )
    assert load_committee_config(str(mix))["data"] == "mixture"


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--set", "K=0"], "K"),
        (["--set", "v=0.5,0.5,0.5"], "v="),
        (["--set", "eps=-1"], "eps"),
        (["--set", "attack=fgsm"], "attack"),
        (["--set", "kappa=1"], "unknown key 'kappa'"),
        (["--set", "eps=1", "--set", "eps=2"], "given twice"),
    ],
)
def test_bad_committee_inputs_are_refused_by_name(args, msg, capsys):
    assert main(["committee", "committee", *args, "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxadv: error:") and msg in err and "Traceback" not in err


def test_mixture_priors_must_sum_to_one(tmp_path, capsys):
    mix = tmp_path / "m.toml"
    mix.write_text(
        "[mixture]\ncentres = [[1.0], [-1.0]]\nvariances = [1.0, 1.0]\npriors = [0.4, 0.4]\nlabels = [1.0, -1.0]\n"
    )
    assert main(["committee", str(mix), "--out", str(tmp_path / "o")]) == 2
    assert "priors" in capsys.readouterr().err


# --- jaxadv certified (standard / adversarial / Lipschitz-normalised training) ---------------------------


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--set", "lipschitz=0"], "lipschitz=0.0 must be None (off) or a finite number > 0"),
        (["--set", "lipschitz=-2"], "lipschitz=-2.0 must be None"),
        (["--set", "normalise=true"], "lipschitz=1.0 needs normalise=False"),
        (["--set", "lipschitz=none"], "lipschitz=None: jaxadv certified needs the bound L_max"),
        (["--set", "eps=-0.5"], "eps=-0.5 must be >= 0"),
        (["--pgd-samples", "0"], "--pgd-samples=0 must be >= 1"),
    ],
)
def test_bad_certified_inputs_are_refused_by_name(args, msg, capsys):
    assert main(["certified", *args, "--out", "/nonexistent/never"]) == 2
    assert msg in capsys.readouterr().err


def test_committee_lipschitz_key_from_set_and_toml(tmp_path):

    assert load_committee_config("committee", ["normalise=false", "lipschitz=0.7"])["lipschitz"] == 0.7
    assert load_committee_config("certified")["lipschitz"] == 1.0
    assert load_committee_config("certified", ["lipschitz=off"])["lipschitz"] is None
    toml = tmp_path / "lip.toml"
    toml.write_text('preset = "committee"\nnormalise = false\nlipschitz = 1.5\n')
    assert load_committee_config(str(toml))["lipschitz"] == 1.5
    with pytest.raises(ValueError, match="lipschitz=1.5 needs normalise=False"):
        load_committee_config("committee", ["lipschitz=1.5"])


@pytest.mark.slow
def test_certified_command_writes_every_output(tmp_path):
    import csv

    out = tmp_path / "c"
    assert (
        main(
            [
                "certified",
                "--set",
                "N=60",
                "--set",
                "replicas=3",
                "--set",
                "alpha_max=1",
                "--set",
                "n_save=1",
                "--pgd-samples",
                "200",
                "--mc-samples",
                "50",
                "--pgd-test-steps",
                "5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    ode = list(csv.DictReader((out / "certified_ode.csv").read_text().splitlines()))
    mc = list(csv.DictReader((out / "certified_mc.csv").read_text().splitlines()))
    assert [r["training"] for r in ode] == ["standard"] * 2 + ["adversarial"] * 2 + ["lipschitz"] * 2
    assert len(mc) == 6 and "lipschitz_sem" in mc[0]
    for r in ode:
        assert float(r["lipschitz"]) >= float(r["interval"]) - 1e-9 >= float(r["worst"]) - 2e-6
        assert float(r["pgd"]) >= float(r["clean"]) - 0.05  # (pgd <= worst holds by construction)
    assert all(float(r["L"]) <= 1.0 + 1e-9 for r in ode if r["training"] == "lipschitz")
    assert (out / "certified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "config.json").read_text())
    assert info["trainings"]["adversarial"]["attack"] == "fgm" and info["trainings"]["lipschitz"]["lipschitz"] == 1.0


def test_committee_writes_robust_and_fgm_errors_at_eps_test(tmp_path):
    """Through the command line (``jaxadv.app.cli.main``, in process: the console script's exit codes and
    messages are tested in test_cli.py and test_signals.py): ``eps_test`` sets the radius of the robust and FGM
    errors in ``ode.csv`` and ``mc.csv``; clean <= FGM <= worst case at every point; at eps_test = 0 both equal
    the clean error; the verdict is the bare-ODE one of :func:`jaxadv.analysis.verdict.honest_verdict`."""
    runs = {}
    for eps_test in ("0.3", "0"):
        out = tmp_path / eps_test
        cmd = ["committee", "committee", *TINY, "--set", f"eps_test={eps_test}"]
        cmd += ["--no-mc"] if eps_test == "0" else []  # at eps_test = 0 only the ODE's columns are checked
        assert main([*cmd, "--out", str(out)]) == 0
        runs[eps_test] = (
            read_csv(out / "ode.csv"),
            read_csv(out / "mc.csv") if eps_test != "0" else None,
            json.loads((out / "config.json").read_text()),
        )
    ode, mc, info = runs["0.3"]
    assert info["config"]["eps_test"] == 0.3 and info["config"]["eps"] == 0.5
    for name in ("clean_error", "robust_error", "fgm_error"):
        assert name in ode and f"{name}_mean" in mc and f"{name}_sem" in mc
    assert np.all(ode["clean_error"] < ode["fgm_error"]) and np.all(ode["fgm_error"] <= ode["robust_error"] + 1e-9)
    assert np.all(mc["clean_error_mean"] < mc["fgm_error_mean"])
    assert np.all(mc["fgm_error_mean"] <= mc["robust_error_mean"] + 1e-9)
    # the first save point: every replica has the given overlaps, so the Monte Carlo's errors are the ODE's
    for name in ("clean_error", "robust_error", "fgm_error"):
        np.testing.assert_allclose(mc[f"{name}_mean"][0], ode[name][0], atol=1e-6)
    assert info["verdict_status"] in ("consistent", "not testable") and "bare ODE" in info["verdict"]
    ode0 = runs["0"][0]
    np.testing.assert_allclose(ode0["robust_error"], ode0["clean_error"], atol=1e-9)
    np.testing.assert_allclose(ode0["fgm_error"], ode0["clean_error"], atol=1e-9)
    # the default eps_test is eps
    assert load_committee_config("committee")["eps_test"] == 0.5
    assert load_committee_config("committee", ["eps_test=0.2"])["eps_test"] == 0.2


def test_eps_test_is_refused_by_name():
    with pytest.raises(ValueError, match="eps_test=-0.1"):
        load_committee_config("committee", ["eps_test=-0.1"])
    with pytest.raises(ValueError, match="eps_test='x'"):
        load_committee_config("committee", ["eps_test=x"])


def test_committee_verdict_without_theory_is_consistent_within_the_allowance_else_not_testable():
    """The bare-ODE verdict: 2 standard errors "consistent"; 5.35 (the XOR, K = 2, N = 500 case) "not
    testable" with the raw deviation beside it, never "inconsistent"."""
    from jaxadv.analysis.verdict import honest_verdict

    alpha = np.array([0.0, 1.0, 2.0])
    ode = {"alpha": alpha, "R_1_1": np.array([0.3, 0.5, 0.7])}
    for z, status in ((2.0, "consistent"), (5.35, "not testable")):
        mc = {
            "alpha": alpha,
            "R_1_1_mean": ode["R_1_1"] + np.array([0.0, 0.0, z * 0.01]),
            "R_1_1_sem": np.full(3, 0.01),
        }
        v = honest_verdict(
            mc,
            ode,
            params=None,
            N=500,
            eps_test=0.3,
            mc_dtype=np.float64,
            theory=False,
            why_no_theory="no O(1/N) theory for committees",
            quantities=["R_1_1"],
            bare_allowance=True,
        )
        assert v.status == status, v.text
        assert abs(v.raw_z_max - z) < 1e-6 and v.raw_quantity == "R_1_1" and v.raw_alpha == 2.0
        assert f"{z:.2f} standard errors" in v.text
