"""Benchmark: the 64 x 64 (eps x prior) grid of ODE trajectories to alpha = 1000.

Plain script: the grid through ``jaxadv.app.sweep`` (the ``jaxadv sweep`` command's path), warm-up,
compile time reported apart, median of repeats, and the accuracy of the chosen RK4 step checked
against a fine step on a subsample of the grid. The peer comparison of ODE throughput is
``ode_throughput.py``. Writes ``benchmarks/results/ode_grid_cpu.json``.

    python benchmarks/ode_grid.py [--repeats 3] [--dt 2.0]
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxadv  # noqa: E402
from jaxadv import ModelParams, make_sweep_config, solve_ode, sweep  # noqa: E402


def main(quick: bool = False) -> dict:
    """Entry point of ``python -m benchmarks``: the measurement as a dict (the runner writes it)."""
    return cli(["--n", "32", "--repeats", "2"] if quick else [], write=False)


def cli(argv=None, write: bool = True):
    with jax.enable_x64(True):  # scoped: the benchmarks after this one keep their own dtype
        return _cli(argv, write)


def _cli(argv, write):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dt", type=float, default=2.0)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--alpha-max", type=float, default=1000.0)
    ap.add_argument("--n-save", type=int, default=20)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ode_grid_cpu.json")
    )
    a = ap.parse_args(argv)
    eps = np.linspace(0.0, 1.5, a.n)
    prior = np.linspace(0.5, 0.95, a.n)
    cfg = make_sweep_config(
        {"eps": eps.tolist(), "prior": prior.tolist()}, alpha_max=a.alpha_max, n_save=a.n_save, dt=a.dt, chunk=a.n * a.n
    )

    t = time.perf_counter()
    res = sweep(cfg)  # warm-up: compiles once
    first = time.perf_counter() - t
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        res = sweep(cfg)
        times.append(time.perf_counter() - t)
    run_s = statistics.median(times)

    # accuracy of dt against a fine step (dt/20) on every 8th point of each axis
    sub = slice(None, None, 8)
    E, P = np.meshgrid(eps[sub], prior[sub], indexing="ij")
    fine = solve_ode(ModelParams(prior=P, eps=E), a.alpha_max, a.n_save, dt=a.dt / 20)
    err_R = float(jnp.max(jnp.abs(fine.R - res.R[sub, sub])))
    err_b = float(jnp.max(jnp.abs(fine.b - res.b[sub, sub])))

    out = {
        "benchmark": "ode_grid",
        "grid": [a.n, a.n],
        "axes": ["eps", "prior"],
        "alpha_max": a.alpha_max,
        "n_save": a.n_save,
        "dt": a.dt,
        "rk4_steps": int(round(a.alpha_max / a.dt)),
        "first_call_s (compile + run)": first,
        "compile_s": first - run_s,
        "run_s_median": run_s,
        "run_s_all": times,
        "repeats": a.repeats,
        "max_abs_error_vs_dt_over_20": {"R": err_R, "b": err_b},
        "device": str(jax.devices()[0]),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "dtype": "float64",
        "jax": jax.__version__,
        "jaxadv": jaxadv.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=2))
    if write:
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    cli()
