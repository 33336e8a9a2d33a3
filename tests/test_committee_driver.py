"""The committee's Monte Carlo on the project's driver: the same bits as the former one-jit run (kept
here as the reference), resumption after an interrupt bit for bit, the checkpoint file and the CLI."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import interrupting

from jaxadv.app import checkpoint as ckm
from jaxadv.committee import CommitteeParams, CommitteeSpec, two_cluster, xor
from jaxadv.committee import montecarlo as cmc
from jaxadv.committee.lipschitz import project_weights
from jaxadv.committee.ode import check_overlaps
from jaxadv.mc import driver


@functools.partial(jax.jit, static_argnames=("spec", "K", "N", "steps_per_save", "n_save", "given"))
def _reference_run(replica_keys, mixture, params, Q0, R0, b0, v0, spec, K, N, steps_per_save, n_save, given):
    """The former ``simulate_committee`` kernel: one jit, ``vmap`` over replicas of a ``scan`` over save
    intervals of a ``fori_loop`` over steps (no driver, no devices, no checkpoint)."""
    B = cmc.directions(mixture.centres.shape[1], N, mixture.centres.dtype)

    def one(rkey):
        k_init, k_run = jax.random.split(rkey)
        s0 = cmc.init(k_init, B, K, Q0 if given else None, R0, b0, v0)
        if spec.lipschitz is not None:
            s0 = s0._replace(W=project_weights(s0.W, s0.v, spec.lipschitz))

        def save(s, k):
            def body(i, st):
                mu = k * steps_per_save + i
                return cmc.step(jax.random.fold_in(k_run, mu), st, mixture, params, spec, B)[0]

            s = jax.lax.fori_loop(0, steps_per_save, body, s)
            return s, cmc.observe(s, B)

        _, obs = jax.lax.scan(save, s0, jnp.arange(n_save))
        return jax.tree.map(lambda a, z: jnp.concatenate([a[None], z]), cmc.observe(s0, B), obs)

    return jax.vmap(one)(replica_keys)


def reference(
    key, mixture, params, spec, *, N, alpha_max, n_save, replicas, Q0=None, R0=None, b0=None, v0=None, dtype=jnp.float32
):
    K, D = spec.K, mixture.n_directions
    given = Q0 is not None
    Q0, R0 = check_overlaps(K, D, Q0, R0, spec.normalise)
    b0 = np.zeros(K) if b0 is None else np.asarray(b0, float)
    v0 = np.full(K, 1.0 / K) if v0 is None else np.asarray(v0, float)
    steps = max(1, int(round(alpha_max * N / n_save)))
    cast = lambda z: jnp.asarray(z, dtype)
    obs = _reference_run(
        jax.random.split(key, replicas),
        type(mixture)(*map(cast, mixture)),
        CommitteeParams(*map(cast, params)),
        cast(Q0),
        cast(R0),
        cast(b0),
        cast(v0),
        spec,
        K,
        N,
        steps,
        n_save,
        given,
    )
    return [np.asarray(z) for z in obs]


CASES = {
    "fgm": (two_cluster(), CommitteeParams(eps=0.5), CommitteeSpec(K=2), {}),
    "pgd_random_start_logistic": (
        xor(),
        CommitteeParams(eps=0.7, eta_b=0.3),
        CommitteeSpec(K=2, attack="pgd", pgd_steps=3, pgd_random_start=True, loss="logistic"),
        {},
    ),
    "worst_given_start": (
        xor(),
        CommitteeParams(eps=0.4),
        CommitteeSpec(K=2, attack="worst"),
        {"Q0": np.eye(2), "R0": np.array([[0.3, 0.1], [0.0, -0.2]]), "dtype": jnp.float64},
    ),
    "trained_v_lipschitz": (
        two_cluster(prior=0.3),
        CommitteeParams(eps=0.3, eta_v=0.5, eta_b=0.2),
        CommitteeSpec(K=3, train_v=True, normalise=False, lipschitz=1.5),
        {"v0": np.array([0.6, -0.3, 0.2]), "b0": np.array([0.1, 0.0, -0.1])},
    ),
    "pgd_random_start_trained_v_lipschitz": (
        xor(),
        CommitteeParams(eps=0.6, eta_v=0.5, eta_b=0.2),
        CommitteeSpec(
            K=2,
            attack="pgd",
            pgd_steps=2,
            pgd_random_start=True,
            train_v=True,
            normalise=False,
            lipschitz=0.8,
            loss="logistic",
        ),
        {"v0": np.array([0.7, -0.4])},
    ),
}
DEFAULT_CASES = ("pgd_random_start_trained_v_lipschitz",)  # the others are slow (one compilation pair each)


@pytest.mark.parametrize(
    "name", [n if n in DEFAULT_CASES else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CASES)]
)
def test_driver_bits_equal_the_one_jit_reference(name):
    mixture, params, spec, extra = CASES[name]
    kw = dict(N=40, alpha_max=0.6, n_save=3, replicas=3, **extra)
    key = jax.random.key(7)
    mc = cmc.simulate_committee(key, mixture, params, spec, **kw)
    ref = reference(key, mixture, params, spec, **kw)
    for f, r in zip(("Q", "R", "b", "v"), ref, strict=True):
        np.testing.assert_array_equal(getattr(mc, f), r, err_msg=f)
    assert mc.finite.all()
    np.testing.assert_allclose(mc.alpha, np.arange(4) * 8 / 40)


# --- resumable: checkpoint, interrupt, resume ------------------------------------------------------

RUN = dict(N=40, alpha_max=0.6, n_save=4, replicas=3)
PGD = (
    xor(),
    CommitteeParams(eps=0.7, eta_b=0.3, eta_v=0.4),
    CommitteeSpec(K=2, attack="pgd", pgd_steps=2, pgd_random_start=True, train_v=True),
)


@pytest.fixture(scope="module")
def uninterrupted():
    return cmc.simulate_committee(jax.random.key(11), *PGD, **RUN)


def _interrupting(monkeypatch, kill_at):
    """``driver.dispatch`` raising KeyboardInterrupt at its call ``kill_at`` (as a Ctrl-C would)."""
    real = driver.dispatch
    monkeypatch.setattr(driver, "dispatch", interrupting(real, kill_at))
    return real


def test_interrupted_committee_run_resumes_bit_for_bit(tmp_path, monkeypatch, uninterrupted):
    ck = str(tmp_path / "mc_checkpoint.npz")
    real = _interrupting(monkeypatch, 2)
    with pytest.raises(ckm.Interrupted) as e:
        ckm.simulate_committee_resumable(jax.random.key(11), *PGD, checkpoint=ck, checkpoint_every=1e9, **RUN)
    assert e.value.done == 2 and e.value.total == 4 and e.value.checkpoint == ck
    monkeypatch.setattr(driver, "dispatch", real)
    with np.load(ck) as z:  # every observable and state leaf, the padding rows dropped
        assert int(z["k"]) == 2 and z["obs_0"].shape == (3, 5, 2, 2) and z["obs_1"].shape == (3, 5, 2, 2)
        assert z["state_0"].shape == (3, 2, 40) and np.isnan(z["obs_0"][:, 3:]).all()
    # another key gives another run (the sanity of the comparisons below)
    other = ckm.simulate_committee_resumable(jax.random.key(12), *PGD, checkpoint=ck + ".x", **RUN)
    assert not np.array_equal(other.Q, uninterrupted.Q)
    stats = {}
    res = ckm.simulate_committee_resumable(jax.random.key(11), *PGD, checkpoint=ck, stats=stats, **RUN)
    assert stats["resumed_from"] == 2 and stats["steps_this_session"] == 2 * 6
    for f in cmc.CommitteeMCResult._fields:
        np.testing.assert_array_equal(getattr(res, f), getattr(uninterrupted, f), err_msg=f)
    assert not os.path.exists(ck)


def test_committee_checkpoint_of_another_run_is_ignored(tmp_path, monkeypatch, uninterrupted):
    ck = str(tmp_path / "ck.npz")
    real = _interrupting(monkeypatch, 1)
    with pytest.raises(ckm.Interrupted):
        ckm.simulate_committee_resumable(jax.random.key(11), *PGD, checkpoint=ck, **RUN)
    monkeypatch.setattr(driver, "dispatch", real)
    assert os.path.exists(ck)
    # eps differs: another fingerprint, so the run starts afresh (and equals its plain run)
    p2 = PGD[1]._replace(eps=0.6)
    stats = {}
    res = ckm.simulate_committee_resumable(jax.random.key(11), PGD[0], p2, PGD[2], checkpoint=ck, stats=stats, **RUN)
    assert stats["resumed_from"] == 0
    np.testing.assert_array_equal(res.Q, cmc.simulate_committee(jax.random.key(11), PGD[0], p2, PGD[2], **RUN).Q)


# --- devices -------------------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r"""
import sys
import jax, numpy as np
from jaxadv.committee import CommitteeParams, CommitteeSpec, xor
from jaxadv.app.checkpoint import Interrupted, simulate_committee_resumable
from jaxadv.mc import driver
assert jax.device_count() == 2
records = (xor(), CommitteeParams(eps=0.7, eta_b=0.3, eta_v=0.4),
           CommitteeSpec(K=2, attack="pgd", pgd_steps=2, pgd_random_start=True, train_v=True))
