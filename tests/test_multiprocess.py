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
