"""Replicas (and the lanes of a grid) spread over several host devices give the same bits as one device."""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r"""
import sys
import jax, numpy as np
from jaxadv import ModelParams, simulate
mc = simulate(jax.random.key(3), ModelParams(eps=0.5), N=40, alpha_max=0.5, n_save=2, replicas=4)
# a grid: 3 points x 3 replicas = 9 lanes, padded to a multiple of the device count
g = simulate(jax.random.key(4), ModelParams(eps=np.array([0.0, 0.5, 1.0])), N=40, alpha_max=0.5, n_save=2,
             replicas=3)
np.save(sys.argv[1], np.concatenate([np.stack([mc.R, mc.b, mc.norm]).ravel(),
                                     np.stack([g.R, g.b, g.norm]).ravel()]))
print(jax.local_device_count())
"""


def _run(out, devices):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == str(devices)
    return np.load(out)


def test_two_host_devices_same_bits_as_one(tmp_path):
    one = _run(tmp_path / "one.npy", 1)
    two = _run(tmp_path / "two.npy", 2)
    np.testing.assert_array_equal(one, two)