run = dict(N=40, alpha_max=0.6, n_save=4, replicas=3)
mc = simulate_committee_resumable(jax.random.key(11), *records, **run, checkpoint=sys.argv[1] + ".ck.npz")
np.savez(sys.argv[1], Q=mc.Q, R=mc.R, b=mc.b, v=mc.v)
# a run interrupted after 2 of its 4 save intervals on these two devices: its checkpoint, for one device
real, calls = driver.dispatch, []
def dispatch(*a, **k):
    calls.append(1)
    if len(calls) == 3:
        raise KeyboardInterrupt
    return real(*a, **k)
driver.dispatch = dispatch
try:
    simulate_committee_resumable(jax.random.key(11), *records, **run, checkpoint=sys.argv[2], checkpoint_every=1e9)
    raise SystemExit("not interrupted")
except Interrupted as e:
    assert e.done == 2, e.done
"""


def test_two_host_devices_give_the_bits_of_one(tmp_path, uninterrupted):
    """Three replicas on two devices (padded to four, the padding dropped): the bits of one device. A run
    interrupted there resumes on one device (its checkpoint holds results, not a device layout) and ends with
    the same bits."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    out, ck = tmp_path / "two.npz", tmp_path / "two_devices.ck.npz"
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out), str(ck)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(out) as two:
        for f in ("Q", "R", "b", "v"):
            np.testing.assert_array_equal(two[f], getattr(uninterrupted, f), err_msg=f)
    assert jax.device_count() == 1
    stats = {}
    resumed = ckm.simulate_committee_resumable(jax.random.key(11), *PGD, checkpoint=str(ck), stats=stats, **RUN)
    assert stats["resumed_from"] == 2
    for f in cmc.CommitteeMCResult._fields:
        np.testing.assert_array_equal(getattr(resumed, f), getattr(uninterrupted, f), err_msg=f)


