"""Two processes of two CPU devices each (jax.distributed on 127.0.0.1) give the same bits as one
process: the Monte Carlo with both samplers, an interrupted and resumed Monte Carlo, an ODE sweep.

The reference is one process with four devices (the same split of the batch over devices: the
sweep's ODE is equal to one device only to round-off, see docs/multi_device.md; the Monte Carlo
is bitwise equal to one device as well, tests/test_sharding_host_devices.py)."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, num_processes, process_id, port, devices, *extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    # the log stays open while the worker runs; _finish closes it (proc.log)
    log = open(os.path.join(out, f"log_{process_id}.txt"), "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, WORKER, str(out), str(num_processes), str(process_id), str(port), *extra],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log = log
    return proc


def _finish(procs):
    """Wait for every process (one shared deadline); kill the stragglers; return their exit codes."""
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        codes.append("timeout")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.log.close()
    return codes


def _log(out, i):
    with open(os.path.join(out, f"log_{i}.txt")) as f:
        return f.read()[-3000:]


def _run_and_compare(tmp_path, *extra):
    """The worker in one process of four devices and in two processes of two; every result of each of the two
    processes bitwise equal to the one process's. Returns the one-process results and the two-process folder."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    port = _free_port()
    procs = [_start(one, 1, 0, 0, 4, *extra)] + [_start(two, 2, i, port, 2, *extra) for i in range(2)]
    codes = _finish(procs)
    if codes[0] == 0 and any(c != 0 for c in codes[1:]):
        logs = _log(two, 0) + _log(two, 1)
        if "distributed" in logs and ("not supported" in logs or "Unimplemented" in logs):
            pytest.skip(f"jax.distributed cannot run on this platform: {logs[-500:]}")
    assert codes == [0, 0, 0], (codes, _log(one, 0), _log(two, 0), _log(two, 1))
    ref = np.load(one / "result_0.npz")
    assert int(ref["device_count"]) == 4 and int(ref["process_count"]) == 1
    for i in range(2):
        got = np.load(two / f"result_{i}.npz")
        assert int(got["process_count"]) == 2 and int(got["device_count"]) == 4
        for k in ref.files:
            if k != "process_count":
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"process {i}: {k}")
    # the run was resumed from the checkpoint of interval 2 (dispatched for 0, 1, 2, then 2, 3)
    np.testing.assert_array_equal(ref["resumed_calls"], [0, 1, 2, 2, 3])
    assert bool(ref["checkpoint_seen"])
    return ref, two


def test_two_processes_same_bits_as_one(tmp_path):
    ref, two = _run_and_compare(tmp_path)
    # files: written by process 0 (once), read by all; the checkpoint is removed at the end
    assert sorted(os.listdir(two / "sweep")) == ["chunks", "config.json", "sweep.csv", "sweep.npz"]
    assert not (two / "mc.ckpt.npz").exists()


@pytest.mark.slow
def test_committee_on_two_processes_same_bits_as_one(tmp_path):
    """The committee's Monte Carlo on the driver: plain and interrupted-then-resumed, two processes of two
    devices against one process of four (and the plain run against the resumed one)."""
    ref, two = _run_and_compare(tmp_path, "committee")
    for k in ("Q", "R"):
        np.testing.assert_array_equal(ref[f"resumed_{k}"], ref[f"plain_{k}"], err_msg=k)
    assert not (two / "committee.ckpt.npz").exists()


@pytest.mark.slow
def test_pair_on_two_processes_same_bits_as_one(tmp_path):
    """The surrogate--target pair on the driver, its transfer measurement included: plain and
    interrupted-then-resumed, two processes of two devices against one process of four (and the plain run
    against the resumed one)."""
    ref, two = _run_and_compare(tmp_path, "pair")
    for k in ("Q", "R_t", "wrong", "right"):
        np.testing.assert_array_equal(ref[f"resumed_{k}"], ref[f"plain_{k}"], err_msg=k)
    assert not (two / "pair.ckpt.npz").exists()


