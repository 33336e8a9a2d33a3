"""Every option and key of ``certified``, ``transfer``, ``verify``, ``compare-defences`` and ``mnist`` against
hostile values (issue 25, item 3), through the command line's entry :func:`jaxadv.app.cli.main`.

Each value is either refused in one line ``jaxadv: error: ...`` (or argparse's usage error) that names the option
or key, with exit status 2 and no traceback, or accepted by every check the command makes before it claims its
folder: then the configuration it would run holds only finite numbers and 64-bit integers. Nothing runs: the
claim of the output folder is replaced by a stop (every check, the memory and step estimates included, comes
before it), so the whole table takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from jaxadv.app import cli, outputs
from jaxadv.app.cli import main
from jaxadv.app.config import keys_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = ["-1", "0", "nan", "inf", "1e308", "9223372036854775808", "1e30", "abc", ""]
#: sizes that would exhaust the memory or run for hours
ABSURD = {
    "replicas": ["1000000000000"],
    "N": ["1000000000"],
    "n_test": ["1000000000000"],
    "pgd_steps": ["100000000"],
    "alpha_max": ["1000000000"],
    "n_save": ["3000000000", "100000000"],
    "dt": ["1e-12"],
    "eps_t": [",".join(["0.5"] * 5000), "5000"],
    "eps_grid": [",".join(["0.5"] * 5000)],
    "--pgd-samples": ["1000000000000"],
    "--mc-samples": ["1000000000000"],
    "--pgd-test-steps": ["100000000"],
    "--steps": ["100000000"],
    "--epochs": ["100000000"],
    "--pgd-steps": ["100000000"],
    "--restarts": ["100000000"],
    "--eps-linf": [",".join(["0.1"] * 5000)],
    "--eps-l2": ["1e9"],
    "--N-list": ["100,1000000000", ",".join(str(i) for i in range(3, 5003)), "30,30"],
    "--full-N-list": ["100,1000000000"],
    "--replicas": ["1000000000000"],
    "--full-replicas": ["1000000000000"],
    "--n-save": ["3000000000"],
    "--alpha-max": ["1e308", "1000000000"],
}
_SMALL = {"N": "40", "replicas": "2", "n_save": "1", "alpha_max": "0.2"}
#: ``command: (head, --set keys of the student or None, the small values of its keys, its options)``
COMMANDS = {
    "certified": (["certified"], "committee", _SMALL, {"--pgd-samples": "50", "--mc-samples": "20"}),
    "transfer": (["transfer", "transfer"], "pair", {**_SMALL, "n_test": "20"}, {}),
    "compare-defences": (["compare-defences"], "unit", _SMALL, {}),
    "verify": (
        ["verify", "scenario1"],
        "unit",
        {},
        {"--N-list": "20,40", "--full-N-list": "", "--replicas": "20", "--full-replicas": "4", "--n-save": "2"},
    ),
    "mnist": (
        ["mnist"],
        None,
        {},
        {
            **{o: "2" for o in ("--steps", "--epochs", "--pgd-steps", "--restarts", "--n-train", "--n-test")},
            **{o: "0,0.1" for o in ("--eps-linf", "--eps-l2", "--eps-l1", "--eps-train")},
            "--seed": "0",
            "--test-fraction": "0.3",
            "--learning-rate": "1",
            "--attacks": "fgm",
        },
    ),
}
#: keys and options a command accepts but does not use (verify's ladder takes N and replicas from its own
#: options; --full-replicas without a full ladder): an absurd size there runs nothing
UNUSED = {"verify": ("N", "replicas", "--full-replicas")}
#: options every command also takes, probed with the base of each
EXTRA_OPTIONS = {"certified": ["--pgd-test-steps"]}


class _Claimed(BaseException):
    """Raised where the command would claim its folder: every check passed."""


def _cases(command):
    head, student, small, opts = COMMANDS[command]
    keys = [(f"--set {k}", k) for k in keys_of(student) if k != "student"] if student else []
    for name in [*opts, *EXTRA_OPTIONS.get(command, [])]:
        keys.append((name, name))
    for what, name in keys:
        for value in HOSTILE + ABSURD.get(name, []):
            sets, options = dict(small), dict(opts)
            if what.startswith("--set "):
                sets[name] = value
            else:
                options[name] = value
            argv = [*head, *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]
            yield name, value, [*argv, *(a for k, v in options.items() for a in (k, v)), "--quiet"]


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_refuses_hostile_values_in_one_line_naming_itself(command, tmp_path, capsys, monkeypatch):
    claimed = {}

    def claim(out, ident, *a, **k):
        claimed["ident"] = ident
        raise _Claimed

    monkeypatch.setattr(outputs, "claim_output", claim)
    parser = cli._parser()  # built once: the table's time goes to the checks, not to argparse
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    refused, accepted, escaped = 0, 0, []
    for name, value, argv in _cases(command):
        claimed.clear()
        try:
            rc = main([*argv, "--out", str(tmp_path / "o")])
        except _Claimed:
            accepted += 1
            bad = [
                x
                for x in _numbers(claimed["ident"])
                if not (math.isfinite(x) if isinstance(x, float) else abs(x) < 2**63)
            ]
            if bad:
                escaped.append((name, value[:40], f"accepted non-finite or huge numbers {bad[:3]}"))
            if value in ABSURD.get(name, []) and name not in UNUSED.get(command, ()):
                escaped.append((name, value[:40], "accepted a size that exhausts the memory or runs for hours"))
            continue
        except SystemExit as e:  # argparse's usage error: exit 2, the option named
            err = capsys.readouterr().err
            if e.code != 2 or f"argument {name}" not in err:
                escaped.append((name, value[:40], f"SystemExit({e.code}): {err[-200:]}"))
            refused += 1
            continue
        except BaseException as e:  # noqa: BLE001 -- the point of the probe
            escaped.append((name, value[:40], f"{type(e).__name__}: {e}"[:300]))
            continue
        err = capsys.readouterr().err
        one_line = err.startswith("jaxadv: error: ") and err.count("\n") == 1 and "Traceback" not in err
        if rc != 2 or not one_line or name.lstrip("-").replace("-", "_") not in err.replace("-", "_"):
            escaped.append((name, value[:40], f"rc={rc}: {err[-300:]}"))
        refused += 1
    assert not escaped, escaped
    assert refused > 3 * accepted  # most of the values are hostile (each is counted once above)


@pytest.mark.parametrize(
    "argv,needle",
    [
        pytest.param(
            ["certified", "--set", "seed=1e30"], "seed=1e30 is outside the 64-bit integer range", marks=pytest.mark.slow
        ),
        (["verify", "scenario1", "--replicas", "1000000000000"], "GiB"),
        pytest.param(
            ["mnist", "--seed", "99999999999999999999"], "--seed=99999999999999999999", marks=pytest.mark.slow
        ),
    ],
    ids=["certified-seed", "verify-replicas", "mnist-seed"],
)
def test_hostile_values_through_the_console_command(argv, needle, tmp_path):
    """The same refusals from the console command: one line, exit 2, before any computation."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run(
        [sys.executable, "-m", "jaxadv.app.cli", *argv, "--out", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_the_table_covers_every_key():
    """A key added to a student is probed without an edit here (the table is built from the keys)."""
    names = {n for c in COMMANDS for n, _, _ in _cases(c)}
    for student in ("committee", "pair", "unit"):
        assert set(keys_of(student)) - {"student"} <= names
    json.dumps(sorted(names))


@pytest.mark.parametrize(
    "argv,rc,needle",
    [
        (
            ["compare-defences", "--no-mc", "--set", "eta_w=1e30", "--set", "alpha_max=0.2", "--set", "n_save=1"],
            2,
            "ode of the defence 'none': step-size failure",  # ran for minutes on an unstable ODE
        ),
        (
            ["verify", "scenario1", "--set", "rho=1e308", "--N-list", "20,40", "--full-N-list", "", "--replicas", "4"],
            2,
            "the ODE and fluctuation theory at N=20 are not finite",  # exit 0 with NaN everywhere
        ),
        (
            ["transfer", "transfer", "--no-mc", "--set", "rho=1e30", "--set", "alpha_max=0.2", "--set", "n_save=1"],
            2,
            "the pair ODE of eps_t=0 leaves its domain",  # named the ODE's Q, not the key that drove it there
        ),
        pytest.param(
            ["transfer", "transfer", "--set", "eta_b_s=1e308", "--set", "n_test=20"]
            + [a for k, v in _SMALL.items() for a in ("--set", f"{k}={v}")],
            3,
            "all 2 pairs of eps_t=0 diverged in the Monte Carlo",  # named the closed form's Q=nan
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["certified", "--set", "rho=1e308", *(a for k, v in _SMALL.items() for a in ("--set", f"{k}={v}"))]
            + ["--pgd-samples", "50", "--mc-samples", "20", "--pgd-test-steps", "2"],
            3,
            "all 2 replicas of the standard, adversarial, lipschitz trainings diverged",  # was a numpy stack error
            marks=pytest.mark.slow,
        ),
    ],
    ids=[
        "compare-defences-unstable-ode",
        "verify-non-finite-theory",
        "transfer-ode-domain",
        "transfer-all-diverged",
        "certified-all-diverged",
    ],
)
def test_values_past_the_checks_end_in_one_line(argv, rc, needle, tmp_path, capsys):
    """Values every check accepts but the model cannot follow: one line and a non-zero exit, never NaN tables
    with exit 0, a traceback or a run of minutes."""
    got = main([*argv, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert got == rc and err.count("\n") == 1 and needle in err and "Traceback" not in err, err
