"""Time per replica-step of the exact reduced sampler against the full N-dimensional simulation.

Plain script: ``PYTHONPATH=. python benchmarks/reduced_vs_full.py [--replicas 1024] [--repeats 5]``.
Both samplers run in the same process at N = 100, 1000, 10000 (float32), through the jitted
advance kernel of :mod:`jaxadv.mc.driver`: a warm-up call (compile time reported apart), then
the median of ``repeats`` timed calls, each ended by ``block_until_ready``; the repeats of the two
samplers are interleaved and the speed-up is the median of per-repeat ratios (robust to load). The full sampler at
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
from jaxadv.model.data import unit_direction
from jaxadv import SamplerParams
from jaxadv.mc.driver import SAMPLERS, advance_states, init_batch
from jaxadv.model.params import as_array_params


def prepare(name, N, replicas, steps, dtype=jnp.float32):
    """Compile and warm up one sampler; returns ``(timed_call, compile_s)``."""
    kernel = SAMPLERS[name]()
    params = as_array_params(ModelParams(prior=0.7, v1=1.0, v2=2.0, eps=0.5), dtype)
    consts = unit_direction(N, dtype) if name == "full" else jnp.asarray(N, dtype)
    keys = jax.random.split(jax.random.key(0), replicas)
    pair = jax.vmap(jax.random.split)(keys)
    sp = SamplerParams(params, {}, consts)
    states, _ = init_batch(kernel, pair[:, 0], sp)
    box = {"st": jax.block_until_ready(states), "k": 0}

    def call():
        t = time.perf_counter()
        st, obs = advance_states(kernel, pair[:, 1], box["st"], sp, box["k"] * steps, steps)
        jax.block_until_ready(obs)
        box["st"], box["k"] = st, box["k"] + 1
        return time.perf_counter() - t

    first = call()
    second = call()
    return call, max(first - second, 0.0)


def time_pair(N, replicas, reduced_steps, full_steps, repeats):
    """Interleaved repeats (reduced, full, reduced, ...) so both see the same machine load."""
    calls = {name: prepare(name, N, replicas, steps) for name, steps in
             (("reduced", reduced_steps), ("full", full_steps))}
    times = {"reduced": [], "full": []}
    for _ in range(repeats):
        for name in ("reduced", "full"):
            times[name].append(calls[name][0]())
    rows = []
    for name, steps in (("reduced", reduced_steps), ("full", full_steps)):
        med = statistics.median(times[name])
        rows.append({"sampler": name, "N": N, "replicas": replicas, "steps": steps, "repeats": repeats,
                     "compile_s": calls[name][1], "median_s": med, "min_s": min(times[name]),
                     "ns_per_replica_step": med / (replicas * steps) * 1e9,
                     "ns_per_replica_step_min": min(times[name]) / (replicas * steps) * 1e9})
    ratios = [(f / full_steps) / (r / reduced_steps) for r, f in zip(times["reduced"], times["full"])]
    return rows, statistics.median(ratios)


def main(quick: bool = False) -> dict:
    """Entry point of ``python -m benchmarks``: the measurement as a dict (the runner writes it)."""
    argv = ["--replicas", "256", "--repeats", "3", "--reduced-steps", "1000", "--full-steps", "100,20,2"] if quick else []
    return cli(argv, write=False)


def cli(argv=None, write: bool = True):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reduced-steps", type=int, default=2000)
    ap.add_argument("--full-steps", default="200,50,5", help="steps of the full sampler at N=100,1000,10000")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    Ns = (100, 1000, 10000)
    full_steps = [int(s) for s in args.full_steps.split(",")]
    rows, speedup = [], {}
    for N, fs in zip(Ns, full_steps):
        pair_rows, ratio = time_pair(N, args.replicas, args.reduced_steps, fs, args.repeats)
        rows += pair_rows
        speedup[str(N)] = ratio
        for row in pair_rows:
            print(f"{row['sampler']:8s} N={N:6d}: {row['ns_per_replica_step']:10.1f} ns/replica-step "
                  f"(min {row['ns_per_replica_step_min']:.1f}; compile {row['compile_s']:.2f}s; "
                  f"median of {args.repeats} x {row['steps']} steps)", flush=True)
        print(f"speed-up at N={N}: {ratio:.0f}x (median of per-repeat ratios)", flush=True)
    per = {(r["sampler"], r["N"]): r["ns_per_replica_step_min"] for r in rows}
    flat = per[("reduced", Ns[-1])] / per[("reduced", Ns[0])]
    print(f"reduced cost ratio N={Ns[-1]} / N={Ns[0]} (min times): {flat:.2f}")
    dev = jax.devices()[0]
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"reduced_vs_full_{dev.platform}.json")
    info = {"benchmark": "reduced_vs_full", "device": str(dev), "platform": dev.platform,
            "cpu_count": os.cpu_count(), "jax_version": jax.__version__, "python": platform.python_version(),
            "dtype": "float32", "loss": "quadratic", "rows": rows, "speedup_full_over_reduced": speedup,
            "reduced_cost_ratio_largest_over_smallest_N": flat,
            "note": "repeats interleave the two samplers; speed-up is the median of per-repeat ratios"}
    if not write:
        return info
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {out}")
    return info


if __name__ == "__main__":
    cli()
