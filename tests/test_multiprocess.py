"""Two processes of two CPU devices each (jax.distributed on 127.0.0.1) give the same bits as one
process: the Monte Carlo with both samplers, an interrupted and resumed Monte Carlo, an ODE sweep.

The reference is one process with four devices (the same split of the batch over devices: the
sweep's ODE is equal to one device only to round-off, see docs/multi_device.md; the Monte Carlo
is bitwise equal to one device as well, tests/test_sharding_host_devices.py)."""

import os
import socket
import subprocess
import sys

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
    "in use by another run" and process 0 timed out two minutes later. Now process 0 alone claims and writes;
    a second run with another configuration is refused on both, in one line, with the reason of process 0."""
    out = tmp_path / "shared"
    tiny = ["--set", "N=60", "--set", "replicas=8", "--set", "alpha_max=1", "--set", "n_save=2", "--quiet"]

    def both(*extra):
        port = _free_port()
        logs = [tmp_path / f"log_{len(list(tmp_path.glob('log_*')))}_{i}.txt" for i in range(2)]
        codes = _finish(
            [_cli(logs[i], 2, i, port, "run", "scenario1", *tiny, *extra, "--out", str(out)) for i in range(2)]
        )
        return codes, [p.read_text()[-2000:] for p in logs]

    codes, logs = both()
    assert codes == [0, 0], (codes, logs)
    assert {"ode.csv", "mc.csv", "config.json", "errors.png"} <= set(os.listdir(out))
    assert not (out / ".jaxadv.lock").exists()
    codes, logs = both("--set", "seed=7")
    assert codes == [2, 2], (codes, logs)
    for i, text in enumerate(logs):
        line = [x for x in text.splitlines() if x.startswith("jaxadv: error:")]
        assert len(line) == 1 and "holds the results of another run" in line[0], text
        assert ("decision of process 0" in line[0]) == (i == 1), line
