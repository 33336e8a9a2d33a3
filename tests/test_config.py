"""One configuration for every student: the table of keys, sections, the student key, refusals that name the
key, and ``jaxadv run`` running the committee and the pair with the same files as their own commands."""

import math
import os
import subprocess
import sys

import pytest

from jaxadv import defaults
from jaxadv.app.cli import main
from jaxadv.app.config import KEYS, STUDENTS, keys_of, load_any, load_config

# the sizes of the command tests of tests/test_faults.py and tests/test_signals.py (their ODE programs compiled once)
TINY = ["--set", "N=40", "--set", "replicas=2", "--set", "n_save=3", "--set", "alpha_max=0.6", "--set", "x64=true"]


def _jaxadv(*argv, cwd=None):
    """The console script, as a user runs it (on one device, as the in-process runs: the programs the same
    configuration compiled in this process are read back from the persistent compilation cache). The device
    count an in-process ``main`` put in ``XLA_FLAGS`` (for a JAX that had started already) is left out: with
    it the script ran on two devices, compiled programs of its own and read none back."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXADV_HOST_DEVICES": "1"}
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if not f.startswith("--xla_force_host_platform_device_count"))
    return subprocess.run(["jaxadv", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _same_files(a, b, names):
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_table_is_one_source():
    """Every student reads the run keys with the defaults of ``jaxadv.defaults``; each (student, key) once."""
    for s in STUDENTS:
        keys = keys_of(s)
        assert keys["N"].default == defaults.N and keys["n_save"].default == defaults.N_SAVE
        assert keys["replicas"].default == defaults.REPLICAS and keys["alpha_max"].default == defaults.ALPHA_MAX
        assert keys["dt"].default == defaults.DT and keys["seed"].default == defaults.SEED
        rows = [(k.name, s) for k in KEYS if s in k.students.split()]
        assert len(rows) == len(set(rows)), s
    assert all(k.section in ("data", "student", "rule", "run") and k.doc for k in KEYS)


def test_sections_and_flat_keys_read_the_same(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('preset = "scenario2"\nprior = 0.6\neps = 0.5\nalpha_max = 3.0\nR0 = 0.1\n')
    sec = tmp_path / "flat2.toml"
    sec.write_text(
        'preset = "scenario2"\n[data]\nprior = 0.6\n[rule]\neps = 0.5\n[run]\nalpha_max = 3.0\n[student]\nR0 = 0.1\n'
    )
    a, b = load_config(str(flat)), load_config(str(sec))
    assert a.name == "flat" and b.name == "flat2"
    assert a.prior == b.prior == 0.6 and a.eps == b.eps == 0.5 and a.R0 == b.R0 == 0.1 and a.alpha_max == 3.0
    assert load_config("scenario2", ["prior=0.6", "eps=0.5", "alpha_max=3", "R0=0.1"]) == a.__class__(
        **{**a.__dict__, "name": "scenario2"}
    )
    com = tmp_path / "c.toml"
    # TOML cannot hold a key and a table both named student: with a [student] section, the choice goes inside
    com.write_text('[student]\nstudent = "committee"\nK = 3\n[rule]\neps = 0.2\nattack = "worst"\n[run]\nN = 300\n')
    student, cfg = load_any(str(com))
    assert student == "committee" and cfg["K"] == 3 and cfg["eps"] == 0.2 and cfg["attack"] == "worst"
    assert cfg["N"] == 300 and cfg["n_save"] == defaults.N_SAVE and cfg["ode_start"] == "mc"
    pair = tmp_path / "p.toml"
    pair.write_text('student = "pair"\n[rule]\neps_t = [0.0, 0.5]\n[data]\nprior = 0.6\n')
    student, cfg = load_any(str(pair))
    assert student == "pair" and cfg["eps_t"] == [0.0, 0.5] and cfg["prior"] == 0.6


def test_presets_keep_their_sizes():
    """The presets pin the sizes they had before the defaults were shared (their outputs stay the same)."""
    assert {k: load_any("committee")[1][k] for k in ("N", "alpha_max", "n_save", "replicas")} == {
        "N": 500,
        "alpha_max": 20.0,
        "n_save": 20,
        "replicas": 64,
    }
    assert {k: load_any("transfer")[1][k] for k in ("N", "alpha_max", "n_save", "replicas", "n_test")} == {
        "N": 500,
        "alpha_max": 20.0,
        "n_save": 10,
        "replicas": 32,
        "n_test": 500,
    }
    assert load_any("xor")[1]["n_save"] == 20 and load_any("scenario1")[1].replicas == 128


BAD = [
    (["run", "scenario1", "--set", "K=3"], ["K", "committee"]),
    (["run", "xor", "--set", "eps_min=1"], ["eps_min", "unit"]),
    (["run", "scenario1", "--set", "eps_min=0.3"], ["eps_min=0.3", "eps_dist='fixed'"]),
    (["run", "scenario1", "--set", "hinge_margin=0.3"], ["hinge_margin=0.3", "loss='quadratic'"]),
    (["run", "committee", "--set", "pgd_steps=3"], ["pgd_steps=3", "attack='fgm'"]),
    (["run", "committee", "--set", "hinge_margin=0.3"], ["hinge_margin=0.3", "loss='quadratic'"]),
    (["run", "committee", "--set", "student=unit"], ["student='unit'", "committee"]),
    (["run", "transfer", "--set", "seed=9223372036854775808"], ["seed=9223372036854775808"]),
    (["run", "xor", "--set", "seed=1e30"], ["seed="]),
    (["run", "transfer", "--set", "eps_t=0,nan"], ["eps_t=nan"]),
    (["run", "committee", "--set", "N=1e15"], ["GiB", "replicas"]),
    (["run", "transfer", "--set", "alpha_max=1e8"], ["alpha_max=100000000.0", "step counter"]),
    (["run", "xor", "--set", "alpha_max=1e12"], ["RK4 steps"]),
    (["committee", "scenario1"], ["student='unit'", "committee"]),
    (["transfer", "xor"], ["student='committee'", "pair"]),
    (["run", "nosuch"], ["'nosuch'", "xor", "transfer"]),
]


@pytest.mark.parametrize("argv,needles", BAD)
def test_bad_keys_are_one_line_naming_the_key(tmp_path, capsys, argv, needles):
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxadv: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    assert not (tmp_path / "o").exists()  # refused before the folder is claimed


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[data]\neps = 1.0\n", "eps belongs in [rule], not [data]"),
        ("[model]\nprior = 0.6\n", "[model]: not a section"),
        ('student = "robot"\n', "student='robot' is not one of"),
        ("prior = 0.6\n[data]\nprior = 0.7\n", "prior is given twice"),
        ("[mixture]\ncentres = [[1.0]]\n", "[mixture] is read by the committee only"),
        ('[student]\nstudent = "committee"\nK = 2.5\n', "K=2.5 is not an integer"),
    ],
)
def test_bad_sections(tmp_path, capsys, text, needle):
    (tmp_path / "c.toml").write_text(text)
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_console_script_refuses_a_key_of_another_student(tmp_path):
    r = _jaxadv("run", "scenario1", "--set", "K=3", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown key 'K' for student='unit' (a key of the committee student)" in r.stderr, r.stderr


@pytest.mark.parametrize("preset", ["committee", pytest.param("xor", marks=pytest.mark.slow)])  # xor: K = 4, 90 s
def test_jaxadv_run_committee_writes_what_jaxadv_committee_writes(tmp_path, preset):
    """A TOML with sections and student = "committee" through `jaxadv run` (the console script) against
    `jaxadv committee PRESET`: the same Monte Carlo and ODE files, bit for bit."""
    toml = tmp_path / "x.toml"
    toml.write_text(
        f'preset = "{preset}"\nstudent = "committee"\n[run]\nN = 40\nreplicas = 2\nn_save = 3\nalpha_max = 0.6\n'
        "x64 = true\n"
    )
    assert main(["committee", preset, *TINY, "--out", str(tmp_path / "alias"), "--quiet"]) == 0
    r = _jaxadv("run", str(toml), "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 0, r.stderr
    _same_files(tmp_path / "run", tmp_path / "alias", ["mc.csv", "ode.csv"])
    assert {p.name for p in (tmp_path / "run").iterdir()} == {p.name for p in (tmp_path / "alias").iterdir()}


def test_jaxadv_run_transfer_writes_what_jaxadv_transfer_writes(tmp_path):
    # the sizes of the transfer runs of tests/test_signals.py and tests/test_faults.py (float32, n_test=20), whose
    # compiled programs these runs reuse
    tiny = [*TINY[:-2], "--set", "n_test=20"]
    assert main(["transfer", "transfer", *tiny, "--out", str(tmp_path / "alias"), "--quiet"]) == 0
    r = _jaxadv("run", "transfer", *tiny, "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 0, r.stderr
    _same_files(tmp_path / "run", tmp_path / "alias", ["mc.csv", "ode.csv", "eps.csv"])


PROBE_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e30", "-1e-300", "abc", "", "1.5", "true", "[1,2]", "1,2", "0x10"]


@pytest.mark.parametrize("preset", ["committee", "transfer"])
def test_every_key_of_every_student_refuses_bad_values_naming_itself(preset):
    """Every key of the committee and the pair against 14 hostile values (the unit's: test_faults.py): each is
    refused with a ValueError naming the key, or accepted as finite values; nothing else escapes."""
    student, _ = load_any(preset)
    escaped, refused = [], 0
    for key in sorted(set(keys_of(student)) - {"student", "name"}):
        for value in PROBE_VALUES:
            try:
                cfg = load_any(preset, [f"{key}={value}"])[1]
            except ValueError as e:
                refused += 1
                if key.removesuffix("0") not in str(e):  # the records name an initial overlap R_s0 R_s
                    escaped.append((key, value, f"message without the key: {e}"))
                continue
            except Exception as e:  # noqa: BLE001 -- the point of the probe
                escaped.append((key, value, f"{type(e).__name__}: {e}"))
                continue
            got = cfg[key]
            flat = got if isinstance(got, list) else [got]
            while flat and isinstance(flat[0], list):
                flat = [x for row in flat for x in row]
            if any(isinstance(x, float) and not math.isfinite(x) for x in flat):
                escaped.append((key, value, f"accepted a non-finite {got}"))
    assert not escaped, escaped
    assert refused > 200


def test_presets_lists_every_student(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, student in [("scenario1", "unit"), ("xor", "committee"), ("blackbox", "pair")]:
        assert f"  {name:<11} {student:<10} " in out
    assert sys.modules.get("jaxadv.app.config") is not None