def _cli(out_log, num_processes, process_id, port, *argv):
    """``jaxadv --coordinator ... COMMAND ...`` through the console script, one process of two CPU devices."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    log = open(out_log, "w")  # noqa: SIM115 -- closed by _finish
    dist = [
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        str(num_processes),
        "--process-id",
        str(process_id),
    ]
    proc = subprocess.Popen(
        ["jaxadv", *dist, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log = log
    return proc


def test_console_script_two_processes_share_one_out(tmp_path):
    """Both processes given the same ``--out`` (one host, or a shared file system): process 1 stopped with
    "in use by another run" and process 0 timed out two minutes later. Now process 0 alone claims and writes.

    A process killed mid-run: process 0 waited in JAX's shutdown barrier for the heartbeat timeout and then
    aborted (79 s, exit 134, a traceback). Now it ends within seconds in one line, its lock released and the
    checkpoint kept; both rerun and resume to the end. A second run with another configuration is refused on
    both, in one line, with the reason of process 0."""
    out = tmp_path / "shared"
    # 40 save intervals: the checkpoint is written after the first, so process 1 dies with most still to run
    size = ["--set", "N=100", "--set", "replicas=8", "--set", "alpha_max=40", "--set", "n_save=40", "--quiet"]

    def start(*extra):
        port = _free_port()
        logs = [tmp_path / f"log_{len(list(tmp_path.glob('log_*')))}_{i}.txt" for i in range(2)]
        procs = [_cli(logs[i], 2, i, port, "run", "scenario1", *size, *extra, "--out", str(out)) for i in range(2)]
        return procs, logs

    def both(*extra):
        procs, logs = start(*extra)
        return _finish(procs), [p.read_text()[-2000:] for p in logs]

    procs, logs = start()
    checkpoint = out / "mc_checkpoint.npz"
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint.exists() and time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    procs[1].kill()
    t0 = time.monotonic()
    codes = _finish(procs)
    waited = time.monotonic() - t0
    text = logs[0].read_text()
    assert codes[0] == 3 and waited < 30, (codes, waited, text[-2000:])
    line = [x for x in text.splitlines() if x.startswith("jaxadv: error:")]
    assert len(line) == 1 and "process 0 of 2 stopped" in line[0] and "resume" in line[0], text[-2000:]
    assert "Traceback" not in text, text[-2000:]
    assert checkpoint.exists() and not (out / "mc.csv").exists() and not (out / ".jaxadv.lock").exists()

    codes, logs = both()
    assert codes == [0, 0], (codes, logs)
    assert "steps this session after a resume" in logs[0], logs[0]
    assert {"ode.csv", "mc.csv", "config.json", "errors.png"} <= set(os.listdir(out))
    assert not checkpoint.exists() and not (out / ".jaxadv.lock").exists()
    codes, logs = both("--set", "seed=7")
    assert codes == [2, 2], (codes, logs)
    for i, text in enumerate(logs):
        line = [x for x in text.splitlines() if x.startswith("jaxadv: error:")]
        assert len(line) == 1 and "holds the results of another run" in line[0], text
        assert ("decision of process 0" in line[0]) == (i == 1), line


UNIT_SWEEP = """name = "mp"
alpha_max = 1.0
n_save = 2
mc = true
N = 40
replicas = 4
[base]
rho = 2.0
[grid]
eps = [0.0, 0.5]
"""
COMMITTEE_SWEEP = UNIT_SWEEP.replace("rho = 2.0", 'preset = "xor"\nK = 2\nR0 = [[0.4, 0.1], [-0.3, 0.2]]')
COMMITTEE_SWEEP = COMMITTEE_SWEEP.replace("R0 = ", "Q0 = [[1.0, -0.1], [-0.1, 1.0]]\nb0 = [0.1, -0.1]\nR0 = ")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, table",
    [
        (["run", "scenario2", "--set", "sampler=reduced", "--set", "N=60", "--set", "replicas=6"], "mc.csv"),
        (["committee", "xor", "--set", "N=40", "--set", "replicas=6"], "mc.csv"),
        (["sweep", "UNIT"], "sweep.csv"),
        (["sweep", "COMMITTEE"], "sweep.csv"),
    ],
    ids=["reduced-sampler", "committee", "sweep", "committee-sweep"],
)
def test_console_script_two_processes_write_what_one_writes(tmp_path, argv, table):
    """Through the console script with one shared ``--out``: the reduced sampler, a committee and both kinds of
    sweep (Monte Carlo at every point) on two processes of two CPU devices write the table that one process
    of two devices writes, and only process 0 writes."""
    files = {"UNIT": UNIT_SWEEP, "COMMITTEE": COMMITTEE_SWEEP}
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    argv = [str(tmp_path / f"{a}.toml") if a in files else a for a in argv]
    small = [] if argv[0] == "sweep" else ["--set", "alpha_max=0.5", "--set", "n_save=2"]
    args = [*argv, *small, "--quiet", "--no-plots"] if argv[0] == "sweep" else [*argv, *small, "--quiet"]
    port = _free_port()
    logs = [tmp_path / f"log_{i}.txt" for i in range(3)]
    procs = [_cli(logs[i], 2, i, port, *args, "--out", str(tmp_path / "two")) for i in range(2)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    with open(logs[2], "w") as log:
        one = subprocess.run(
            ["jaxadv", *args, "--out", str(tmp_path / "one")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT,
        )
    codes = _finish(procs)
    texts = [p.read_text()[-2000:] for p in logs]
    assert codes == [0, 0] and one.returncode == 0, (codes, one.returncode, texts)
    assert (tmp_path / "two" / table).read_bytes() == (tmp_path / "one" / table).read_bytes()
