"""Time per replica-step of the exact reduced sampler against the full N-dimensional simulation.

Plain script: ``PYTHONPATH=. python benchmarks/reduced_vs_full.py [--replicas 1024] [--repeats 5]``.
Both samplers run in the same process at N = 100, 1000, 10000 (float32), through the jitted
advance kernel of :mod:`jaxadv.mc.driver`: a warm-up call (compile time reported apart), then
the median of ``repeats`` timed calls, each ended by ``block_until_ready``; the repeats of the two
samplers are interleaved and the speed-up is the median of per-repeat ratios (robust to load). The full sampler at
N = 10000 makes fewer steps (its cost per step is large).

The reduced sampler's **floor** is timed in the same interleaved repeats: the same loop
(``fori_loop`` over steps, ``vmap`` over replicas, ``fold_in(replica_key, step)``) drawing the same
random numbers (one ``step_uniforms`` hash call, the label, two normals and the chi-square of the
gamma proposals) and nothing else, their sum kept so XLA cannot drop them. ``reduced / floor`` is
what the exact update itself costs on top of its random numbers. Writes
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

from jaxadv import ModelParams, SamplerParams
from jaxadv.mc.driver import SAMPLERS, advance_states, init_batch
from jaxadv.model.data import unit_direction
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


def _reduced_floor():
    """The reduced kernel's loop with its random draws and nothing else (see the module docstring)."""
    import functools

    from jaxadv import threefry
    from jaxadv.mc.reduced import GAMMA_ROUNDS, chi2, normal_from_uniform, step_uniforms

    @functools.partial(jax.jit, donate_argnums=(1,))
    def floor(run_keys, carry, start, n_steps, N, prior):
        dtype = carry.dtype

        def draw(key):
            u = step_uniforms(key, 4 + 2 * GAMMA_ROUNDS, dtype)
            tau = jnp.where(u[0] < prior, 1.0, -1.0).astype(dtype)
            return tau + normal_from_uniform(u[1]) + normal_from_uniform(u[2]) + chi2(key, N - 2, dtype, u[3:])

        def body(i, c):
            keys = jax.vmap(threefry.fold_in, (0, None))(run_keys, start + i)
            return c + jax.vmap(draw)(keys)

        return jax.lax.fori_loop(jnp.uint32(0), n_steps, body, carry)

    return floor


def prepare_floor(N, replicas, steps, dtype=jnp.float32):
    """The floor of the reduced sampler at ``N``, same keys as :func:`prepare`; returns ``(timed_call, compile_s)``."""
    floor = _reduced_floor()
    keys = jax.random.split(jax.random.key(0), replicas)
    run_keys = jax.vmap(jax.random.split)(keys)[:, 1]
    box = {"c": jnp.zeros((replicas,), dtype), "k": 0}
    N_, prior = jnp.asarray(N, dtype), jnp.asarray(0.7, dtype)

    def call():
        t = time.perf_counter()
        box["c"] = jax.block_until_ready(
            floor(run_keys, box["c"], jnp.uint32(box["k"] * steps), jnp.uint32(steps), N_, prior)
        )
        box["k"] += 1
        return time.perf_counter() - t

    first = call()
    second = call()
    return call, max(first - second, 0.0)


def time_pair(N, replicas, reduced_steps, full_steps, repeats):
    """Interleaved repeats (reduced, floor, full, reduced, ...) so all see the same machine load."""
    calls = {
        name: prepare(name, N, replicas, steps) for name, steps in (("reduced", reduced_steps), ("full", full_steps))
    }
    calls["floor"] = prepare_floor(N, replicas, reduced_steps)
    times = {"reduced": [], "floor": [], "full": []}
    for _ in range(repeats):
        for name in ("reduced", "floor", "full"):
            times[name].append(calls[name][0]())
    rows = []
    for name, steps in (("reduced", reduced_steps), ("full", full_steps)):
        med = statistics.median(times[name])
        rows.append(
            {
                "sampler": name,
                "N": N,
                "replicas": replicas,
                "steps": steps,
                "repeats": repeats,
                "compile_s": calls[name][1],
                "median_s": med,
                "min_s": min(times[name]),
                "ns_per_replica_step": med / (replicas * steps) * 1e9,
                "ns_per_replica_step_min": min(times[name]) / (replicas * steps) * 1e9,
            }
        )
    ratios = [(f / full_steps) / (r / reduced_steps) for r, f in zip(times["reduced"], times["full"], strict=True)]
    med = statistics.median(times["floor"])
    rows.append(
        {
            "sampler": "reduced_floor",
            "N": N,
            "replicas": replicas,
            "steps": reduced_steps,
            "repeats": repeats,
            "compile_s": calls["floor"][1],
            "median_s": med,
            "min_s": min(times["floor"]),
            "ns_per_replica_step": med / (replicas * reduced_steps) * 1e9,
            "ns_per_replica_step_min": min(times["floor"]) / (replicas * reduced_steps) * 1e9,
        }
    )
    over_floor = statistics.median([r / f for r, f in zip(times["reduced"], times["floor"], strict=True)])
    return rows, statistics.median(ratios), over_floor


def main(quick: bool = False) -> dict:
    """Entry point of ``python -m benchmarks``: the measurement as a dict (the runner writes it)."""
    argv = (
        ["--replicas", "256", "--repeats", "3", "--reduced-steps", "1000", "--full-steps", "100,20,2"] if quick else []
    )
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
    rows, speedup, over_floor = [], {}, {}
    for N, fs in zip(Ns, full_steps, strict=True):
        pair_rows, ratio, over_floor[str(N)] = time_pair(N, args.replicas, args.reduced_steps, fs, args.repeats)
        rows += pair_rows
        speedup[str(N)] = ratio
        for row in pair_rows:
            print(
                f"{row['sampler']:8s} N={N:6d}: {row['ns_per_replica_step']:10.1f} ns/replica-step "
                f"(min {row['ns_per_replica_step_min']:.1f}; compile {row['compile_s']:.2f}s; "
                f"median of {args.repeats} x {row['steps']} steps)",
                flush=True,
            )
        print(
            f"speed-up at N={N}: {ratio:.0f}x; reduced / floor {over_floor[str(N)]:.2f} (medians of per-repeat ratios)",
            flush=True,
        )
    per = {(r["sampler"], r["N"]): r["ns_per_replica_step_min"] for r in rows}
    flat = per[("reduced", Ns[-1])] / per[("reduced", Ns[0])]
    print(f"reduced cost ratio N={Ns[-1]} / N={Ns[0]} (min times): {flat:.2f}")
    dev = jax.devices()[0]
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"reduced_vs_full_{dev.platform}.json"
    )
    info = {
        "benchmark": "reduced_vs_full",
        "device": str(dev),
        "platform": dev.platform,
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "dtype": "float32",
        "loss": "quadratic",
        "rows": rows,
        "speedup_full_over_reduced": speedup,
        "reduced_over_floor": over_floor,
        "target_reduced_over_floor": 1.5,
        "target_speedup_at_1000": 150,
        "reduced_cost_ratio_largest_over_smallest_N": flat,
        "note": "repeats interleave the two samplers; speed-up is the median of per-repeat ratios",
    }
    if not write:
        return info
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {out}")
    return info


if __name__ == "__main__":
    cli()
