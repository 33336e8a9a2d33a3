"""How the cost grows: Monte Carlo time against N and against the number of replicas, ODE time
against the grid size, and the memory peak of the Monte Carlo against its state size.

* MC: the public kernel loop of :func:`jaxadv.simulate` (``advance_states``) and its random-number floor
  (see ``mc_throughput.py``), a fixed number of steps, float32, threefry2x32.
* ODE: :func:`jaxadv.solve_ode` (float64) to ``alpha = 1000`` at ``dt = 2`` on grids of
  growing size (eps x prior).
* Memory: each size runs in a fresh subprocess that reports its peak resident set
  (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` would inherit the parent's peak) after one
  ``advance_states`` call; the same process without the call is the baseline. On an accelerator,
  ``jax.devices()[0].memory_stats()`` (``peak_bytes_in_use``) is recorded instead where the backend
  provides it.

Writes ``results/scaling_<device>.json`` and the figure ``results/scaling_<device>.png``.
Run: ``python -m benchmarks.scaling [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

NAME = "scaling"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZES = {
    "full": dict(
        N_sweep=(100, 300, 1000, 3000, 10000, 30000),
        R_at=256,
        R_sweep=(16, 64, 256, 1024, 4096),
        N_at=1000,
        steps=10,
        repeats=5,
        grid_sweep=(16, 64, 256, 1024, 4096),
        mem=((64, 1000), (1024, 1000), (4096, 1000), (4096, 10000)),
    ),
    "quick": dict(
        N_sweep=(100, 1000, 10000),
        R_at=256,
        R_sweep=(16, 256, 2048),
        N_at=1000,
        steps=4,
        repeats=3,
        grid_sweep=(16, 64, 256),
        mem=((1024, 1000), (4096, 10000)),
    ),
    "tiny": dict(N_sweep=(20, 40), R_at=4, R_sweep=(2, 4), N_at=20, steps=2, repeats=1, grid_sweep=(1, 2), mem=()),
}

_MEM_CHILD = r"""
import json, resource, sys
import jax, jax.numpy as jnp
from jaxadv import ModelParams
from jaxadv.model.data import unit_direction
from jaxadv.model.losses import get_loss
from jaxadv import SamplerParams, full_sampler
from jaxadv.mc.driver import advance_states, init_batch
from jaxadv.model.params import as_array_params
R, N, steps, do_run = (int(a) for a in sys.argv[1:5])
B = unit_direction(8, jnp.float32)
p = as_array_params(ModelParams(), jnp.float32)
keys = jax.random.split(jax.random.key(0), 2 * R)
sp = SamplerParams(p, {}, B)
st = init_batch(full_sampler(), keys[:8], sp)[0]
jax.block_until_ready(advance_states(full_sampler(), keys[:8], st, sp, 0, 1))
stats = None
if do_run:
    B = unit_direction(N, jnp.float32)
    st = init_batch(full_sampler(), keys[:R], sp)[0]
    out = advance_states(full_sampler(), keys[R:], st, sp, 0, steps)
    jax.block_until_ready(out)
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        stats = None
# VmHWM is this process's own peak; ru_maxrss would report the parent's if that was larger
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"maxrss_kib": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "device_peak_bytes": (stats or {}).get("peak_bytes_in_use")}))
"""


def _mem_child(R, N, steps, do_run):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, "-c", _MEM_CHILD, str(R), str(N), str(steps), str(int(do_run))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool = False, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.common import device_label, out_dir, time_interleaved
    from benchmarks.mc_throughput import _floor_fn
    from jaxadv import ModelParams, SamplerParams, full_sampler
    from jaxadv.mc.driver import advance_states, init_batch
    from jaxadv.model.data import unit_direction
    from jaxadv.model.params import as_array_params
    from jaxadv.ode.solve import solve_ode

    size = SIZES["tiny" if tiny else "quick" if quick else "full"]
    p = as_array_params(ModelParams(), jnp.float32)
    floor = _floor_fn()
    steps = size["steps"]

    def mc_point(R, N):
        keys = jax.random.split(jax.random.key(0), 2 * R)
        B = unit_direction(N, jnp.float32)
        sp = SamplerParams(p, {}, B)
        box = {
            "st": init_batch(full_sampler(), keys[:R], sp)[0],
            "fl": (jnp.zeros((R,), jnp.float32), jnp.zeros((R, N), jnp.float32)),
        }

        def run_jaxadv():
            box["st"], obs = advance_states(full_sampler(), keys[R:], box["st"], sp, 0, steps)
            return obs

        def run_floor():
            box["fl"] = floor(keys[R:], box["fl"], jnp.uint32(0), steps, N)
            return box["fl"]

        t = time_interleaved({"jaxadv": run_jaxadv, "floor": run_floor}, repeats=size["repeats"])
        el = R * N * steps
        return {
            "replicas": R,
            "N": N,
            "steps": steps,
            **{f"{k}_s": v["median_s"] for k, v in t.items()},
            **{f"{k}_ns_per_elem": v["median_s"] / el * 1e9 for k, v in t.items()},
            **{f"{k}_spread_s": [v["min_s"], v["max_s"]] for k, v in t.items()},
            "compile_s": t["jaxadv"]["first_call_s"],
        }

    vs_N = [mc_point(size["R_at"], N) for N in size["N_sweep"]]
    vs_R = [mc_point(R, size["N_at"]) for R in size["R_sweep"]]

    vs_grid = []
    with jax.enable_x64(True):  # the ODE in float64, the Monte Carlo above and below in float32
        for G in size["grid_sweep"]:
            n = int(round(np.sqrt(G)))
            e, pr = np.meshgrid(np.linspace(0.0, 1.5, n), np.linspace(0.05, 0.95, max(1, G // n)), indexing="ij")
            e, pr = e.ravel(), pr.ravel()
            P = ModelParams(
                *(
                    jnp.asarray(np.broadcast_to(np.asarray(x, np.float64), e.shape), jnp.float64)
                    for x in ModelParams()._replace(prior=pr, eps=e)
                )
            )
            t = time_interleaved({"ode": lambda P=P: solve_ode(P, 1000.0, 1, dt=2.0)}, repeats=size["repeats"])["ode"]
            vs_grid.append(
                {
                    "points": int(e.size),
                    "median_s": t["median_s"],
                    "spread_s": [t["min_s"], t["max_s"]],
                    "per_point_ms": t["median_s"] / e.size * 1e3,
                    "compile_s": t["first_call_s"],
                }
            )

    memory = []
    if size["mem"]:
        base = _mem_child(8, 8, 1, False)
        for R, N in size["mem"]:
            m = _mem_child(R, N, steps, True)
            state = R * N * 4
            memory.append(
                {
                    "replicas": R,
                    "N": N,
                    "state_bytes": state,
                    "peak_rss_bytes": m["maxrss_kib"] * 1024,
                    "peak_over_baseline_bytes": (m["maxrss_kib"] - base["maxrss_kib"]) * 1024,
                    "over_state": (m["maxrss_kib"] - base["maxrss_kib"]) * 1024 / state,
                    "device_peak_bytes": m["device_peak_bytes"],
                }
            )
        memory_baseline = base["maxrss_kib"] * 1024
    else:
        memory_baseline = None

    figure = None
    if not tiny:
        figure = os.path.join(out_dir(), f"scaling_{device_label()}.png")
        _plot(vs_N, vs_R, vs_grid, size, figure)

    return {
        "meta": {
            "dtype_mc": "float32",
            "dtype_ode": "float64",
            "impl": "threefry2x32",
            "mc_steps": steps,
            "ode": {"alpha_max": 1000.0, "dt": 2.0},
            "repeats": size["repeats"],
            "size": "tiny" if tiny else "quick" if quick else "full",
        },
        "mc_vs_N": vs_N,
        "mc_vs_replicas": vs_R,
        "ode_vs_grid": vs_grid,
        "memory": memory,
        "memory_baseline_rss_bytes": memory_baseline,
        "figure": os.path.relpath(figure, os.path.dirname(out_dir())) if figure else None,
    }


def _plot(vs_N, vs_R, vs_grid, size, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
    for k, style in (("jaxadv", "o-"), ("floor", "s--")):
        ax[0].loglog([r["N"] for r in vs_N], [r[f"{k}_s"] for r in vs_N], style, label=k)
        ax[1].loglog([r["replicas"] for r in vs_R], [r[f"{k}_s"] for r in vs_R], style, label=k)
    ax[0].set(xlabel="N", ylabel=f"seconds per {size['steps']} steps", title=f"MC, replicas = {size['R_at']}")
    ax[1].set(xlabel="replicas", ylabel=f"seconds per {size['steps']} steps", title=f"MC, N = {size['N_at']}")
    ax[2].loglog([r["points"] for r in vs_grid], [r["median_s"] for r in vs_grid], "o-", label="jaxadv RK4")
    ax[2].set(xlabel="parameter points", ylabel="seconds", title="ODE to alpha=1000, dt=2, float64")
    from matplotlib.ticker import NullFormatter

    for a in ax:
        a.xaxis.set_minor_formatter(NullFormatter())
        a.yaxis.set_minor_formatter(NullFormatter())
        a.legend()
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from benchmarks.common import cli

    cli(NAME, main)
