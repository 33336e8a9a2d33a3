"""Monte Carlo throughput of the full N-dimensional sampler, against its floor and a NumPy peer.

Three contenders advance ``replicas`` students by a fixed number of steps (never a whole run),
float32, timed interleaved in the same process:

* **jaxadv** -- the public kernel loop ``jaxadv.mc.driver.advance_states`` of ``jaxadv.full_sampler()``
  that :func:`jaxadv.simulate` calls between save points (draw, attack, optax SGD step, normalisation;
  vmap over replicas, ``lax.scan`` over steps), with the state carried from call to call (its buffers are donated).
* **floor** -- the same scan drawing the same random numbers and nothing else: per step and
  replica ``fold_in(replica_key, step)``, ``split``, one ``uniform`` and one ``normal`` of size
  N, drawn the fastest way we know (:mod:`jaxadv.threefry`, the same bits as ``jax.random``). Its result
  is kept (the last ``z`` and a running sum of the uniforms) so XLA cannot drop it.
  No implementation of the same algorithm with the same key scheme can beat it.
* **fast / floor_fast** -- the same kernel with ``generator="fast"`` (:mod:`jaxadv.fast_random`: both
  words of every threefry2x32 block, Box--Muller normals; the same law, other numbers), and its own
  floor: the same scan drawing the fast generator's numbers (one ``uniform`` and one ``normal`` of
  size N per step and replica, same keys) and nothing else. ``jaxadv_over_fast`` is the speed-up of
  the fast generator over today's kernel, measured in the same run.
* **jaxadv_sharded / floor_sharded / fast_sharded** -- the same two kernels with the replicas spread over
  the XLA host devices (``jaxadv.sharding.shard_batch``; the runner makes one host device
  per core), measured when there are several devices. Same random bits as on one device.
* **numpy** -- a straightforward NumPy implementation batched over replicas with
  ``np.random.default_rng`` (float32), as a researcher would write it.
* **torch**, **numba** -- the same algorithm in PyTorch (CPU, batched, ``torch.no_grad``; timed with one
  intra-op thread and with PyTorch's default of one per core, the faster of the two is the peer) and as a
  numba ``@njit`` loop (:mod:`benchmarks.peers`); optional (``pip install jaxadv[bench]``), skipped
  with a message when not installed.

The cost is reported per replica x step x dimension (ns). The PRNG implementation is compared
on one size for jaxadv and the floor: ``jax.random.key(seed, impl=...)`` with threefry2x32
(JAX's default), philox4x32 and rbg.

Run: ``python -m benchmarks.mc_throughput [--quick]``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

NAME = "mc_throughput"

SIZES = {
    "full": dict(
        grid=[(r, n) for r in (64, 1024, 4096) for n in (100, 1000, 10000)],
        budget=2e7,
        repeats=7,
        prng_size=(1024, 1000),
        prng_impls=("threefry2x32", "philox4x32", "rbg"),
    ),
    "quick": dict(
        grid=[(64, 1000), (1024, 100), (1024, 1000), (64, 10000)],
        budget=2e6,
        repeats=5,
        prng_size=(1024, 1000),
        prng_impls=("threefry2x32", "philox4x32", "rbg"),
    ),
    "tiny": dict(grid=[(8, 50)], budget=2e3, repeats=1, prng_size=None, prng_impls=()),
}
MIN_STEPS, MAX_STEPS = 2, 200
KERNEL_MIN_STEPS = 16
"""Fewest steps a timed call of jaxadv's kernels (and floors) makes. A call ends by reading every replica's
observables (the order parameters, O(replicas x N)), which a run does once per save interval, after many
steps; with 2 steps a call that read would be timed as a third of the work at the largest sizes. The peers
have no per-call cost of that kind (their cost is per step) and keep :func:`n_steps_for`'s count; their
times are scaled per step. The cost of a call itself is measured apart (``call_overhead_ms``)."""
PEERS = ("torch", "numba")  # optional peers (benchmarks/peers.py), beside NumPy
IMPL = "threefry2x32"  # chosen on measurement, see README and the "prng" block of the JSON


def n_steps_for(replicas, N, budget):
    """Steps per timed call: about ``budget`` replica*step*dimension elements, within [2, 200]."""
    return int(min(MAX_STEPS, max(MIN_STEPS, round(budget / (replicas * N)))))


# --- the floor --------------------------------------------------------------------------------


def _floor_fn(fused: bool = True, generator: str = "jax"):
    """The floor kernel; ``fused=False`` draws the same bits through ``jax.random`` itself;
    ``generator="fast"`` draws the fast generator's numbers (same keys, :mod:`jaxadv.fast_random`)."""
    import types

    import jax
    import jax.numpy as jnp

    from jaxadv import fast_random, threefry

    rnd = threefry if fused else jax.random
    if generator == "fast":
        rnd = types.SimpleNamespace(
            split=threefry.split, fold_in=threefry.fold_in, uniform=fast_random.uniform, normal=fast_random.normal
        )

    # the carry is donated, as the kernel's state is: neither copies its (replicas, N) buffer per call
    @functools.partial(jax.jit, static_argnames=("N",), donate_argnums=(1,))
    def floor(run_keys, carry, start, n_steps, N):
        # the fastest way to these bits that we know: jaxadv.threefry (unrolled, fused cipher)
        def draw(key):
            k_tau, k_z = rnd.split(key)
            return rnd.uniform(k_tau, (), jnp.float32), rnd.normal(k_z, (N,), jnp.float32)

        def body(i, c):
            keys = jax.vmap(rnd.fold_in, (0, None))(run_keys, start + i)
            u, z = jax.vmap(draw)(keys)
            return (c[0] + u, z)

        # the same loop as the kernel: fori_loop with a traced trip count
        return jax.lax.fori_loop(jnp.uint32(0), jnp.asarray(n_steps, jnp.uint32), body, carry)

    return floor


