"""Sharding over devices: 8 fake CPU devices in a subprocess give the same numbers as one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxadv import ModelParams, make_sweep_config, simulate, sweep
from jaxadv.sharding import pad_batch, padded_size, shard_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jaxadv import ModelParams, make_sweep_config, simulate, sweep
    from jaxadv.sharding import shard_batch
    out = sys.argv[1]
    assert jax.device_count() == 8, jax.device_count()
    x = shard_batch(np.arange(10.0))
    mc = simulate(jax.random.key(7), ModelParams(eps=0.5), N=64, alpha_max=1.0, n_save=2, replicas=5)
    cfg = make_sweep_config({"eps": [0.0, 0.5, 1.0], "prior": [0.5, 0.7]}, alpha_max=30.0, n_save=3, dt=0.5, chunk=4)
    res = sweep(cfg)
    np.savez(out, R=mc.R, b=mc.b, sR=res.R, sb=res.b)
    # a checkpoint written on 8 devices (5 replicas padded to 8), interrupted after 2 of 4 intervals
    from jaxadv.mc import driver as montecarlo
    real = montecarlo._advance
    calls = []
    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    montecarlo._advance = flaky
    try:
        from jaxadv.app.checkpoint import simulate_resumable
        simulate_resumable(jax.random.key(9), ModelParams(eps=0.5), N=64, alpha_max=2.0, n_save=4, replicas=5,
                           checkpoint=sys.argv[2], checkpoint_every=0.0)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"n_shards": len(x.sharding.device_set), "len": int(x.shape[0])}))
""")


def test_padding_helpers():
    assert padded_size(5, 8) == 8 and padded_size(16, 8) == 16 and padded_size(17, 8) == 24
    with pytest.raises(ValueError, match="n=0"):
        padded_size(0)
    keys = jax.random.split(jax.random.key(0), 3)
    padded = pad_batch((np.arange(3.0), keys), 8)
    np.testing.assert_array_equal(padded[0], [0, 1, 2, 2, 2, 2, 2, 2])
    assert padded[1].shape == (8,)
    # one device: unchanged object
    x = np.arange(3.0)
    if jax.device_count() == 1:
        assert shard_batch(x) is x


@pytest.mark.slow  # two host devices: tests/test_sharding_host_devices.py, in the default suite
def test_eight_devices_match_one_device(tmp_path, monkeypatch):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp_path / "sharded.npz"
    ck = tmp_path / "ck.npz"
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), str(ck)], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info == {"n_shards": 8, "len": 16}  # padded to a multiple of 8 and spread over all 8
    z = np.load(out)

    mc = simulate(jax.random.key(7), ModelParams(eps=0.5), N=64, alpha_max=1.0, n_save=2, replicas=5)
    # Monte Carlo: bitwise equal (each replica runs the same operations on its device)
    np.testing.assert_array_equal(z["R"], mc.R)
    np.testing.assert_array_equal(z["b"], mc.b)
    cfg = make_sweep_config({"eps": [0.0, 0.5, 1.0], "prior": [0.5, 0.7]}, alpha_max=30.0, n_save=3, dt=0.5, chunk=4)
    res = sweep(cfg)
    # ODE sweep: chunks of 4 padded to 8 on 8 devices; equal to round-off (bitwise measured, 1e-14 allowed)
    np.testing.assert_allclose(z["sR"], res.R, rtol=0, atol=1e-14)
    np.testing.assert_allclose(z["sb"], res.b, rtol=0, atol=1e-14)
    print("max |dR| sweep:", float(np.max(np.abs(z["sR"] - res.R))))
    # the 8-device checkpoint resumes on this device count and finishes with the same bits
    with np.load(ck) as c:
        assert int(c["k"]) == 2 and c["state_0"].shape[0] == 5  # saved without the padding rows
    kw = dict(N=64, alpha_max=2.0, n_save=4, replicas=5)
    from jaxadv.mc import driver as montecarlo

    real, calls = montecarlo._advance, []
    monkeypatch.setattr(montecarlo, "_advance", lambda *a, **k: calls.append(1) or real(*a, **k))
    from jaxadv.app.checkpoint import simulate_resumable

    resumed = simulate_resumable(jax.random.key(9), ModelParams(eps=0.5), checkpoint=str(ck), **kw)
    assert len(calls) == 2  # resumed at interval 2 of 4
    ref = simulate(jax.random.key(9), ModelParams(eps=0.5), **kw)
    np.testing.assert_array_equal(resumed.R, ref.R)
    np.testing.assert_array_equal(resumed.b, ref.b)
