"""One process of the multi-process test (tests/test_multiprocess.py): the Monte Carlo with both samplers,
an interrupted and resumed Monte Carlo and an ODE sweep, results saved to OUT/result_<process>.npz.

    python tests/multiprocess_worker.py OUT NUM_PROCESSES PROCESS_ID PORT [committee | pair]

With ``committee`` (``pair``) it runs the committee's (the surrogate--target pair's, with the transfer
measured at the save points) Monte Carlo instead: plain, and interrupted then resumed.
"""

import contextlib
import os
import sys
import time

t0 = time.perf_counter()

out, num_processes, process_id, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

import jax  # noqa: E402

from jaxadv import distributed  # noqa: E402

if num_processes > 1:
    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from helpers import interrupting  # noqa: E402

import jaxadv as ja  # noqa: E402
from jaxadv.app import checkpoint  # noqa: E402
from jaxadv.mc import driver  # noqa: E402

print(f"{time.perf_counter() - t0:.1f}s imported", flush=True)
res = {"process_count": jax.process_count(), "device_count": jax.device_count()}


def interrupted_then_resumed(run, name):
    """``run(checkpoint)`` interrupted in save interval 2 (its third dispatch; a checkpoint after every
    interval), then run again from the checkpoint; records the save intervals dispatched and whether the
    checkpoint existed in between, and returns the resumed result."""
    ck, advance = os.path.join(out, name), driver.dispatch
    driver.dispatch = interrupting(advance, 2)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run(ck)
        res["checkpoint_seen"] = os.path.exists(ck)
        calls = driver.dispatch.args
        result = run(ck)
    finally:
        driver.dispatch = advance
    res["resumed_calls"] = np.asarray([a[2] for a in calls])
    return result


if sys.argv[5:] == ["committee"]:
    from jaxadv.committee import CommitteeParams, CommitteeSpec, xor

    args = (
        xor(),
        CommitteeParams(eps=0.6, eta_v=0.4),
        CommitteeSpec(K=2, attack="pgd", pgd_steps=2, pgd_random_start=True, train_v=True),
    )
    kwargs = dict(N=40, alpha_max=0.8, n_save=4, replicas=6)  # 6 replicas on 4 devices: padded
    mc = ja.committee.simulate_committee(jax.random.key(3), *args, **kwargs)
    res.update(plain_Q=mc.Q, plain_R=mc.R, plain_v=mc.v)
    mc = interrupted_then_resumed(
        lambda ck: checkpoint.simulate_committee_resumable(
            jax.random.key(3), *args, checkpoint=ck, checkpoint_every=-1.0, **kwargs
        ),
        "committee.ckpt.npz",
    )
    res.update(resumed_Q=mc.Q, resumed_R=mc.R, resumed_b=mc.b, resumed_v=mc.v)
    np.savez(os.path.join(out, f"result_{process_id}.npz"), **res)
    print(f"{time.perf_counter() - t0:.1f}s committee: done", process_id, flush=True)
    sys.exit(0)
if sys.argv[5:] == ["pair"]:
    from jaxadv.mc.pair import simulate_pair
    from jaxadv.model.pair import PairSpec, pair_params

    spec = PairSpec("blackbox")
    args = (jax.random.key(4), pair_params(ja.ModelParams(prior=0.6), eps_s=0.2, eps_t=0.5, spec=spec), spec)
    kwargs = dict(N=40, alpha_max=0.8, n_save=4, replicas=6, R0=(0.1, 0.3, 0.05), eps_grid=[0.3, 1.0], n_test=20)
    mc = simulate_pair(*args, **kwargs)
    res.update(plain_Q=mc.obs.Q, plain_R_t=mc.obs.R_t, plain_wrong=mc.wrong, plain_right=mc.right)
    mc = interrupted_then_resumed(
        lambda ck: checkpoint.simulate_pair_resumable(*args, checkpoint=ck, checkpoint_every=-1.0, **kwargs),
        "pair.ckpt.npz",
    )
    res.update(resumed_Q=mc.obs.Q, resumed_R_t=mc.obs.R_t, resumed_wrong=mc.wrong, resumed_right=mc.right)
    np.savez(os.path.join(out, f"result_{process_id}.npz"), **res)
    print(f"{time.perf_counter() - t0:.1f}s pair: done", process_id, flush=True)
    sys.exit(0)
p = ja.ModelParams(eps=0.5)
for sampler, replicas in (("full", 6), ("reduced", 5)):  # not multiples of the 4 devices: padded
    mc = ja.simulate(jax.random.key(3), p, N=40, alpha_max=0.5, n_save=2, replicas=replicas, sampler=sampler)
    res[f"{sampler}_R"], res[f"{sampler}_b"], res[f"{sampler}_norm"] = mc.R, mc.b, mc.norm
    print(f"{time.perf_counter() - t0:.1f}s {sampler}", flush=True)

# interrupted after save interval 2 (a checkpoint after every interval), then resumed
kwargs = dict(N=40, alpha_max=1.0, n_save=4, replicas=6)
mc = interrupted_then_resumed(
    lambda ck: checkpoint.simulate_resumable(jax.random.key(5), p, checkpoint=ck, checkpoint_every=-1.0, **kwargs),
    "mc.ckpt.npz",
)
res["resumed_R"], res["resumed_b"] = mc.R, mc.b
print(f"{time.perf_counter() - t0:.1f}s resumed", flush=True)

cfg = ja.make_sweep_config({"eps": [0.0, 0.4, 0.8, 1.2, 1.6]}, alpha_max=4.0, n_save=2, chunk=3)
sw = ja.sweep(cfg, os.path.join(out, "sweep"))
res["sweep_R"], res["sweep_b"] = sw.R, sw.b
np.savez(os.path.join(out, f"result_{process_id}.npz"), **res)
print(f"{time.perf_counter() - t0:.1f}s sweep: done", process_id, flush=True)
