"""Time per replica-step of the exact reduced sampler against the full N-dimensional simulation.

Plain script: ``PYTHONPATH=. python benchmarks/reduced_vs_full.py [--replicas 1024] [--repeats 5]``.
Both samplers run in the same process at N = 100, 1000, 10000 (float32), through the jitted
advance kernel of :mod:`jaxadv.montecarlo`: a warm-up call (compile time reported apart), then
the median of ``repeats`` timed calls, each ended by ``block_until_ready``. The full sampler at
N = 10000 makes fewer steps (its cost per step is large). Writes
``benchmarks/results/reduced_vs_full_<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from jaxadv import ModelParams
from jaxadv.data import unit_direction
from jaxadv.losses import QUADRATIC
from jaxadv.montecarlo import SAMPLERS, _advance, _init
from jaxadv.params import as_array_params


def time_sampler(name, N, replicas, steps, repeats, dtype=jnp.float32):
    kernel = SAMPLERS[name]
    params = as_array_params(ModelParams(prior=0.7, v1=1.0, v2=2.0, eps=0.5), dtype)
    consts = unit_direction(N, dtype) if name == "full" else jnp.asarray(N, dtype)
    keys = jax.random.split(jax.random.key(0), replicas)
    pair = jax.vmap(jax.random.split)(keys)
    states, _ = _init(pair[:, 0], consts, jnp.asarray(0.0, dtype), jnp.asarray(0.0, dtype), False, kernel)
    states = jax.block_until_ready(states)

    def call(st, start):
        st, obs = _advance(pair[:, 1], st, params, consts, jnp.uint32(start), jnp.uint32(steps), QUADRATIC, kernel)
        jax.block_until_ready(obs)
        return st

    t = time.perf_counter()
    states = call(states, 0)
    first = time.perf_counter() - t
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        states = call(states, (r + 1) * steps)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"sampler": name, "N": N, "replicas": replicas, "steps": steps, "repeats": repeats,
            "compile_s": max(first - med, 0.0), "median_s": med, "min_s": min(times),
            "ns_per_replica_step": med / (replicas * steps) * 1e9}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reduced-steps", type=int, default=2000)
    ap.add_argument("--full-steps", default="200,50,5", help="steps of the full sampler at N=100,1000,10000")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    Ns = (100, 1000, 10000)
    full_steps = [int(s) for s in args.full_steps.split(",")]
    rows = []
    for N, fs in zip(Ns, full_steps):
        for name, steps in (("reduced", args.reduced_steps), ("full", fs)):
            row = time_sampler(name, N, args.replicas, steps, args.repeats)
            rows.append(row)
            print(f"{name:8s} N={N:6d}: {row['ns_per_replica_step']:10.1f} ns/replica-step "
                  f"(compile {row['compile_s']:.2f}s, median of {args.repeats} x {steps} steps)", flush=True)
    per = {(r["sampler"], r["N"]): r["ns_per_replica_step"] for r in rows}
    speedup = {str(N): per[("full", N)] / per[("reduced", N)] for N in Ns}
    flat = per[("reduced", Ns[-1])] / per[("reduced", Ns[0])]
    for N in Ns:
        print(f"speed-up at N={N}: {speedup[str(N)]:.0f}x")
    print(f"reduced cost ratio N={Ns[-1]} / N={Ns[0]}: {flat:.2f}")
    dev = jax.devices()[0]
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"reduced_vs_full_{dev.platform}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    info = {"benchmark": "reduced_vs_full", "device": str(dev), "platform": dev.platform,
            "cpu_count": os.cpu_count(), "jax_version": jax.__version__, "python": platform.python_version(),
            "dtype": "float32", "loss": "quadratic", "rows": rows, "speedup_full_over_reduced": speedup,
            "reduced_cost_ratio_largest_over_smallest_N": flat}
    with open(out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