# --- the command line and the sweep ---------------------------------------------------------------

# the sizes of the command tests of tests/test_faults.py and tests/test_signals.py (their programs compiled once)
TINY = ["--set", "N=40", "--set", "alpha_max=0.6", "--set", "n_save=3", "--set", "replicas=2", "--quiet"]


def test_cli_interrupt_saves_mc_checkpoint_and_rerun_resumes(tmp_path, monkeypatch, capsys):
    from jaxadv.app.cli import main
    from jaxadv.app.config import load_any
    from jaxadv.app.io import read_csv
    from jaxadv.students.committee import resolve

    out = tmp_path / "c"
    real = _interrupting(monkeypatch, 1)
    assert main(["committee", "committee", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "1 of 3 save intervals saved" in err and "mc_checkpoint.npz" in err
    assert (out / "mc_checkpoint.npz").exists() and not (out / "mc.csv").exists()
    monkeypatch.setattr(driver, "dispatch", real)
    assert main(["committee", "committee", *TINY, "--out", str(out)]) == 0
    assert not (out / "mc_checkpoint.npz").exists()
    # the resumed means are those of the uninterrupted run of the same configuration
    cfg = load_any("committee", [a for a in TINY if a.startswith(("N=", "alpha", "n_", "rep"))], "committee")[1]
    _, mixture, params, spec = resolve(cfg)
    mc = cmc.simulate_committee(
        jax.random.key(cfg["seed"]),
        mixture,
        params,
        spec,
        N=40,
        alpha_max=0.6,
        n_save=3,
        replicas=2,
        Q0=cfg["Q0"],
        R0=cfg["R0"],
        b0=cfg["b0"],
    )
    got = read_csv(out / "mc.csv")
    for c, x in (("R_2_1_mean", mc.R[:, :, 1, 0]), ("Q_1_2_mean", mc.Q[:, :, 0, 1]), ("b_1_mean", mc.b[:, :, 0])):
        np.testing.assert_allclose(got[c], np.mean(x.astype(np.float64), axis=0), rtol=1e-12, atol=0, err_msg=c)


def test_sweep_interrupted_inside_a_point_resumes_bit_for_bit(tmp_path, monkeypatch):
    from jaxadv import committee_sweep, make_committee_sweep_config

    cfg = make_committee_sweep_config(
        {"eps": [0.0, 0.5]},
        {"preset": "committee"},
        alpha_max=0.6,
        n_save=3,
        dt=0.25,
        mc=True,
        ode=False,
        N=40,
        replicas=3,
    )
    ref = committee_sweep(cfg).table
    out = str(tmp_path / "s")
    real = _interrupting(monkeypatch, 4)  # point 0 done (3 intervals), point 1 after 1 interval
    with pytest.raises(ckm.Interrupted) as e:
        committee_sweep(cfg, out)
    assert e.value.done == 1 and os.path.exists(os.path.join(out, "mc_checkpoint.npz"))
    monkeypatch.setattr(driver, "dispatch", real)
    got = committee_sweep(cfg, out).table
    assert not os.path.exists(os.path.join(out, "mc_checkpoint.npz"))
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


_CLI = "import sys; from jaxadv.app.cli import main; sys.exit(main())"


@pytest.mark.slow
def test_sigterm_to_jaxadv_committee_saves_and_the_rerun_resumes_bit_for_bit(tmp_path):
    """A real SIGTERM to the command (as a batch system's kill): exit 130 with ``mc_checkpoint.npz``; the
    same command then resumes, and its ``mc.csv`` equals that of an uninterrupted run byte for byte."""
    import signal
    import time

    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["JAX_PLATFORMS"] = "cpu"
    args = [
        "committee",
        "committee",
        "--set",
        "N=1000",
        "--set",
        "alpha_max=16",
        "--set",
        "n_save=40",
        "--set",
        "replicas=8",
        "--quiet",
    ]
    cli = lambda out: [sys.executable, "-c", _CLI, *args, "--out", str(out)]
    proc = subprocess.Popen(cli(tmp_path / "a"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = tmp_path / "a" / "mc_checkpoint.npz"
    t0 = time.monotonic()
    while not ck.exists() and proc.poll() is None and time.monotonic() - t0 < 240:
        time.sleep(0.05)
    assert ck.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    assert "save intervals saved in" in err and ck.exists() and not (tmp_path / "a" / "mc.csv").exists()
    with np.load(ck) as z:
        assert 1 <= int(z["k"]) < 40
    for out in (tmp_path / "a", tmp_path / "b"):
        res = subprocess.run(cli(out), env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
    assert not ck.exists()
    assert (tmp_path / "a" / "mc.csv").read_bytes() == (tmp_path / "b" / "mc.csv").read_bytes()


def test_single_layer_checkpoint_of_the_stacked_layout_still_resumes(tmp_path, monkeypatch):
    """Checkpoints written before the loop served pytree observables hold them stacked in ``obs``
    (shape ``(5, replicas, P)``); they resume to the same bits."""
    from jaxadv import ModelParams
    from jaxadv.app.io import write_npz

    p, kw = ModelParams(eps=0.5), dict(N=30, alpha_max=1.0, n_save=4, replicas=3)
    ref = ckm.simulate_resumable(jax.random.key(2), p, **kw)
    ck = str(tmp_path / "ck.npz")
    real = _interrupting(monkeypatch, 2)
    with pytest.raises(ckm.Interrupted):
        ckm.simulate_resumable(jax.random.key(2), p, checkpoint=ck, **kw)
    monkeypatch.setattr(driver, "dispatch", real)
    with np.load(ck) as z:
        files = {k: z[k] for k in z.files}
    obs = np.stack([files.pop(f"obs_{i}") for i in range(5)])
    assert obs.shape == (5, 3, 5)
    write_npz(ck, obs=obs, **files)
    stats = {}
    res = ckm.simulate_resumable(jax.random.key(2), p, checkpoint=ck, stats=stats, **kw)
    assert stats["resumed_from"] == 2
    for f in ("R", "b", "norm", "norm1", "norm_inf"):
        np.testing.assert_array_equal(getattr(res, f), getattr(ref, f), err_msg=f)


def test_a_signal_after_the_monte_carlo_keeps_it(tmp_path, monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) during the ODE deleted the finished Monte Carlo (its checkpoint went when the MC
    ended, ``mc.csv`` was written after the ODE): the rerun simulated again from interval 0. Now the finished
    run stays in the checkpoint until every file is written; the rerun reads it back (no interval simulated)
    and writes the files of an uninterrupted run."""
    from jaxadv import committee as cm
    from jaxadv.app.cli import main

    whole, out = tmp_path / "whole", tmp_path / "c"
    assert main(["committee", "committee", *TINY, "--out", str(whole)]) == 0
    real_ode = cm.solve_committee_ode

    def ode_interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cm, "solve_committee_ode", ode_interrupted)
    assert main(["committee", "committee", *TINY, "--out", str(out)]) == 130
    assert "3 of 3 save intervals saved" in capsys.readouterr().err
    assert (out / "mc_checkpoint.npz").exists() and not (out / "mc.csv").exists()
    monkeypatch.setattr(cm, "solve_committee_ode", real_ode)
    calls = []
    real = driver.dispatch
    monkeypatch.setattr(driver, "dispatch", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["committee", "committee", *TINY, "--out", str(out)]) == 0
    assert calls == [] and not (out / "mc_checkpoint.npz").exists()
    for f in ("mc.csv", "ode.csv"):
        assert (out / f).read_bytes() == (whole / f).read_bytes(), f