def _scaled(timing: dict, factor: float) -> dict:
    """A timing of ``time_interleaved`` with its times multiplied by ``factor`` (steps per call)."""
    keys = ("median_s", "min_s", "max_s", "cpu_median_s")
    return {k: (v * factor if k in keys else v) for k, v in timing.items()}


def _call_overhead_ms(box: dict, repeats: int = 5) -> float:
    """Median wall time of a call of jaxadv's kernel that makes no step (the observables' read and the
    call itself), in ms."""
    import time

    import jax

    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        box["mc"], obs = box["call"](0)
        jax.block_until_ready(obs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]) * 1e3)


# --- the NumPy peer ---------------------------------------------------------------------------


def numpy_steps(rng, w, b, params, n_steps):
    """``n_steps`` adversarial SGD steps of all replicas; ``w`` of shape (replicas, N), B = e_1."""
    from scipy.special import erf

    prior, rho, v1, v2, eta_w, eta_b, eps = (np.float32(x) for x in params)
    R, N = w.shape
    c = np.float32(2 / math.sqrt(math.pi))
    for _ in range(n_steps):
        tau = np.where(rng.random(R, dtype=np.float32) < prior, np.float32(1), np.float32(-1))
        sd = np.sqrt(np.where(tau > 0, v1, v2))
        xi = sd[:, None] * rng.standard_normal((R, N), dtype=np.float32)
        xi[:, 0] += tau * rho / 2  # + tau rho/2 B, B = e_1
        xi -= (tau * eps)[:, None] * w  # attack: xi - tau eps w
        x = np.einsum("ij,ij->i", w, xi) - b
        delta = (tau - erf(x)) * c * np.exp(-x * x)  # -dL/dx, L = (erf x - tau)^2 / 2
        w = w + (eta_w / N) * delta[:, None] * xi
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        b = b - (eta_b / N) * delta
    return w, b


def main(quick: bool = False, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.common import ratio, time_interleaved
    from benchmarks.peers import NumbaPeer, TorchPeer, available
    from jaxadv import ModelParams, SamplerParams, full_sampler
    from jaxadv.mc.driver import advance_states, init_batch
    from jaxadv.model.data import unit_direction
    from jaxadv.model.params import as_array_params
    from jaxadv.sharding import shard_batch

    peers_missing = available()
    for reason in filter(None, peers_missing.values()):
        print(f"  {reason}", flush=True)
    size = SIZES["tiny" if tiny else "quick" if quick else "full"]
    params = ModelParams()
    p = as_array_params(params, jnp.float32)
    floor = _floor_fn()
    floor_jax_random = _floor_fn(fused=False)
    floor_fast = _floor_fn(generator="fast")

    def contenders(replicas, N, steps, impl, with_numpy=True, peer_steps=None):
        peer_steps = steps if peer_steps is None else peer_steps
        key = jax.random.key(0, impl=impl)
        keys = jax.random.split(key, 2 * replicas)
        init_keys, run_keys = keys[:replicas], keys[replicas:]
        B = unit_direction(N, jnp.float32)
        box = {"np": None}

        def kernel_and_floor(place):
            """The jaxadv kernel and its floor, each advancing its own state placed by ``place``."""
            keys = place(run_keys)
            sp = SamplerParams(p, {}, B)
            fast = full_sampler(generator="fast")
            with_fast = impl == "threefry2x32"  # the fast stream enciphers with threefry keys only
            st = {
                "mc": place(init_batch(full_sampler(), init_keys, sp)[0]),
                "k": 0,
                "fast": place(init_batch(fast, init_keys, sp)[0]) if with_fast else None,
                "fl": place((jnp.zeros((replicas,), jnp.float32), jnp.zeros((replicas, N), jnp.float32))),
                "flf": place((jnp.zeros((replicas,), jnp.float32), jnp.zeros((replicas, N), jnp.float32))),
            }

            st["call"] = lambda n: advance_states(full_sampler(), keys, st["mc"], sp, st["k"] * steps, n)

            def run_jaxadv():
                st["mc"], obs = advance_states(full_sampler(), keys, st["mc"], sp, st["k"] * steps, steps)
                st["k"] += 1
                return obs

            def run_fast():
                st["fast"], obs = advance_states(fast, keys, st["fast"], sp, st["k"] * steps, steps)
                return obs

            def run_floor_fast():
                st["flf"] = floor_fast(keys, st["flf"], jnp.uint32(0), steps, N)
                return st["flf"]

            def run_floor():
                st["fl"] = floor(keys, st["fl"], jnp.uint32(0), steps, N)
                return st["fl"]

            def run_floor_jax_random():
                st["fl"] = floor_jax_random(keys, st["fl"], jnp.uint32(0), steps, N)
                return st["fl"]

            if not with_fast:
                run_fast = run_floor_fast = None
            return run_jaxadv, run_floor, run_floor_jax_random, run_fast, run_floor_fast, st

        out = {}
        (out["jaxadv"], out["floor"], out["floor_jax_random"], out["fast"], out["floor_fast"], box["jaxadv"]) = (
            kernel_and_floor(lambda x: x)
        )
        if jax.local_device_count() > 1 and replicas % jax.local_device_count() == 0:
            # the same kernels with the replicas spread over the host devices (one per core)
            out["jaxadv_sharded"], out["floor_sharded"], _, out["fast_sharded"], _, _ = kernel_and_floor(shard_batch)
        out = {k: f for k, f in out.items() if f is not None}
        if with_numpy:
            rng = np.random.default_rng(0)
            w0 = rng.standard_normal((replicas, N), dtype=np.float32)
            box["np"] = (w0 / np.linalg.norm(w0, axis=1, keepdims=True), np.zeros(replicas, np.float32))

            def run_numpy():
                box["np"] = numpy_steps(rng, *box["np"], params, peer_steps)
                return box["np"]

            out["numpy"] = run_numpy
            # optional peers (benchmarks/peers.py); PyTorch with one intra-op thread and with its default
            # (one per core): the faster of the two is the peer
            for name, module, make in (
                ("torch", "torch", TorchPeer),
                ("torch_all_threads", "torch", functools.partial(TorchPeer, threads=None)),
                ("numba", "numba", NumbaPeer),
            ):
                if peers_missing.get(module) is None:
                    box[name] = make(params, replicas, N)
                    out[name] = functools.partial(box[name].step, peer_steps)
        return out, box

    rows = []
    for replicas, N in size["grid"]:
        peer_steps = n_steps_for(replicas, N, size["budget"])
        steps = max(peer_steps, min(KERNEL_MIN_STEPS, MAX_STEPS)) if not tiny else peer_steps
        fns, box = contenders(replicas, N, steps, IMPL, peer_steps=peer_steps)
        t = time_interleaved(fns, repeats=size["repeats"])
        for name in ("numpy", "torch_all_threads") + PEERS:  # per step: scaled to the kernels' step count
            if name in t:
                t[name] = _scaled(t[name], steps / peer_steps)
        torch_threads = {}
        if "torch_all_threads" in t:  # the PyTorch peer is its faster thread setting at this size
            torch_threads = {"one_thread": t["torch"], "all_threads": t.pop("torch_all_threads")}
            t["torch"] = min(torch_threads.values(), key=lambda x: x["median_s"])
        el = replicas * N * steps
        row = {
            "replicas": replicas,
            "N": N,
            "steps": steps,
            "peer_steps": peer_steps,
            "impl": IMPL,
            "torch_threads": {k: {**v, "ns_per_elem": v["median_s"] / el * 1e9} for k, v in torch_threads.items()},
            "torch_best": (
                "one_thread"
                if torch_threads and torch_threads["one_thread"] is t["torch"]
                else "all_threads"
                if torch_threads
                else None
            ),
            "call_overhead_ms": _call_overhead_ms(box["jaxadv"]),
        }
        for name, s in t.items():
            row[name] = {
                **s,
                "ns_per_elem": s["median_s"] / el * 1e9,
                "ns_per_elem_min": s["min_s"] / el * 1e9,
                "ns_per_elem_max": s["max_s"] / el * 1e9,
            }
        row["jaxadv_over_floor"] = ratio(t["jaxadv"], t["floor"])
        row["floor_jax_random_over_floor"] = ratio(t["floor_jax_random"], t["floor"])
        row["jaxadv_over_fast"] = ratio(t["jaxadv"], t["fast"])  # speed-up of generator="fast"
        row["fast_over_floor_fast"] = ratio(t["fast"], t["floor_fast"])
        row["floor_over_floor_fast"] = ratio(t["floor"], t["floor_fast"])
        row["jaxadv_over_floor_fast"] = ratio(t["jaxadv"], t["floor_fast"])
        row["cpu_time_ratios_fast"] = {
            "jaxadv_over_fast": t["jaxadv"]["cpu_median_s"] / t["fast"]["cpu_median_s"],
            "fast_over_floor_fast": t["fast"]["cpu_median_s"] / t["floor_fast"]["cpu_median_s"],
        }
        if "jaxadv_sharded" in t:
            row["sharded"] = {
                "devices": jax.local_device_count(),
                "jaxadv_over_floor": ratio(t["jaxadv_sharded"], t["floor_sharded"]),
                "numpy_over_jaxadv": ratio(t["numpy"], t["jaxadv_sharded"]),
                "speedup_over_one_device": ratio(t["jaxadv"], t["jaxadv_sharded"]),
                "jaxadv_over_fast": ratio(t["jaxadv_sharded"], t["fast_sharded"]),
            }
        row["cpu_time_ratios"] = {
            "jaxadv_over_floor": t["jaxadv"]["cpu_median_s"] / t["floor"]["cpu_median_s"],
            "numpy_over_jaxadv": t["numpy"]["cpu_median_s"] / t["jaxadv"]["cpu_median_s"],
        }
        R_j = np.asarray(jnp.mean(box["jaxadv"]["mc"].student.w[:, 0]))
        R_n = float(np.mean(box["np"][0][:, 0]))
        R_f = np.asarray(jnp.mean(box["jaxadv"]["fast"].student.w[:, 0]))
        row["sanity"] = {
            "finite_jaxadv": bool(np.isfinite(R_j)),
            "finite_numpy": bool(np.isfinite(R_n)),
            "finite_fast": bool(np.isfinite(R_f)),
        }
        row["numpy_over_jaxadv"] = ratio(t["numpy"], t["jaxadv"])
        for peer in PEERS:
            if peer in t:
                row[f"{peer}_over_jaxadv"] = ratio(t[peer], t["jaxadv"])
                if "jaxadv_sharded" in t:
                    row["sharded"][f"{peer}_over_jaxadv"] = ratio(t[peer], t["jaxadv_sharded"])
                row["cpu_time_ratios"][f"{peer}_over_jaxadv"] = t[peer]["cpu_median_s"] / t["jaxadv"]["cpu_median_s"]
                row["sanity"][f"finite_{peer}"] = bool(np.isfinite(box[peer].overlap()))

        rows.append(row)
        print(
            f"  R={replicas:5d} N={N:6d} steps={steps:3d}  jaxadv {row['jaxadv']['ns_per_elem']:.2f} "
            f"floor {row['floor']['ns_per_elem']:.2f} numpy {row['numpy']['ns_per_elem']:.2f} ns/elem  "
            f"jaxadv/floor {row['jaxadv_over_floor']['median']:.2f}  "
            f"numpy/jaxadv {row['numpy_over_jaxadv']['median']:.2f}"
            + "".join(
                f"  {p}/jaxadv {row[f'{p}_over_jaxadv']['median']:.2f}" for p in PEERS if f"{p}_over_jaxadv" in row
            ),
            flush=True,
        )
        print(
            f"    fast generator: {row['fast']['ns_per_elem']:.2f} ns/elem, "
            f"its floor {row['floor_fast']['ns_per_elem']:.2f}"
            f"  jaxadv/fast {row['jaxadv_over_fast']['median']:.2f} [{row['jaxadv_over_fast']['low']:.2f}, "
            f"{row['jaxadv_over_fast']['high']:.2f}]  fast/floor_fast {row['fast_over_floor_fast']['median']:.2f}"
            f"  floor/floor_fast {row['floor_over_floor_fast']['median']:.2f}",
            flush=True,
        )
        if "sharded" in row:
            sh = row["sharded"]
            print(
                f"    sharded over {sh['devices']} host devices: jaxadv {row['jaxadv_sharded']['ns_per_elem']:.2f} "
                f"floor {row['floor_sharded']['ns_per_elem']:.2f} ns/elem  jaxadv/floor "
                f"{sh['jaxadv_over_floor']['median']:.2f}  numpy/jaxadv {sh['numpy_over_jaxadv']['median']:.2f}  "
                f"fast {row['fast_sharded']['ns_per_elem']:.2f} ns/elem, "
                f"jaxadv/fast {sh['jaxadv_over_fast']['median']:.2f}",
                flush=True,
            )

    prng = []
    if size["prng_size"]:
        replicas, N = size["prng_size"]
        for impl in size["prng_impls"]:
            steps = n_steps_for(replicas, N, size["budget"] / (16 if impl == "rbg" else 1))
            fns, _ = contenders(replicas, N, steps, impl, with_numpy=False)
            fns = {k: fns[k] for k in ("jaxadv", "floor_jax_random")}
            t = time_interleaved(fns, repeats=size["repeats"])
            el = replicas * N * steps
            prng.append(
                {
                    "impl": impl,
                    "replicas": replicas,
                    "N": N,
                    "steps": steps,
                    "jaxadv_ns_per_elem": t["jaxadv"]["median_s"] / el * 1e9,
                    "floor_jax_random_ns_per_elem": t["floor_jax_random"]["median_s"] / el * 1e9,
                    "raw": t,
                }
            )
            print(
                f"  prng {impl:13s} jaxadv {prng[-1]['jaxadv_ns_per_elem']:.2f} floor "
                f"{prng[-1]['floor_jax_random_ns_per_elem']:.2f} ns/elem (jax.random floor)",
                flush=True,
            )

    def med(key):
        return float(np.median([r[key]["median"] for r in rows]))

    sharded = [r["sharded"] for r in rows if "sharded" in r]
    peers = {}
    for peer in ("numpy",) + PEERS:
        rs = [r[f"{peer}_over_jaxadv"]["median"] for r in rows if f"{peer}_over_jaxadv" in r]
        rs_sh = [
            r["sharded"][f"{peer}_over_jaxadv"]["median"] for r in rows if f"{peer}_over_jaxadv" in r.get("sharded", {})
        ]
        if rs:
            peers[peer] = {
                "over_jaxadv_median": float(np.median(rs)),
                "over_jaxadv_worst": float(min(rs)),
                "over_jaxadv_sharded_worst": float(min(rs_sh)) if rs_sh else None,
            }

    return {
        "meta": {
            "dtype": "float32",
            "loss": "quadratic",
            "params": dict(params._asdict()),
            "sizes": [list(g) for g in size["grid"]],
            "repeats": size["repeats"],
            "unit": "ns per replica*step*dimension",
            "impl": IMPL,
            "size": "tiny" if tiny else "quick" if quick else "full",
        },
        "rows": rows,
        "prng": prng,
        "peers": peers,
        "peers_skipped": {k: v for k, v in peers_missing.items() if v},
        "headline": {
            "jaxadv_over_floor_median": med("jaxadv_over_floor"),
            "jaxadv_over_floor_worst": float(max(r["jaxadv_over_floor"]["median"] for r in rows)),
            "numpy_over_jaxadv_median": med("numpy_over_jaxadv"),
            "floor_jax_random_over_floor_median": med("floor_jax_random_over_floor"),
            "jaxadv_over_fast_median": med("jaxadv_over_fast"),
            "jaxadv_over_fast_worst_N_ge_1000": float(
                min([r["jaxadv_over_fast"]["median"] for r in rows if r["N"] >= 1000] or [np.nan])
            ),
            "fast_over_floor_fast_median": med("fast_over_floor_fast"),
            "floor_over_floor_fast_median": med("floor_over_floor_fast"),
            "target_jaxadv_over_fast_N_ge_1000": 1.5,
            "numpy_over_jaxadv_worst": float(min(r["numpy_over_jaxadv"]["median"] for r in rows)),
            "target_jaxadv_over_floor": 1.3,
            "target_numpy_over_jaxadv": 3.0,
            "sharded_devices": sharded[0]["devices"] if sharded else 1,
            "sharded_jaxadv_over_floor_median": float(np.median([s["jaxadv_over_floor"]["median"] for s in sharded]))
            if sharded
            else None,
            "sharded_numpy_over_jaxadv_median": float(np.median([s["numpy_over_jaxadv"]["median"] for s in sharded]))
            if sharded
            else None,
            "sharded_speedup_over_one_device_median": float(
                np.median([s["speedup_over_one_device"]["median"] for s in sharded])
            )
            if sharded
            else None,
        },
    }


if __name__ == "__main__":
    from benchmarks.common import cli

    cli(NAME, main)
